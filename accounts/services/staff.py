"""What staff do to a customer's security from the admin. Each action is audited with the staff actor.

A two-factor reset goes through maker-checker: one staff member proposes it
(`accounts.reset_two_factor`), a different one approves it
(`accounts.approve_two_factor_reset`), and only then the authenticator goes.
"""

from __future__ import annotations

from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Device, TwoFactorResetRequest, User
from accounts.services.lockout import lock_account, unlock_account
from accounts.services.sessions import sessions_revoke
from accounts.services.two_factor import totp_reset
from bankcore.api.exceptions import Conflict
from bankcore.audit import audit_record
from bankcore.permissions import MakerCheckerViolation, RequestNotPending, require_staff_permission
from notifications.events import Event
from notifications.services import notify

__all__ = [
    "lock_account",
    "staff_reset_two_factor",
    "staff_revoke_devices",
    "two_factor_reset_approve",
    "two_factor_reset_propose",
    "two_factor_reset_reject",
    "unlock_account",
]


class TwoFactorResetAlreadyProposed(Conflict):
    code = "two_factor_reset_already_proposed"
    default_message = "A two-factor reset for this user is already waiting for approval."


def two_factor_reset_propose(*, user: User, reason: str, actor: User) -> TwoFactorResetRequest:
    """Maker: propose removing the user's TOTP and backup codes (needs `accounts.reset_two_factor`).

    Nothing changes yet. One open proposal per user (TwoFactorResetAlreadyProposed).
    `reason` says why and how the customer's identity was checked. Audited.
    """
    require_staff_permission(actor=actor, permission="accounts.reset_two_factor")
    reason = reason.strip()
    if not reason:
        raise ValueError("A two-factor reset needs a reason.")
    try:
        with transaction.atomic():
            proposal = TwoFactorResetRequest.objects.create(user=user, reason=reason, proposed_by=actor)
            audit_record(action="staff.two_factor_reset_proposed", actor=actor, target=user, details={"reason": reason})
    except IntegrityError as exc:
        if TwoFactorResetRequest.objects.filter(user=user, status=TwoFactorResetRequest.Status.PENDING).exists():
            raise TwoFactorResetAlreadyProposed() from exc
        raise
    return proposal


def two_factor_reset_approve(*, request_id: UUID, actor: User) -> TwoFactorResetRequest:
    """Checker: a staff member other than the maker and the user (`accounts.approve_two_factor_reset`)
    approves; the reset runs (staff_reset_two_factor) in the same transaction. Audited.

    Raises StaffPermissionDenied, MakerCheckerViolation, RequestNotPending.
    """
    require_staff_permission(actor=actor, permission="accounts.approve_two_factor_reset")
    with transaction.atomic():
        proposal = TwoFactorResetRequest.objects.select_for_update().select_related("user").get(pk=request_id)
        if proposal.status != TwoFactorResetRequest.Status.PENDING:
            raise RequestNotPending()
        if actor.pk in (proposal.proposed_by_id, proposal.user_id):
            raise MakerCheckerViolation(
                "A two-factor reset must be approved by someone other than its proposer and the user."
            )
        staff_reset_two_factor(user=proposal.user, actor=actor)
        proposal.status = TwoFactorResetRequest.Status.DONE
        proposal.decided_by = actor
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(
            action="staff.two_factor_reset_approved",
            actor=actor,
            target=proposal.user,
            details={"request": str(proposal.pk), "proposed_by": str(proposal.proposed_by_id)},
        )
    return proposal


def two_factor_reset_reject(*, request_id: UUID, actor: User) -> TwoFactorResetRequest:
    """A checker (`accounts.approve_two_factor_reset`) rejects a proposal, or its maker withdraws it. Audited."""
    with transaction.atomic():
        proposal = TwoFactorResetRequest.objects.select_for_update().get(pk=request_id)
        if actor.pk != proposal.proposed_by_id or not actor.is_staff:
            require_staff_permission(actor=actor, permission="accounts.approve_two_factor_reset")
        if proposal.status != TwoFactorResetRequest.Status.PENDING:
            raise RequestNotPending()
        proposal.status = TwoFactorResetRequest.Status.REJECTED
        # The constraint keeps the maker and the user out of decided_by.
        proposal.decided_by = actor if actor.pk not in (proposal.proposed_by_id, proposal.user_id) else None
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(action="staff.two_factor_reset_rejected", actor=actor, target=proposal.user)
    return proposal


def staff_reset_two_factor(*, user: User, actor: User) -> None:
    """Remove the customer's TOTP and backup codes now. Atomic.

    The executor behind two_factor_reset_approve: staff never call it alone.
    """
    with transaction.atomic():
        totp_reset(user=user)
        notify(
            user=user,
            event=Event.TWO_FACTOR_CHANGED,
            context={
                "title": "Two-factor authentication was reset",
                "body": "Our staff removed your authenticator app at your request. Set it up again in the app.",
            },
        )
        audit_record(action="staff.two_factor_reset", actor=actor, target=user)


def staff_revoke_devices(*, user: User, actor: User) -> int:
    """Revoke all the customer's devices and end every session. Atomic. Returns devices revoked."""
    with transaction.atomic():
        now = timezone.now()
        device_ids = list(
            Device.objects.select_for_update()
            .filter(user=user, revoked_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Device.objects.filter(pk__in=device_ids).update(revoked_at=now)
        ended = sessions_revoke(user=user, reason="devices_revoked_by_staff")
        audit_record(
            action="staff.devices_revoked",
            actor=actor,
            target=user,
            details={"devices": [str(pk) for pk in device_ids], "sessions_ended": ended},
        )
    return len(device_ids)

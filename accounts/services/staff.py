"""What staff do to a customer's security from the admin. Each action is audited with the staff actor."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Device, User
from accounts.services.lockout import lock_account, unlock_account
from accounts.services.sessions import sessions_revoke
from accounts.services.two_factor import totp_reset
from bankcore.audit import audit_record
from notifications.events import Event
from notifications.services import notify

__all__ = ["lock_account", "staff_reset_two_factor", "staff_revoke_devices", "unlock_account"]


def staff_reset_two_factor(*, user: User, actor: User) -> None:
    """Remove the customer's TOTP and backup codes (lost phone, after identity checks). Atomic."""
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

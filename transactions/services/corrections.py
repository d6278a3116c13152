"""Staff corrections under maker-checker: reversals and manual adjustments. Never an edit of the past.

One staff member proposes (with the maker permission), a different one approves (with
the checker permission); only then the ledger moves. The permissions are checked here,
whatever screen or shell calls; the database refuses a row whose checker is its maker.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import BankAccount
from accounts.services.bank_accounts import internal_account
from bankcore.audit import audit_record
from bankcore.db.retry import atomic_with_retry
from bankcore.money import format_amount
from bankcore.permissions import RequestNotPending, require_staff_permission
from transactions.exceptions import (
    AdjustmentNotPending,
    AlreadyReversed,
    MakerCannotApprove,
    ReversalAlreadyProposed,
)
from transactions.lock_objects import journal_reversal_lock
from transactions.models import AdjustmentRequest, ReversalRequest, Transaction
from transactions.services.ledger import Leg, post_transaction


def transaction_reverse(*, transaction_id: UUID, actor: Any, reason: str = "") -> Transaction:
    """Post a new transaction with every entry of `transaction_id` negated, now.

    The executor behind reversal_approve (staff never call it alone: a reversal needs
    a maker and a checker). Atomic; at most one reversal per transaction (a lock on
    reversing it + unique `reverses`).
    Frozen accounts are still reversed (staff action); a customer account that has
    since spent the money is not overdrawn: InsufficientFunds, and staff adjust instead.
    """

    def work() -> Transaction:
        journal_reversal_lock(transaction_id)
        original = Transaction.objects.get(pk=transaction_id)
        _ensure_reversible(original)
        entries = list(original.entries.all())
        reversal, _ = post_transaction(
            kind=Transaction.Kind.REVERSAL,
            legs=[Leg(entry.account_id, -entry.amount) for entry in entries],
            currency=entries[0].currency,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            reference=f"reversal of {original.pk}",
            description=(reason or f"Reversal: {original.description or original.get_kind_display()}")[:140],
            source_account_id=original.destination_account_id,
            destination_account_id=original.source_account_id,
            amount=original.amount,
            reverses=original,
            require_active=False,
        )
        audit_record(
            action="transaction.reversed",
            actor=actor,
            target=reversal,
            details={"reverses": str(original.pk), "reason": reason},
        )
        return reversal

    return atomic_with_retry(work)


def _ensure_reversible(original: Transaction) -> None:
    if original.kind == Transaction.Kind.REVERSAL:
        raise AlreadyReversed("A reversal cannot itself be reversed; post an adjustment.")
    if Transaction.objects.filter(reverses=original).exists():
        raise AlreadyReversed()


def reversal_propose(*, transaction_id: UUID, reason: str, actor: Any) -> ReversalRequest:
    """Maker: propose reversing a transaction (needs `transactions.reverse_transaction`). Nothing posts yet.

    Refuses a reversal, an already reversed transaction and a second open proposal
    (ReversalAlreadyProposed; a partial unique index holds it under races). Audited.
    """
    require_staff_permission(actor=actor, permission="transactions.reverse_transaction")
    reason = reason.strip()
    if not reason:
        raise ValueError("A reversal needs a reason.")
    try:
        with transaction.atomic():
            original = Transaction.objects.get(pk=transaction_id)
            _ensure_reversible(original)
            proposal = ReversalRequest.objects.create(transaction=original, reason=reason, proposed_by=actor)
            audit_record(
                action="reversal.proposed",
                actor=actor,
                target=proposal,
                details={"transaction": str(original.pk), "reason": reason},
            )
    except IntegrityError as exc:
        pending = ReversalRequest.objects.filter(transaction_id=transaction_id, status=ReversalRequest.Status.PENDING)
        if pending.exists():
            raise ReversalAlreadyProposed() from exc
        raise
    return proposal


def reversal_approve(*, request_id: UUID, actor: Any) -> ReversalRequest:
    """Checker: a *different* staff member with `transactions.approve_reversal` approves; the reversal posts.

    Atomic: the request is locked, the reversal posted (transaction_reverse) and the
    request marked posted in one transaction; when the reversal fails (e.g. the
    recipient spent the money) nothing changes and the request stays pending.
    Raises StaffPermissionDenied, MakerCannotApprove, RequestNotPending.
    """
    require_staff_permission(actor=actor, permission="transactions.approve_reversal")

    def work() -> ReversalRequest:
        proposal = ReversalRequest.objects.select_for_update().get(pk=request_id)
        if proposal.status != ReversalRequest.Status.PENDING:
            raise RequestNotPending()
        if proposal.proposed_by_id == actor.pk:
            raise MakerCannotApprove("A reversal must be approved by a different staff member than its proposer.")
        reversal = transaction_reverse(transaction_id=proposal.transaction_id, actor=actor, reason=proposal.reason)
        proposal.status = ReversalRequest.Status.POSTED
        proposal.decided_by = actor
        proposal.decided_at = timezone.now()
        proposal.reversal = reversal
        proposal.save(update_fields=["status", "decided_by", "decided_at", "reversal"])
        audit_record(
            action="reversal.approved",
            actor=actor,
            target=proposal,
            details={"reversal": str(reversal.pk), "proposed_by": str(proposal.proposed_by_id)},
        )
        return proposal

    return atomic_with_retry(work)


def reversal_reject(*, request_id: UUID, actor: Any) -> ReversalRequest:
    """A checker (`transactions.approve_reversal`) rejects a proposal, or its maker withdraws it. Audited."""
    with transaction.atomic():
        proposal = ReversalRequest.objects.select_for_update().get(pk=request_id)
        _ensure_may_decline(actor=actor, maker_id=proposal.proposed_by_id, permission="transactions.approve_reversal")
        if proposal.status != ReversalRequest.Status.PENDING:
            raise RequestNotPending()
        proposal.status = ReversalRequest.Status.REJECTED
        proposal.decided_by = actor if actor.pk != proposal.proposed_by_id else None
        proposal.decided_at = timezone.now()
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(action="reversal.rejected", actor=actor, target=proposal)
    return proposal


def _ensure_may_decline(*, actor: Any, maker_id: Any, permission: str) -> None:
    # The checker declines; the maker may withdraw their own proposal.
    if getattr(actor, "pk", None) != maker_id or not getattr(actor, "is_staff", False):
        require_staff_permission(actor=actor, permission=permission)


def adjustment_propose(*, account: BankAccount, amount: int, reason: str, actor: Any) -> AdjustmentRequest:
    """Maker: propose crediting (amount > 0) or debiting (< 0) an account. Nothing posts yet. Audited.

    Needs `transactions.add_adjustmentrequest`.
    """
    require_staff_permission(actor=actor, permission="transactions.add_adjustmentrequest")
    if amount == 0:
        raise ValueError("An adjustment cannot be zero.")
    with transaction.atomic():
        adjustment = AdjustmentRequest.objects.create(account=account, amount=amount, reason=reason, proposed_by=actor)
        audit_record(
            action="adjustment.proposed",
            actor=actor,
            target=adjustment,
            details={"account": str(account.pk), "amount": format_amount(amount, account.currency), "reason": reason},
        )
    return adjustment


def adjustment_approve(*, adjustment_id: UUID, actor: Any) -> AdjustmentRequest:
    """Checker: a *different* staff member approves; only then the adjustment posts.

    Atomic: the request is locked, posted against the bank's adjustments account and
    marked posted in one transaction. Needs `transactions.approve_adjustment`.
    Raises StaffPermissionDenied, MakerCannotApprove, AdjustmentNotPending.
    """
    require_staff_permission(actor=actor, permission="transactions.approve_adjustment")

    def work() -> AdjustmentRequest:
        adjustment = AdjustmentRequest.objects.select_for_update().select_related("account").get(pk=adjustment_id)
        if adjustment.status != AdjustmentRequest.Status.PENDING:
            raise AdjustmentNotPending()
        if adjustment.proposed_by_id == actor.pk:
            raise MakerCannotApprove()
        account = adjustment.account
        contra = internal_account(purpose="adjustments", currency=account.currency)
        journal, _ = post_transaction(
            kind=Transaction.Kind.ADJUSTMENT,
            legs=[Leg(account.pk, adjustment.amount), Leg(contra.pk, -adjustment.amount)],
            currency=account.currency,
            initiated_by=actor,
            reference=f"adjustment {adjustment.pk}",
            description=adjustment.reason[:140],
            require_active=False,
        )
        adjustment.status = AdjustmentRequest.Status.POSTED
        adjustment.decided_by = actor
        adjustment.decided_at = timezone.now()
        adjustment.transaction = journal
        adjustment.save(update_fields=["status", "decided_by", "decided_at", "transaction"])
        audit_record(
            action="adjustment.approved",
            actor=actor,
            target=adjustment,
            details={"transaction": str(journal.pk), "proposed_by": str(adjustment.proposed_by_id)},
        )
        return adjustment

    return atomic_with_retry(work)


def adjustment_reject(*, adjustment_id: UUID, actor: Any) -> AdjustmentRequest:
    """A checker (`transactions.approve_adjustment`) rejects a proposal, or its maker withdraws it. Audited."""
    with transaction.atomic():
        adjustment = AdjustmentRequest.objects.select_for_update().get(pk=adjustment_id)
        _ensure_may_decline(
            actor=actor, maker_id=adjustment.proposed_by_id, permission="transactions.approve_adjustment"
        )
        if adjustment.status != AdjustmentRequest.Status.PENDING:
            raise AdjustmentNotPending()
        adjustment.status = AdjustmentRequest.Status.REJECTED
        adjustment.decided_by = actor if actor.pk != adjustment.proposed_by_id else None
        adjustment.decided_at = timezone.now()
        adjustment.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(action="adjustment.rejected", actor=actor, target=adjustment)
    return adjustment

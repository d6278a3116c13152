"""Staff corrections: reversals and maker-checker manual adjustments. Never an edit of the past."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from accounts.models import BankAccount
from accounts.services.bank_accounts import internal_account
from bankcore.audit import audit_record
from bankcore.money import format_amount
from transactions.db import atomic_with_retry
from transactions.exceptions import AdjustmentNotPending, AlreadyReversed, MakerCannotApprove
from transactions.lock_objects import journal_reversal_lock
from transactions.models import AdjustmentRequest, Transaction
from transactions.services.ledger import Leg, post_transaction


def transaction_reverse(*, transaction_id: UUID, actor: Any, reason: str = "") -> Transaction:
    """Post a new transaction with every entry of `transaction_id` negated.

    Atomic; at most one reversal per transaction (a lock on reversing it + unique `reverses`).
    Frozen accounts are still reversed (staff action); a customer account that has
    since spent the money is not overdrawn: InsufficientFunds, and staff adjust instead.
    """

    def work() -> Transaction:
        journal_reversal_lock(transaction_id)
        original = Transaction.objects.get(pk=transaction_id)
        if original.kind == Transaction.Kind.REVERSAL:
            raise AlreadyReversed("A reversal cannot itself be reversed; post an adjustment.")
        if Transaction.objects.filter(reverses=original).exists():
            raise AlreadyReversed()
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


def adjustment_propose(*, account: BankAccount, amount: int, reason: str, actor: Any) -> AdjustmentRequest:
    """Maker: propose crediting (amount > 0) or debiting (< 0) an account. Nothing posts yet. Audited."""
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
    marked posted in one transaction. Raises MakerCannotApprove, AdjustmentNotPending.
    """

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
    with transaction.atomic():
        adjustment = AdjustmentRequest.objects.select_for_update().get(pk=adjustment_id)
        if adjustment.status != AdjustmentRequest.Status.PENDING:
            raise AdjustmentNotPending()
        adjustment.status = AdjustmentRequest.Status.REJECTED
        adjustment.decided_by = actor if actor.pk != adjustment.proposed_by_id else None
        adjustment.decided_at = timezone.now()
        adjustment.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(action="adjustment.rejected", actor=actor, target=adjustment)
    return adjustment

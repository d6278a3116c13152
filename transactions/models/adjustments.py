"""Staff corrections under maker-checker (manual adjustments, reversals): one proposes, another approves."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from transactions.models.ledger import Transaction


class AdjustmentRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        POSTED = "posted", "Approved and posted"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    account = models.ForeignKey("accounts.BankAccount", on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Signed minor units: positive credits the account, negative debits it.")
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    transaction = models.OneToOneField(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("approve_adjustment", "Can approve or reject an adjustment (checker)")]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="adjustment_amount_nonzero"),
            # The checker is never the maker.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True) | ~models.Q(decided_by=models.F("proposed_by")),
                name="adjustment_maker_is_not_checker",
            ),
        ]

    def __str__(self) -> str:
        return f"adjustment {self.amount} on {self.account_id} ({self.status})"


class ReversalRequest(models.Model):
    """A proposed reversal: one staff member proposes (maker), a different one approves (checker).

    Nothing posts until approval; then `reversal` is the transaction that undid `transaction`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        POSTED = "posted", "Approved and reversed"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reversal = models.OneToOneField(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The checker is never the maker.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True) | ~models.Q(decided_by=models.F("proposed_by")),
                name="reversal_maker_is_not_checker",
            ),
            # One open proposal per transaction: a second maker sees the first one.
            models.UniqueConstraint(
                fields=["transaction"], condition=models.Q(status="pending"), name="reversal_one_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"reversal of {self.transaction_id} ({self.status})"

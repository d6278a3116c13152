"""Manual adjustments under maker-checker: one staff member proposes, another approves."""

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

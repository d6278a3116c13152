"""Beneficiaries and standing orders."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from transactions.models.ledger import CURRENCY_CHOICES, Transaction


class Beneficiary(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="beneficiaries")
    name = models.CharField(max_length=140)
    iban = models.CharField(max_length=34)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "beneficiaries"
        constraints = [models.UniqueConstraint(fields=["owner", "iban"], name="beneficiary_unique_iban")]
        indexes = [models.Index(fields=["owner", "-id"], name="beneficiary_owner_id")]

    def __str__(self) -> str:
        return f"{self.name} {self.iban}"


class StandingOrder(models.Model):
    class Frequency(models.TextChoices):
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCELLED = "cancelled", "Cancelled"
        FINISHED = "finished", "Finished"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="standing_orders")
    source_account = models.ForeignKey("accounts.BankAccount", on_delete=models.PROTECT, related_name="+")
    destination_iban = models.CharField(max_length=34)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    description = models.CharField(max_length=140, blank=True)
    frequency = models.CharField(max_length=16, choices=Frequency.choices)
    day = models.PositiveSmallIntegerField(
        help_text="Weekly: 1=Monday..7=Sunday. Monthly: 1..31 (last day if shorter)."
    )
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    next_due = models.DateField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="standing_order_amount_positive")]
        indexes = [models.Index(fields=["owner", "-id"], name="standing_order_owner_id")]

    def __str__(self) -> str:
        return f"{self.frequency} {self.amount} {self.currency} to {self.destination_iban}"


class StandingOrderExecution(models.Model):
    """One due date of one order. Unique per (order, due_date): a re-run never pays twice."""

    class Outcome(models.TextChoices):
        POSTED = "posted", "Posted"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (over a limit)"

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(StandingOrder, on_delete=models.CASCADE, related_name="executions")
    due_date = models.DateField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    transaction = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    error_code = models.CharField(max_length=64, blank=True)
    executed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "due_date"], name="standing_order_once_per_due_date")]

    def __str__(self) -> str:
        return f"{self.order_id} {self.due_date} {self.outcome}"

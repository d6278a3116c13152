"""Bank accounts: customers' and the bank's own internal accounts (cash vault, fees, ...)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from bankcore.money import SUPPORTED_CURRENCIES


class BankAccount(models.Model):
    class Kind(models.TextChoices):
        CURRENT = "current", "Current"
        SAVINGS = "savings", "Savings"
        INTERNAL = "internal", "Bank internal"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FROZEN = "frozen", "Frozen"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="bank_accounts",
        help_text="Empty for the bank's own internal accounts.",
    )
    internal_code = models.CharField(
        max_length=64, null=True, blank=True, unique=True, help_text="For internal accounts, e.g. cash_vault:EUR."
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    currency = models.CharField(max_length=3, choices=[(c, c) for c in SUPPORTED_CURRENCIES])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    iban = models.CharField(max_length=34, unique=True)
    # Minor units. Changed only by the ledger, in the same transaction as its entries.
    balance = models.BigIntegerField(default=0)
    overdraft_limit = models.BigIntegerField(default=0, help_text="Minor units the balance may go below zero.")
    # Minor units reserved by active holds (payments not yet settled). Changed only by the ledger,
    # in the same transaction as the hold rows; available = balance - held + overdraft_limit.
    held = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [
            ("freeze_account", "Can freeze and unfreeze an account"),
            ("set_overdraft", "Can change an account's overdraft limit"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(overdraft_limit__gte=0), name="bank_account_overdraft_nonnegative"
            ),
            # Internal accounts (the cash vault) mirror customers' money and may go negative.
            models.CheckConstraint(
                condition=models.Q(kind="internal") | models.Q(balance__gte=-models.F("overdraft_limit")),
                name="bank_account_balance_within_overdraft",
            ),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="bank_account_held_nonnegative"),
            # Holds never reserve more than the account has: the database refuses an over-hold
            # even if two payments race past the service's own check.
            models.CheckConstraint(
                condition=models.Q(kind="internal")
                | models.Q(balance__gte=models.F("held") - models.F("overdraft_limit")),
                name="bank_account_holds_within_funds",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="internal", owner__isnull=True)
                | (~models.Q(kind="internal") & models.Q(owner__isnull=False)),
                name="bank_account_internal_iff_bank_owned",
            ),
        ]
        indexes = [models.Index(fields=["owner", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} {self.iban} ({self.currency})"

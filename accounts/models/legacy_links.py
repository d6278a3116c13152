"""A customer's account that still lives on the legacy core, shown in the app beside bankcore's."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from bankcore.money import SUPPORTED_CURRENCIES


class LegacyAccountLink(models.Model):
    """Links one legacy core account (by its 10-digit number and IBAN) to a customer.

    The money stays on the core: bankcore never keeps entries for it. `last_ledger` and
    `last_available` (minor units) are the last balances the core reported, at `as_of`; the app
    shows them, marked stale, while the core does not answer. They are written whenever a fresh
    answer of the core carries balances (inquiry, approved request, reversal).
    """

    class Kind(models.TextChoices):
        CURRENT = "current", "Current"
        SAVINGS = "savings", "Savings"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed (the core no longer knows it)"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="legacy_account_links"
    )
    account_number = models.CharField(max_length=10, unique=True, help_text="The core's 10-digit number.")
    iban = models.CharField(max_length=34, unique=True)
    currency = models.CharField(max_length=3, choices=[(c, c) for c in SUPPORTED_CURRENCIES])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CURRENT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    last_ledger = models.BigIntegerField(null=True, blank=True, help_text="Minor units, as the core last said.")
    last_available = models.BigIntegerField(null=True, blank=True)
    as_of = models.DateTimeField(null=True, blank=True, help_text="When the core said it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} {self.iban} (legacy {self.account_number})"

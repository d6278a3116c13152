"""What came from the legacy core: its customer and account numbers, mapped to ours.

The mapping makes the legacy import idempotent: a legacy number maps to at most one user or
bank account (it is the primary key), so a re-run skips what is already here, and the
record's fingerprint tells an unchanged re-export from a changed one (a conflict, never
applied silently).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class LegacyCustomer(models.Model):
    number = models.CharField(primary_key=True, max_length=10, help_text="The legacy core's customer number.")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="legacy_customer")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the customer record as imported.")
    line_number = models.PositiveIntegerField(help_text="Where the record was in the file it was imported from.")
    imported_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"legacy customer {self.number}"


class LegacyAccount(models.Model):
    number = models.CharField(primary_key=True, max_length=12, help_text="The legacy core's account number.")
    account = models.OneToOneField("accounts.BankAccount", on_delete=models.PROTECT, related_name="legacy_account")
    # The customer's user, as every customer-owned row carries it (shard-ready).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(LegacyCustomer, on_delete=models.PROTECT, related_name="accounts", db_index=False)
    opening_balance = models.BigIntegerField(help_text="Minor units, as the legacy core exported it.")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the account record as imported.")
    line_number = models.PositiveIntegerField()
    imported_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"legacy account {self.number}"

"""The ledger: journal transactions, their entries, and holds.

The database itself (PostgreSQL) keeps the invariants, so even a write that bypasses
the services (raw SQL, a buggy migration) cannot break them:

- the entries of one transaction sum to zero per currency and there are at least two
  of them (a deferred constraint trigger, checked at COMMIT);
- entries are append-only (a trigger refuses UPDATE and DELETE);
- a posted transaction's money fields are never edited (trigger);
- balance >= -overdraft_limit (check constraint on BankAccount).
"""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from bankcore.money import SUPPORTED_CURRENCIES

CURRENCY_CHOICES = [(c, c) for c in SUPPORTED_CURRENCIES]

# Runs once per inserted entry, at COMMIT (deferred): the transaction the entry belongs
# to must have >= 2 entries and sum to zero in every currency.
_BALANCED_SQL = """
IF (SELECT count(*) FROM transactions_entry WHERE transaction_id = NEW.transaction_id) < 2 THEN
    RAISE EXCEPTION 'ledger: transaction % has fewer than two entries', NEW.transaction_id
        USING ERRCODE = 'check_violation';
END IF;
IF EXISTS (
    SELECT 1 FROM transactions_entry
    WHERE transaction_id = NEW.transaction_id
    GROUP BY currency HAVING sum(amount) <> 0
) THEN
    RAISE EXCEPTION 'ledger: entries of transaction % do not sum to zero', NEW.transaction_id
        USING ERRCODE = 'check_violation';
END IF;
RETURN NULL;
"""

# Entries must be in their account's currency.
_ENTRY_CURRENCY_SQL = """
IF NOT EXISTS (SELECT 1 FROM accounts_bankaccount WHERE id = NEW.account_id AND currency = NEW.currency) THEN
    RAISE EXCEPTION 'ledger: entry currency % differs from its account''s', NEW.currency
        USING ERRCODE = 'check_violation';
END IF;
RETURN NEW;
"""


class Transaction(models.Model):
    """One journal transaction: a movement of money made of balanced entries.

    For customer transfers the transfer's own fields (source, destination, amount,
    currency) are kept here too, so a transfer *is* its journal transaction.
    """

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        WITHDRAWAL = "withdrawal", "Withdrawal"
        TRANSFER = "transfer", "Transfer"
        FEE = "fee", "Fee"
        REVERSAL = "reversal", "Reversal"
        ADJUSTMENT = "adjustment", "Adjustment"
        STANDING_ORDER = "standing_order", "Standing order"
        PAYMENT = "payment", "Payment"
        OPENING = "opening", "Opening balance"

    class Status(models.TextChoices):
        POSTED = "posted", "Posted"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.POSTED)
    reference = models.CharField(max_length=140, blank=True)
    description = models.CharField(max_length=140, blank=True)
    # No single-column indexes where a composite index below starts with the column:
    # every index costs every posting a write.
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Transfer view of the transaction (null for other kinds).
    source_account = models.ForeignKey(
        "accounts.BankAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # No query looks transfers up by destination (history reads entries).
    destination_account = models.ForeignKey(
        "accounts.BankAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units, for transfers.")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, blank=True)
    # Reversed at most once: a partial unique index (txn_reversed_at_most_once), which - unlike
    # a one-to-one field's - holds no entry for the many transactions that reverse nothing.
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by", db_index=False
    )
    created_at = models.DateTimeField()
    posted_at = models.DateTimeField()

    class Meta:
        permissions = [
            ("reverse_transaction", "Can propose a reversal (maker)"),
            ("approve_reversal", "Can approve or reject a reversal (checker)"),
        ]
        indexes = [
            # Rolling 24 h limit: a customer's outgoing transfers by time.
            models.Index(fields=["initiated_by", "created_at"], name="txn_initiator_created"),
            models.Index(fields=["source_account", "id"], name="txn_source_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__isnull=True) | models.Q(amount__gt=0), name="txn_amount_positive"
            ),
            models.UniqueConstraint(
                fields=["reverses"], condition=models.Q(reverses__isnull=False), name="txn_reversed_at_most_once"
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="transaction_no_delete", operation=pgtrigger.Delete),
            pgtrigger.ReadOnly(
                name="transaction_money_read_only",
                fields=[
                    "kind",
                    "amount",
                    "currency",
                    "source_account",
                    "destination_account",
                    "reverses",
                    "created_at",
                    "posted_at",
                ],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class Entry(models.Model):
    """One leg of a transaction: a signed amount on one account. Never edited.

    Entries of an account are inserted under that account's row lock, with created_at
    taken under it, so (account, created_at, id) orders an account's history as its
    balance_after evolved.
    """

    id = models.BigAutoField(primary_key=True)
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    # Indexed by entry_account_created (account, created_at, id).
    account = models.ForeignKey(
        "accounts.BankAccount", on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    amount = models.BigIntegerField(help_text="Signed minor units: negative is money out.")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "entries"
        indexes = [
            # History pages, statements and opening balances: one range scan from the cursor.
            models.Index(fields=["account", "created_at", "id"], name="entry_account_created"),
        ]
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="entry_amount_nonzero")]
        triggers = [
            pgtrigger.Protect(name="entry_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
            pgtrigger.Trigger(
                name="entry_currency_matches_account",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert,
                func=_ENTRY_CURRENCY_SQL,
            ),
            pgtrigger.Trigger(
                name="entries_balance_per_transaction",
                when=pgtrigger.After,
                operation=pgtrigger.Insert,
                timing=pgtrigger.Deferred,
                func=_BALANCED_SQL,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.currency} on {self.account_id}"


class Hold(models.Model):
    """Funds reserved on an account for a payment that settles later.

    The account row keeps the sum of its active holds (`BankAccount.held`, changed in the same
    transaction as these rows, under the account's row lock), so available = balance - held +
    overdraft_limit costs no query and a check constraint refuses an over-hold. A hold does not
    expire by itself: it ends when its payment settles (captured) or fails or is cancelled
    (released); `verify_ledger` proves held == sum(active holds).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    account = models.ForeignKey("accounts.BankAccount", on_delete=models.PROTECT, related_name="holds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    reference = models.CharField(max_length=140, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The capture's posting (captured holds only).
    transaction = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["account", "status"], name="hold_account_status")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=~models.Q(status="captured") | models.Q(transaction__isnull=False),
                name="hold_captured_has_posting",
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="hold_no_delete", operation=pgtrigger.Delete),
            # An ended hold stays ended: a capture cannot be released, nor a release captured.
            pgtrigger.Protect(
                name="hold_ended_is_final",
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(old__status__in=["captured", "released"]),
            ),
            pgtrigger.ReadOnly(name="hold_amount_read_only", fields=["account", "amount", "currency"]),
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} {self.currency} ({self.status})"

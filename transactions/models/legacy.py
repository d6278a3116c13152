"""The journal of financial requests (ISO 8583 0200) sent to the legacy core.

A LegacyRequest row is COMMITTED (through the "journal" database connection) before its 0200
leaves, so whatever happens afterwards - a timeout, the request's own transaction rolling back,
the process being killed - the request is known and can be reversed. See
transactions/services/legacy_transfers.py for the protocol of who writes what when.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from transactions.models.ledger import CURRENCY_CHOICES, Hold, Transaction


class LegacyRequest(models.Model):
    class Direction(models.TextChoices):
        TO_LEGACY = "to_legacy", "bankcore → legacy (credit at the core)"
        FROM_LEGACY = "from_legacy", "legacy → bankcore (debit at the core)"

    class Status(models.TextChoices):
        # Committed before sending: may or may not have reached the core.
        SENT = "sent", "Sent (outcome not recorded)"
        NOT_SENT = "not_sent", "Not sent (the core was unreachable)"
        APPROVED = "approved", "Approved by the core, posting not committed"
        DECLINED = "declined", "Declined by the core"
        # Committed together with the bankcore posting (in the customer's request transaction).
        COMPLETED = "completed", "Completed on both sides"
        REVERSAL_PENDING = "reversal_pending", "Reversal pending (store-and-forward)"
        REVERSED = "reversed", "Reversed at the core"

    # No database foreign keys to rows the customer's request locks or creates (the customer, the
    # bankcore account, the hold): the journal connection inserts this row while that request's
    # transaction holds those rows FOR UPDATE (or has not committed them), and a key check would
    # wait for it - a wait on ourselves. The ids are recorded; the posting is linked in that
    # transaction itself (`transaction`), with a real constraint.
    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    direction = models.CharField(max_length=16, choices=Direction.choices)
    # The legacy side: the core's account number and its IBAN; the link when the account is linked.
    link = models.ForeignKey(
        "accounts.LegacyAccountLink", null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    legacy_account_number = models.CharField(max_length=10)
    legacy_iban = models.CharField(max_length=34)
    # The bankcore side: the customer's source account (to_legacy) or the destination (from_legacy).
    bankcore_account = models.ForeignKey(
        "accounts.BankAccount", on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    description = models.CharField(max_length=140, blank=True)
    rrn = models.CharField(max_length=12, unique=True, help_text="The core's exactly-once key (field 37).")
    original = models.JSONField(help_text="OriginalRequest.to_dict(): everything its reversal needs.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SENT)
    response_code = models.CharField(max_length=2, blank=True)
    approval_code = models.CharField(max_length=6, blank=True)
    hold = models.ForeignKey(
        Hold, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    transaction = models.OneToOneField(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="legacy_request"
    )
    reversal_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    reversal_response_code = models.CharField(max_length=2, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The sweep: requests still to finish or to reverse, oldest first.
            models.Index(
                fields=["status", "created_at"],
                name="legacy_request_open",
                condition=models.Q(status__in=["sent", "approved", "reversal_pending"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="legacy_request_amount_positive"),
            models.CheckConstraint(
                condition=~models.Q(status="completed") | models.Q(transaction__isnull=False),
                name="legacy_request_completed_has_posting",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.rrn} {self.status}"

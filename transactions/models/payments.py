"""Payments to other banks (ISO 20022 through the payment gateway) and their settlement.

A payment's life, each step recorded before the next side effect:
  pending (hold placed) -> batched (in a settlement batch whose pain.001 is written)
  -> submitted (the gateway took the batch) -> settled (hold captured: the debit posts against
  the settlement clearing account) or rejected (hold released, reason code kept);
  pending -> cancelled (the customer withdrew it; hold released).
Incoming credits arrive by signed webhook, each notification applied once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from transactions.models.ledger import CURRENCY_CHOICES, Hold, Transaction


class SettlementBatch(models.Model):
    """One pain.001 message to the gateway: the payments of one cut-off in one currency.

    formed (payments batched, XML written) -> submitted (gateway receipt recorded)
    -> completed (its pain.002 applied to every payment). The message id is the gateway's
    dedup key, so resubmitting a batch whose outcome is unknown is safe.
    """

    class Status(models.TextChoices):
        FORMED = "formed", "Formed"
        SUBMITTED = "submitted", "Submitted"
        COMPLETED = "completed", "Completed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    message_id = models.CharField(max_length=35, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FORMED)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    payment_count = models.PositiveIntegerField()
    control_sum = models.BigIntegerField(help_text="Minor units: the sum of the batch's payments.")
    requested_execution_date = models.DateField()
    xml = models.TextField(help_text="The pain.001 as sent (validated against the XSD before it is stored).")
    status_report = models.TextField(blank=True, help_text="The gateway's pain.002, as received.")
    submit_attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    # The sweep re-drives the batch's next step (submit or poll) only after this: a batch the
    # gateway refused (4xx) backs off instead of being resubmitted every minute.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Staff were told the gateway refused this batch (once per batch).
    alerted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="batch_status_created")]
        constraints = [
            models.CheckConstraint(condition=models.Q(payment_count__gt=0), name="batch_not_empty"),
            models.CheckConstraint(condition=models.Q(control_sum__gt=0), name="batch_control_sum_positive"),
        ]

    def __str__(self) -> str:
        return f"batch {self.message_id} ({self.status}, {self.payment_count} payments)"


class Payment(models.Model):
    """A customer's credit transfer to an account at another bank."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BATCHED = "batched", "Batched"
        SUBMITTED = "submitted", "Submitted"
        SETTLED = "settled", "Settled"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.PENDING, Status.BATCHED, Status.SUBMITTED)

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # The customer: every customer-owned row carries its customer id (shard-ready).
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    source_account = models.ForeignKey(
        "accounts.BankAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    creditor_name = models.CharField(max_length=70)
    creditor_iban = models.CharField(max_length=34)
    creditor_bic = models.CharField(max_length=11, blank=True)
    amount = models.BigIntegerField(help_text="Minor units.")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    remittance_information = models.CharField(max_length=140, blank=True)
    requested_execution_date = models.DateField()
    # ISO 20022 EndToEndId (max 35): the gateway's per-payment dedup key and the camt.053 reference.
    end_to_end_id = models.CharField(max_length=35, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason_code = models.CharField(max_length=8, blank=True, help_text="ISO 20022 status reason when rejected.")
    hold = models.OneToOneField(Hold, on_delete=models.PROTECT, related_name="payment")
    batch = models.ForeignKey(
        SettlementBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="payments", db_index=False
    )
    # The capture: the posted debit against the settlement clearing account.
    transaction = models.OneToOneField(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="payment"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # Operators were alerted that this payment stayed open too long (once per payment).
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("retry_payment", "Can propose a manual retry or cancel of a payment (maker)"),
            ("approve_payment_action", "Can approve or reject a manual payment action (checker)"),
        ]
        indexes = [
            # The customer's list, newest first (keyset on id: uuid7 is time-ordered).
            models.Index(fields=["customer", "id"], name="payment_customer_id"),
            # Batching and the stuck-payment sweep: open payments by age.
            models.Index(
                fields=["status", "created_at"],
                name="payment_open_by_age",
                condition=models.Q(status__in=["pending", "batched", "submitted"]),
            ),
            models.Index(fields=["batch"], name="payment_batch", condition=models.Q(batch__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive"),
            # A payment past pending belongs to a batch; a settled one has its posting.
            models.CheckConstraint(
                condition=~models.Q(status__in=["batched", "submitted", "settled"]) | models.Q(batch__isnull=False),
                name="payment_batched_has_batch",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="settled") | models.Q(transaction__isnull=False),
                name="payment_settled_has_posting",
            ),
        ]

    def __str__(self) -> str:
        return f"payment {self.end_to_end_id} ({self.status})"


class PaymentEvent(models.Model):
    """One step of a payment's status timeline (append-only)."""

    id = models.BigAutoField(primary_key=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events", db_index=False)
    status = models.CharField(max_length=16, choices=Payment.Status.choices)
    reason_code = models.CharField(max_length=8, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["payment", "id"], name="payment_event_timeline")]
        constraints = [
            # Each status at most once per payment: a re-driven step cannot repeat the timeline.
            models.UniqueConstraint(fields=["payment", "status"], name="payment_event_once_per_status"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"


class IncomingCredit(models.Model):
    """A credit notification from the gateway, applied once (the notification id is unique).

    posted: credited to the customer's account; suspense: no open account has the IBAN, the
    money sits on the suspense account until staff resolve it (a task in the admin).
    """

    class Status(models.TextChoices):
        POSTED = "posted", "Posted to the account"
        SUSPENSE = "suspense", "In suspense (staff task)"
        RESOLVED = "resolved", "Resolved from suspense"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    notification_id = models.CharField(max_length=64, unique=True)
    iban = models.CharField(max_length=34)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    debtor_name = models.CharField(max_length=140, blank=True)
    debtor_iban = models.CharField(max_length=34, blank=True)
    remittance_information = models.CharField(max_length=140, blank=True)
    booked_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices)
    account = models.ForeignKey(
        "accounts.BankAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="incoming_credit")
    resolution = models.OneToOneField(
        Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Suspense → account."
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    received_at = models.DateTimeField()

    class Meta:
        permissions = [("resolve_suspense", "Can move a suspense credit to a customer account")]
        indexes = [
            models.Index(fields=["status", "received_at"], name="credit_status_received"),
            models.Index(fields=["booked_at"], name="credit_booked_at"),
        ]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="credit_amount_positive")]

    def __str__(self) -> str:
        return f"credit {self.notification_id} ({self.status})"


class ReconciliationRun(models.Model):
    """One comparison of the gateway's camt.053 for a day with the ledger."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    day = models.DateField()
    statement_id = models.CharField(max_length=35, blank=True)
    statement_entries = models.PositiveIntegerField(default=0)
    ledger_entries = models.PositiveIntegerField(default=0)
    mismatch_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["day", "created_at"], name="reconciliation_day")]

    def __str__(self) -> str:
        return f"reconciliation {self.day} ({self.mismatch_count} mismatches)"


class ReconciliationMismatch(models.Model):
    class Kind(models.TextChoices):
        MISSING_IN_LEDGER = "missing_in_ledger", "At the gateway, not in the ledger"
        MISSING_AT_GATEWAY = "missing_at_gateway", "In the ledger, not at the gateway"
        AMOUNT_DIFFERS = "amount_differs", "Amounts differ"

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="mismatches")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    reference = models.CharField(max_length=64, help_text="End-to-end id or notification id.")
    gateway_amount = models.BigIntegerField(null=True, blank=True)
    ledger_amount = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    credit = models.BooleanField(help_text="Money in (an incoming credit) rather than out.")

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"


class PaymentActionRequest(models.Model):
    """A staff action on a stuck payment under maker-checker: one proposes, another approves."""

    class Action(models.TextChoices):
        RETRY = "retry", "Re-drive settlement"
        CANCEL = "cancel", "Cancel and release the hold"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        DONE = "done", "Approved and done"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True) | ~models.Q(decided_by=models.F("proposed_by")),
                name="payment_action_maker_is_not_checker",
            ),
            models.UniqueConstraint(
                fields=["payment"], condition=models.Q(status="pending"), name="payment_action_one_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.payment_id} ({self.status})"

"""Support tickets: a customer's question, optionally about one of their transfers or payments,
and the messages between the customer and the bank's staff.

They live with the ledger because a ticket may point at a transfer or payment, and only the
ledger may look those up (accounts never imports transactions). Customer text is stored as
typed and escaped wherever it is shown (Django templates autoescape; the API speaks JSON).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7
from transactions.models.ledger import Transaction
from transactions.models.payments import Payment

SUBJECT_MAX = 200
MESSAGE_MAX = 5000


class SupportTicket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Waiting for the bank"
        ANSWERED = "answered", "Answered, waiting for the customer"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # The customer: every customer-owned row carries its customer id (shard-ready).
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    subject = models.CharField(max_length=SUBJECT_MAX)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    transfer = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    first_answer_due_at = models.DateTimeField(help_text="Opened + SUPPORT_FIRST_ANSWER_HOURS.")
    first_answered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("reply_ticket", "Can reply to a support ticket"),
            ("assign_ticket", "Can assign a support ticket"),
            ("close_ticket", "Can close a support ticket"),
        ]
        indexes = [
            # The customer's list, newest first (keyset on id: uuid7 is time-ordered).
            models.Index(fields=["customer", "-id"], name="support_ticket_customer"),
            # The staff queue: open tickets by due time.
            models.Index(
                fields=["first_answer_due_at"],
                name="support_ticket_queue",
                condition=~models.Q(status="closed"),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(transfer__isnull=True) | models.Q(payment__isnull=True),
                name="support_ticket_one_subject_of_money",
            ),
        ]

    def __str__(self) -> str:
        return self.subject


class SupportMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    ticket = models.ForeignKey(SupportTicket, on_delete=models.CASCADE, related_name="messages")
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    from_staff = models.BooleanField(default=False)
    body = models.TextField(max_length=MESSAGE_MAX)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{'staff' if self.from_staff else 'customer'} message {self.id}"

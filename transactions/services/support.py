"""Support tickets: customers open them and write; staff reply, assign and close.

Every write is atomic and locks the ticket row first, so a customer message and a staff reply
arriving together each see the other's status change. Staff actions check their permission
here (not only in the admin) and are audited. A staff reply notifies the customer (in-app
and push) in the same transaction: the notice exists if and only if the reply does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from bankcore.permissions import require_staff_permission
from notifications.events import Event
from notifications.services import notify
from transactions.exceptions import TicketClosed, TicketNotFound
from transactions.lock_objects import support_ticket_for_update
from transactions.models import SupportMessage, SupportTicket
from transactions.models.support import MESSAGE_MAX, SUBJECT_MAX
from transactions.selectors import customer_payment, customer_transfer


class InvalidTicket(BankError):
    code = "invalid_request"
    default_message = "The support request is invalid."


def _text(value: str, *, field: str, max_length: int) -> str:
    text = value.strip()
    if not text:
        raise InvalidTicket(details={field: ["This field may not be blank."]})
    if len(text) > max_length:
        raise InvalidTicket(details={field: [f"At most {max_length} characters."]})
    return text


def ticket_open(
    *,
    customer: Any,
    subject: str,
    message: str,
    transfer_id: UUID | str | None = None,
    payment_id: UUID | str | None = None,
) -> SupportTicket:
    """Open a ticket with its first message, optionally about one of the customer's own transfers or
    payments (another customer's, or an unknown id, raises the same 404 `not_found` as reading it would).
    Atomic. Its first answer is due SUPPORT_FIRST_ANSWER_HOURS from now."""
    subject = _text(subject, field="subject", max_length=SUBJECT_MAX)
    message = _text(message, field="message", max_length=MESSAGE_MAX)
    if transfer_id and payment_id:
        raise InvalidTicket(details={"payment_id": ["Give a transfer or a payment, not both."]})
    transfer = customer_transfer(user=customer, transfer_id=transfer_id) if transfer_id else None
    payment = customer_payment(user=customer, payment_id=payment_id) if payment_id else None
    now = timezone.now()
    with transaction.atomic():
        ticket = SupportTicket.objects.create(
            customer=customer,
            subject=subject,
            transfer=transfer,
            payment=payment,
            created_at=now,
            updated_at=now,
            first_answer_due_at=now + timedelta(hours=settings.SUPPORT_FIRST_ANSWER_HOURS),
        )
        SupportMessage.objects.create(ticket=ticket, customer=customer, author=customer, body=message, created_at=now)
    return ticket


def ticket_message_add(*, customer: Any, ticket_id: UUID | str, message: str) -> SupportMessage:
    """Add the customer's message to their own ticket (404 `not_found` for anyone else's).

    Atomic, under the ticket's row lock. The ticket waits for the bank again (`open`); a closed
    ticket is reopened by the customer writing to it."""
    message = _text(message, field="message", max_length=MESSAGE_MAX)
    now = timezone.now()
    with transaction.atomic():
        ticket = support_ticket_for_update(ticket_id, customer=customer)
        if ticket is None:
            raise TicketNotFound()
        written = SupportMessage.objects.create(
            ticket=ticket, customer=customer, author=customer, body=message, created_at=now
        )
        ticket.status = SupportTicket.Status.OPEN
        ticket.closed_at = None
        ticket.updated_at = now
        ticket.save(update_fields=["status", "closed_at", "updated_at"])
    return written


def _staff_ticket(ticket_id: UUID | str) -> SupportTicket:
    ticket = support_ticket_for_update(ticket_id)
    if ticket is None:
        raise TicketNotFound()
    return ticket


def ticket_reply(*, actor: Any, ticket_id: UUID | str, message: str) -> SupportMessage:
    """A staff reply (needs `transactions.reply_ticket`): stored, the ticket `answered` (its first
    answer time set once), assigned to `actor` if it was nobody's, the customer notified
    (event `support_reply`, in-app and push) and the reply audited (without its text).

    Atomic, under the ticket's row lock. A closed ticket raises TicketClosed (422 `ticket_closed`)."""
    require_staff_permission(actor=actor, permission="transactions.reply_ticket")
    message = _text(message, field="message", max_length=MESSAGE_MAX)
    now = timezone.now()
    with transaction.atomic():
        ticket = _staff_ticket(ticket_id)
        if ticket.status == SupportTicket.Status.CLOSED:
            raise TicketClosed()
        reply = SupportMessage.objects.create(
            ticket=ticket, customer_id=ticket.customer_id, author=actor, from_staff=True, body=message, created_at=now
        )
        ticket.status = SupportTicket.Status.ANSWERED
        ticket.first_answered_at = ticket.first_answered_at or now
        ticket.assigned_to_id = ticket.assigned_to_id or actor.pk
        ticket.updated_at = now
        ticket.save(update_fields=["status", "first_answered_at", "assigned_to", "updated_at"])
        notify(
            user=ticket.customer,
            event=Event.SUPPORT_REPLY,
            context={"ticket_id": str(ticket.pk), "subject": ticket.subject, "message": message},
            key=str(reply.pk),
        )
        audit_record(action="support.ticket_reply", actor=actor, target=ticket, details={"message_id": str(reply.pk)})
    return reply


def ticket_assign(*, actor: Any, ticket_id: UUID | str, assignee: Any) -> SupportTicket:
    """Give the ticket to `assignee` (an active staff member; None: nobody). Needs
    `transactions.assign_ticket`; atomic; audited."""
    require_staff_permission(actor=actor, permission="transactions.assign_ticket")
    if assignee is not None and not (assignee.is_active and assignee.is_staff):
        raise InvalidTicket("Tickets are assigned to active staff only.", details={"assignee": ["Not active staff."]})
    with transaction.atomic():
        ticket = _staff_ticket(ticket_id)
        before = str(ticket.assigned_to_id) if ticket.assigned_to_id else None
        ticket.assigned_to = assignee
        ticket.updated_at = timezone.now()
        ticket.save(update_fields=["assigned_to", "updated_at"])
        audit_record(
            action="support.ticket_assign",
            actor=actor,
            target=ticket,
            details={"before": before, "after": str(assignee.pk) if assignee is not None else None},
        )
    return ticket


def ticket_close(*, actor: Any, ticket_id: UUID | str) -> SupportTicket:
    """Close the ticket (needs `transactions.close_ticket`). Atomic, audited; closing a closed ticket
    changes nothing and writes no audit row."""
    require_staff_permission(actor=actor, permission="transactions.close_ticket")
    with transaction.atomic():
        ticket = _staff_ticket(ticket_id)
        if ticket.status == SupportTicket.Status.CLOSED:
            return ticket
        now = timezone.now()
        ticket.status = SupportTicket.Status.CLOSED
        ticket.closed_at = now
        ticket.updated_at = now
        ticket.save(update_fields=["status", "closed_at", "updated_at"])
        audit_record(action="support.ticket_close", actor=actor, target=ticket)
    return ticket

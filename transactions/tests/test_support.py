"""Support tickets: customers open and write to their own tickets only; staff reply (the customer is
told in-app and by push), assign and close under their permissions; the queue shows the SLA; every
place that shows ticket text escapes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from bankcore.models import AuditEvent
from bankcore.permissions import StaffPermissionDenied
from bankcore.testing import staff_client
from notifications.models import Delivery, Notification
from transactions.exceptions import TicketClosed
from transactions.models import SupportMessage, SupportTicket
from transactions.services.payments import payment_create
from transactions.services.support import ticket_assign, ticket_close, ticket_open, ticket_reply
from transactions.services.transfers import transfer_create
from transactions.tests.conftest import client_for
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

TICKETS = "/api/v1/support/tickets"
XSS = "<script>alert('owned')</script>"


@pytest.fixture
def agent() -> User:
    """A help-desk member: the shipped `support` staff group."""
    staff = UserFactory(email="agent@bank.example", is_staff=True)
    staff.groups.set(Group.objects.filter(name="support"))
    return User.objects.get(pk=staff.pk)


def _transfer(owner, other):
    source = open_account(owner, balance=10_000)
    destination = open_account(other)
    return transfer_create(
        user=owner, source_account_id=source.pk, destination_iban=destination.iban, amount=500, currency="EUR"
    )


def _payment(owner):
    from transactions.services.payments import creditor_validated

    source = open_account(owner, balance=10_000)
    creditor = creditor_validated(name="Landlord", iban="FR1420041010050500013M02606", bic="")
    return payment_create(user=owner, source_account_id=source.pk, amount=700, currency="EUR", creditor=creditor)


# --- the customer's side --------------------------------------------------------------------


def test_customer_opens_a_ticket_about_their_own_transfer(customer, other_customer, customer_client):
    transfer = _transfer(customer, other_customer)
    response = customer_client.post(
        TICKETS,
        {"subject": "Wrong amount", "message": "I sent 5 EUR, meant 50.", "transfer_id": str(transfer.pk)},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "open"
    assert body["subject"] == "Wrong amount"
    assert body["transfer_id"] == str(transfer.pk) and body["payment_id"] is None
    assert [(m["author"], m["message"]) for m in body["messages"]] == [("customer", "I sent 5 EUR, meant 50.")]
    assert body["id"] and body["created_at"]
    ticket = SupportTicket.objects.get(pk=body["id"])
    assert ticket.customer == customer
    assert ticket.first_answer_due_at == ticket.created_at + timedelta(hours=8)


def test_customer_opens_a_ticket_about_their_own_payment(customer, customer_client):
    payment = _payment(customer)
    response = customer_client.post(
        TICKETS, {"subject": "Not arrived", "message": "Where is it?", "payment_id": str(payment.pk)}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["payment_id"] == str(payment.pk)


def test_another_customers_transfer_or_payment_answers_404_and_opens_nothing(customer, other_customer):
    transfer = _transfer(other_customer, customer)
    payment = _payment(other_customer)
    api = client_for(customer)
    for field, value in (("transfer_id", transfer.pk), ("payment_id", payment.pk)):
        response = api.post(TICKETS, {"subject": "s", "message": "m", field: str(value)}, format="json")
        assert response.status_code == 404, response.json()
        assert response.json()["error"]["code"] == "not_found"
    assert not SupportTicket.objects.exists()


def test_a_ticket_names_a_transfer_or_a_payment_not_both(customer, customer_client, other_customer):
    transfer = _transfer(customer, other_customer)
    payment = _payment(customer)
    response = customer_client.post(
        TICKETS,
        {"subject": "s", "message": "m", "transfer_id": str(transfer.pk), "payment_id": str(payment.pk)},
        format="json",
    )
    assert response.status_code == 400
    assert "payment_id" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "body", [{"subject": "", "message": "m"}, {"subject": "s"}, {"subject": "s" * 201, "message": "m"}]
)
def test_a_ticket_needs_a_subject_and_a_message(customer_client, body):
    response = customer_client.post(TICKETS, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_customers_see_only_their_own_tickets(customer, other_customer):
    mine = ticket_open(customer=customer, subject="mine", message="m")
    theirs = ticket_open(customer=other_customer, subject="theirs", message="m")
    api = client_for(customer)

    listed = api.get(TICKETS).json()
    assert [t["id"] for t in listed["results"]] == [str(mine.pk)]
    assert listed["next"] is None
    assert api.get(f"{TICKETS}/{mine.pk}").status_code == 200

    for response in (
        api.get(f"{TICKETS}/{theirs.pk}"),
        api.post(f"{TICKETS}/{theirs.pk}/messages", {"message": "hello"}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert SupportMessage.objects.filter(ticket=theirs).count() == 1
    assert client_for(other_customer).get(f"{TICKETS}/{theirs.pk}").status_code == 200


def test_tickets_need_a_login(client):
    assert client.get(TICKETS).status_code == 401


def test_customer_writes_to_their_ticket_and_it_waits_for_the_bank_again(customer, customer_client, agent):
    ticket = ticket_open(customer=customer, subject="Card", message="Card blocked")
    ticket_reply(actor=agent, ticket_id=ticket.pk, message="Which card?")
    response = customer_client.post(f"{TICKETS}/{ticket.pk}/messages", {"message": "The debit card"}, format="json")
    assert response.status_code == 201
    assert response.json()["author"] == "customer" and response.json()["message"] == "The debit card"
    detail = customer_client.get(f"{TICKETS}/{ticket.pk}").json()
    assert detail["status"] == "open"
    assert [(m["author"], m["message"]) for m in detail["messages"]] == [
        ("customer", "Card blocked"),
        ("bank", "Which card?"),
        ("customer", "The debit card"),
    ]


# --- the staff's side --------------------------------------------------------------------------


def test_staff_reply_reaches_the_customers_inbox_and_push(customer, customer_client, agent):
    ticket = ticket_open(customer=customer, subject="Limits", message="Can I raise my limit?")
    ticket_reply(actor=agent, ticket_id=ticket.pk, message="Yes, in the app under Limits.")

    ticket.refresh_from_db()
    assert ticket.status == SupportTicket.Status.ANSWERED
    assert ticket.first_answered_at is not None
    assert ticket.assigned_to == agent  # the first to answer takes it
    inbox = customer_client.get("/api/v1/notifications").json()
    assert inbox["unread"] == 1
    (item,) = inbox["results"]
    assert item["event"] == "support_reply"
    assert "Limits" in item["title"]
    assert item["body"] == "Yes, in the app under Limits."
    assert set(Delivery.objects.filter(user=customer, event="support_reply").values_list("channel", flat=True)) == {
        "push"
    }
    audit = AuditEvent.objects.get(action="support.ticket_reply")
    assert audit.actor_id == agent.pk and audit.target_id == str(ticket.pk)
    assert "Yes, in the app" not in str(audit.details)  # the text stays in the ticket, not the audit log


def test_staff_need_their_permission_for_each_action(customer):
    ticket = ticket_open(customer=customer, subject="s", message="m")
    stranger = UserFactory(is_staff=True)
    with pytest.raises(StaffPermissionDenied):
        ticket_reply(actor=stranger, ticket_id=ticket.pk, message="hi")
    with pytest.raises(StaffPermissionDenied):
        ticket_assign(actor=stranger, ticket_id=ticket.pk, assignee=stranger)
    with pytest.raises(StaffPermissionDenied):
        ticket_close(actor=stranger, ticket_id=ticket.pk)
    with pytest.raises(StaffPermissionDenied):  # a customer is no staff member
        ticket_reply(actor=customer, ticket_id=ticket.pk, message="hi")
    assert not Notification.objects.exists()


def test_a_closed_ticket_takes_no_staff_reply_and_the_customer_reopens_it(customer, customer_client, agent):
    ticket = ticket_open(customer=customer, subject="s", message="m")
    ticket_close(actor=agent, ticket_id=ticket.pk)
    ticket_close(actor=agent, ticket_id=ticket.pk)  # again: nothing changes
    assert AuditEvent.objects.filter(action="support.ticket_close").count() == 1
    with pytest.raises(TicketClosed):
        ticket_reply(actor=agent, ticket_id=ticket.pk, message="late")
    customer_client.post(f"{TICKETS}/{ticket.pk}/messages", {"message": "Still broken"}, format="json")
    ticket.refresh_from_db()
    assert ticket.status == SupportTicket.Status.OPEN and ticket.closed_at is None


def test_tickets_are_assigned_to_active_staff_only(customer, agent):
    ticket = ticket_open(customer=customer, subject="s", message="m")
    ticket_assign(actor=agent, ticket_id=ticket.pk, assignee=agent)
    ticket.refresh_from_db()
    assert ticket.assigned_to == agent
    with pytest.raises(Exception, match="active staff"):
        ticket_assign(actor=agent, ticket_id=ticket.pk, assignee=customer)


# --- the admin queue ---------------------------------------------------------------------------


def test_queue_shows_the_first_answer_timer_and_highlights_overdue_tickets(customer, agent):
    late = ticket_open(customer=customer, subject="Late one", message="m")
    SupportTicket.objects.filter(pk=late.pk).update(first_answer_due_at=timezone.now() - timedelta(hours=2))
    ticket_open(customer=customer, subject="Fresh one", message="m")

    page = staff_client(agent).get("/admin/transactions/supportticket/").content.decode()
    assert page.count("sla-overdue") == 1
    assert "OVERDUE by 2 h" in page
    assert "due in 7 h" in page
    # Most urgent first.
    assert page.index("Late one") < page.index("Fresh one")


def test_queue_filters_tickets_assigned_to_me_and_hides_closed_ones(customer, agent):
    mine = ticket_open(customer=customer, subject="Mine", message="m")
    ticket_open(customer=customer, subject="Nobody's", message="m")
    done = ticket_open(customer=customer, subject="Done", message="m")
    ticket_assign(actor=agent, ticket_id=mine.pk, assignee=agent)
    ticket_close(actor=agent, ticket_id=done.pk)
    admin = staff_client(agent)

    page = admin.get("/admin/transactions/supportticket/").content.decode()
    assert "Mine" in page and "Nobody&#x27;s" in page and "Done" not in page
    page = admin.get("/admin/transactions/supportticket/?assigned=me").content.decode()
    assert "Mine" in page and "Nobody&#x27;s" not in page
    page = admin.get("/admin/transactions/supportticket/?state=closed").content.decode()
    assert "Done" in page and "Mine" not in page


def test_staff_reply_typed_in_the_admin_is_sent(customer, agent):
    ticket = ticket_open(customer=customer, subject="Fees", message="Why a fee?")
    response = staff_client(agent).post(
        f"/admin/transactions/supportticket/{ticket.pk}/change/",
        {
            "reply": "It was refunded.",
            "messages-TOTAL_FORMS": "1",
            "messages-INITIAL_FORMS": "1",
            "messages-MIN_NUM_FORMS": "0",
            "messages-MAX_NUM_FORMS": "1000",
            "messages-0-id": str(ticket.messages.get().pk),
            "messages-0-ticket": str(ticket.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert SupportMessage.objects.filter(ticket=ticket, from_staff=True, body="It was refunded.").exists()
    assert Notification.objects.get(user=customer, event="support_reply").body == "It was refunded."


def test_admin_actions_assign_and_close(customer, agent):
    ticket = ticket_open(customer=customer, subject="s", message="m")
    admin = staff_client(agent)
    changelist = "/admin/transactions/supportticket/"
    admin.post(changelist, {"action": "assign_tickets_to_me", "_selected_action": [str(ticket.pk)]})
    ticket.refresh_from_db()
    assert ticket.assigned_to == agent
    admin.post(changelist, {"action": "close_tickets", "_selected_action": [str(ticket.pk)]})
    ticket.refresh_from_db()
    assert ticket.status == SupportTicket.Status.CLOSED


def test_view_only_staff_get_neither_reply_box_nor_actions(customer):
    ticket = ticket_open(customer=customer, subject="s", message="m")
    viewer = UserFactory(is_staff=True)
    viewer.groups.set(Group.objects.filter(name="compliance"))  # no support permissions at all
    assert (
        staff_client(User.objects.get(pk=viewer.pk))
        .get(f"/admin/transactions/supportticket/{ticket.pk}/change/")
        .status_code
        == 403
    )


def test_ticket_text_is_escaped_in_the_admin(customer, agent):
    ticket = ticket_open(customer=customer, subject=XSS, message=f"body {XSS}")
    admin = staff_client(agent)
    for url in ("/admin/transactions/supportticket/", f"/admin/transactions/supportticket/{ticket.pk}/change/"):
        page = admin.get(url).content.decode()
        assert "<script>alert(" not in page, url
        assert "&lt;script&gt;alert(" in page, url


def test_ticket_text_is_returned_as_typed_in_the_json_api(customer, customer_client, agent):
    # JSON is no HTML: the app shows it as text. The notification's text is the reply as written too.
    ticket = ticket_open(customer=customer, subject=XSS, message=XSS)
    ticket_reply(actor=agent, ticket_id=ticket.pk, message=XSS)
    assert customer_client.get(f"{TICKETS}/{ticket.pk}").json()["subject"] == XSS
    assert Notification.objects.get(user=customer).body == XSS

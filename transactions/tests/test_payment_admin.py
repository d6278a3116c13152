"""Staff screens for payments: read-only lists, suspense resolution, maker-checker retry/cancel."""

from __future__ import annotations

import json
import time

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client

from accounts.services.bank_accounts import internal_account
from accounts.tests.factories import PASSWORD
from bankcore.celery import app
from bankcore.models import AuditEvent
from bankcore.testing import staff_client
from integrations.gateway.webhooks import sign
from transactions.models import IncomingCredit, Payment, PaymentActionRequest
from transactions.services.incoming import incoming_credit_resolve
from transactions.services.payment_actions import (
    PaymentActionNotAllowed,
    payment_action_approve,
    payment_action_propose,
)
from transactions.services.payments import Creditor, payment_create
from transactions.services.verify import ledger_verify
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.test_reconciliation import settle_in_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

SECRET = "whsec-admin-test"
UNKNOWN_IBAN = "DE02120300000000202051"


def staff(django_user_model, email: str, *groups: str):
    user = django_user_model.objects.create_user(email=email, password=PASSWORD, full_name=email, is_staff=True)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


@pytest.fixture
def operations(django_user_model):
    return staff(django_user_model, "ops@bank.example", "operations")


@pytest.fixture
def compliance(django_user_model):
    return staff(django_user_model, "compliance@bank.example", "compliance")


@pytest.fixture
def payment():
    customer = CustomerFactory()
    source = open_account(customer, balance=100_000)
    return payment_create(
        user=customer,
        source_account_id=source.pk,
        amount=2_500,
        currency="EUR",
        creditor=Creditor(name="Jean Dupont", iban="FR1420041010050500013M02606"),
        remittance_information="Invoice <script>",
    )


def credit_in_suspense(settings_fixture, amount: str = "40.00") -> IncomingCredit:
    settings_fixture.GATEWAY_WEBHOOK_SECRET = SECRET
    body = json.dumps(
        {
            "id": f"NTF-{time.time_ns()}",
            "type": "credit",
            "iban": UNKNOWN_IBAN,
            "amount": amount,
            "currency": "EUR",
            "debtor": {"name": "ACME SARL", "iban": "FR1420041010050500013M02606"},
            "remittance_information": "Order 9",
            "booked_at": "2026-01-02T10:00:00+00:00",
        }
    ).encode()
    response = Client().post(
        "/api/v1/integrations/gateway/webhook",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE=sign(SECRET, body, int(time.time())),
    )
    assert response.json() == {"status": "applied"}
    return IncomingCredit.objects.get(notification_id=json.loads(body)["id"])


def act(client, model: str, action: str, *objects, **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects], **extra}
    return client.post(f"/admin/transactions/{model}/", data, follow=True)


def test_staff_with_the_view_permissions_see_payments_batches_credits_and_runs(operations, payment, settings):
    settled = settle_in_ledger(payment, "MSG-ADMIN-1")
    credit = credit_in_suspense(settings)
    client = staff_client(operations)
    listing = client.get("/admin/transactions/payment/", {"status__exact": "settled"})
    assert listing.status_code == 200 and settled.end_to_end_id.encode() in listing.content
    detail = client.get(f"/admin/transactions/payment/{settled.pk}/change/")
    assert detail.status_code == 200
    for status in (b"pending", b"batched", b"submitted", b"settled"):
        assert status in detail.content  # the timeline inline
    assert b"<script>" not in detail.content
    batch = client.get(f"/admin/transactions/settlementbatch/{settled.batch_id}/change/")
    assert batch.status_code == 200
    # The pain.001 as text (escaped, indented one element per line), never as markup.
    assert b"<pre>&lt;" in batch.content and b"pain.001.001.03" in batch.content
    assert b"\n  &lt;" in batch.content
    tasks = client.get("/admin/transactions/incomingcredit/")
    assert tasks.status_code == 200 and credit.notification_id.encode() in tasks.content
    assert client.get("/admin/transactions/reconciliationrun/").status_code == 200
    assert client.get("/admin/transactions/paymentactionrequest/").status_code == 200


def test_staff_without_the_permissions_are_refused(django_user_model, payment):
    nobody = staff(django_user_model, "nobody@bank.example")
    client = staff_client(nobody)
    for page in ("payment", "settlementbatch", "incomingcredit", "paymentactionrequest", "reconciliationrun"):
        assert client.get(f"/admin/transactions/{page}/").status_code == 403, page
    assert client.get(f"/admin/transactions/payment/{payment.pk}/change/").status_code == 403


def test_the_suspense_task_list_shows_only_credits_waiting(operations, settings):
    waiting = credit_in_suspense(settings, "1.00")
    resolved = credit_in_suspense(settings, "2.00")
    incoming_credit_resolve(credit_id=resolved.pk, iban=open_account(CustomerFactory()).iban, actor=operations)
    page = staff_client(operations).get("/admin/transactions/incomingcredit/")
    assert waiting.notification_id.encode() in page.content
    assert resolved.notification_id.encode() not in page.content
    everything = staff_client(operations).get("/admin/transactions/incomingcredit/", {"task": "all"})
    assert resolved.notification_id.encode() in everything.content


def test_staff_move_a_suspense_credit_to_an_account_once_and_it_is_audited(operations, settings):
    credit = credit_in_suspense(settings, "40.00")
    account = open_account(CustomerFactory())
    client = staff_client(operations)
    asked = act(client, "incomingcredit", "move_to_account", credit)
    assert asked.status_code == 200 and b"Move to this account" in asked.content
    done = act(client, "incomingcredit", "move_to_account", credit, iban=account.iban, apply="1")
    assert done.status_code == 200
    credit.refresh_from_db()
    account.refresh_from_db()
    assert (credit.status, credit.account_id, credit.resolved_by_id) == ("resolved", account.pk, operations.pk)
    assert account.balance == 4_000
    suspense = internal_account(purpose="suspense", currency="EUR")
    suspense.refresh_from_db()
    assert suspense.balance == 0
    assert AuditEvent.objects.filter(action="incoming_credit.resolved", actor=operations).count() == 1
    act(client, "incomingcredit", "move_to_account", credit, iban=account.iban, apply="1")  # again: refused
    account.refresh_from_db()
    assert account.balance == 4_000
    assert ledger_verify().ok


def test_moving_a_suspense_credit_needs_the_permission(compliance, settings, django_user_model):
    credit = credit_in_suspense(settings)
    support = staff(django_user_model, "support@bank.example", "support", "compliance")
    account = open_account(CustomerFactory())
    for user in (compliance, support):
        response = act(staff_client(user), "incomingcredit", "move_to_account", credit, iban=account.iban, apply="1")
        assert response.status_code in (200, 403)
    credit.refresh_from_db()
    assert credit.status == "suspense"


def test_a_cancel_needs_a_second_staff_member_and_happens_once(operations, compliance, payment):
    client = staff_client(operations)
    asked = act(client, "payment", "propose_payment_cancel", payment)
    assert asked.status_code == 200 and b"reason" in asked.content
    act(client, "payment", "propose_payment_cancel", payment, reason="Customer called: duplicate", apply="1")
    proposal = PaymentActionRequest.objects.get(payment=payment)
    assert (proposal.status, proposal.action, proposal.proposed_by_id) == ("pending", "cancel", operations.pk)
    payment.refresh_from_db()
    assert payment.status == "pending"

    act(client, "paymentactionrequest", "approve_payment_actions", proposal)  # operations lacks the permission
    proposal.refresh_from_db()
    assert proposal.status == "pending"

    act(staff_client(compliance), "paymentactionrequest", "approve_payment_actions", proposal)
    proposal.refresh_from_db()
    payment.refresh_from_db()
    assert (proposal.status, proposal.decided_by_id) == ("done", compliance.pk)
    assert payment.status == "cancelled"
    payment.source_account.refresh_from_db()
    assert payment.source_account.held == 0
    act(staff_client(compliance), "paymentactionrequest", "approve_payment_actions", proposal)  # again
    assert Payment.objects.get(pk=payment.pk).events.filter(status="cancelled").count() == 1
    assert AuditEvent.objects.filter(action="payment_action.cancel.approved").count() == 1


def test_a_maker_holding_both_permissions_cannot_approve_their_own_proposal(payment, django_user_model):
    both = staff(django_user_model, "both@bank.example", "operations", "compliance")
    proposal = payment_action_propose(payment_id=payment.pk, action="cancel", reason="dup", actor=both)
    act(staff_client(both), "paymentactionrequest", "approve_payment_actions", proposal)
    proposal.refresh_from_db()
    payment.refresh_from_db()
    assert (proposal.status, payment.status) == ("pending", "pending")


def test_a_batched_payment_cannot_be_cancelled_by_staff(operations, payment):
    settled = settle_in_ledger(payment, "MSG-ADMIN-2")
    with pytest.raises(PaymentActionNotAllowed):
        payment_action_propose(payment_id=settled.pk, action="cancel", reason="late", actor=operations)
    with pytest.raises(PaymentActionNotAllowed):
        payment_action_propose(payment_id=settled.pk, action="retry", reason="done already", actor=operations)


def test_an_approved_retry_sends_the_settlement_sweep_once(
    operations, compliance, payment, django_capture_on_commit_callbacks
):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    app.control.purge()
    proposal = payment_action_propose(payment_id=payment.pk, action="retry", reason="stuck", actor=operations)
    with django_capture_on_commit_callbacks(execute=True):
        payment_action_approve(request_id=proposal.pk, actor=compliance)
    messages = [json.loads(raw) for raw in broker.lrange("settlement", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["transactions.tasks.sweep_settlement"]
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Exception, match="already been decided"):
        payment_action_approve(request_id=proposal.pk, actor=compliance)
    assert broker.llen("settlement") == 1
    app.control.purge()
    payment.refresh_from_db()
    assert payment.status == "pending"  # a retry moves no money by itself

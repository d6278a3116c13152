"""Standing orders obey every transfer rule: Idempotency-Key, limits at creation and at every
run, step-up bound to amount and payee above the threshold, and the customer is told."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import StepUpToken
from accounts.tests.factories import step_up_token_for
from bankcore.models import AuditEvent
from notifications.models import Delivery, Notification
from transactions.models import CustomerLimit, StandingOrder, StandingOrderExecution, Transaction
from transactions.services.limits import limits_for
from transactions.services.payees import standing_order_execute
from transactions.tests.conftest import send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _body(source, destination, amount="25.00", **overrides):
    return {
        "source_account": str(source.pk),
        "destination": destination.iban,
        "amount": amount,
        "currency": "EUR",
        "frequency": "monthly",
        "day": 1,
        "start_date": "2026-01-01",
        "description": "Rent",
        **overrides,
    }


def _post(client, body, key="order-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/v1/standing-orders", body, format="json", **headers)


@pytest.fixture
def accounts(customer):
    return open_account(customer, balance=5_000_000), open_account(CustomerFactory())


def test_creating_a_standing_order_needs_an_idempotency_key_and_a_retry_replays(customer_client, accounts):
    source, destination = accounts
    missing = _post(customer_client, _body(source, destination), key=None)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["error"]["details"]
    assert not StandingOrder.objects.exists()

    first = _post(customer_client, _body(source, destination), key="rent")
    again = _post(customer_client, _body(source, destination), key="rent")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert StandingOrder.objects.count() == 1
    other = _post(customer_client, _body(source, destination, amount="26.00"), key="rent")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_standing_order_above_the_per_transfer_limit_is_refused_at_creation(customer, customer_client, accounts):
    source, destination = accounts
    audit_rows = AuditEvent.objects.count()
    response = _post(customer_client, _body(source, destination, amount="25000.00"))
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "limit_exceeded" and error["details"]["per_transfer"] == "10000.00"
    assert not StandingOrder.objects.exists()
    assert AuditEvent.objects.count() == audit_rows
    assert not Notification.objects.filter(user=customer).exists()


def test_standing_order_above_the_step_up_threshold_needs_a_token_bound_to_it(customer, customer_client, accounts):
    source, destination = accounts
    body = _body(source, destination, amount="1500.00")
    refused = _post(customer_client, body, key="a")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "step_up_required"
    assert refused.json()["error"]["details"]["purpose"] == "standing_order"
    assert refused.json()["error"]["details"]["payee"] == destination.iban

    # A token for a one-off transfer, or for another amount, does not authorise a standing order.
    transfer_token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    wrong_amount = step_up_token_for(
        customer, amount="1400.00", currency="EUR", payee=destination.iban, purpose="standing_order"
    )
    for token in (transfer_token, wrong_amount):
        response = _post(customer_client, {**body, "step_up_token": token}, key=f"b-{token[:6]}")
        assert response.status_code == 403 and response.json()["error"]["code"] == "step_up_required"
    assert not StandingOrder.objects.exists()

    token = step_up_token_for(
        customer, amount="1500.00", currency="EUR", payee=destination.iban, purpose="standing_order"
    )
    created = _post(customer_client, {**body, "step_up_token": token}, key="c")
    assert created.status_code == 201, created.content
    assert StepUpToken.objects.get(purpose="standing_order", amount="1500.00").used_at is not None
    # A retry of the same request carrying a fresh token replays instead of creating a second order.
    fresh = step_up_token_for(
        customer, amount="1500.00", currency="EUR", payee=destination.iban, purpose="standing_order"
    )
    replay = _post(customer_client, {**body, "step_up_token": fresh}, key="c")
    assert replay.status_code == 201 and replay.json() == created.json()
    assert StandingOrder.objects.count() == 1


def test_creating_a_standing_order_alerts_the_customer_on_every_channel(customer, customer_client, accounts):
    source, destination = accounts
    assert _post(customer_client, _body(source, destination)).status_code == 201
    send_pending_notices()
    alert = Notification.objects.get(user=customer, event="standing_order_created")
    assert "25.00 EUR" in alert.body and destination.iban[-4:] in alert.body and destination.iban not in alert.body
    channels = set(
        Delivery.objects.filter(user=customer, event="standing_order_created").values_list("channel", flat=True)
    )
    assert channels == {"email", "sms", "push"}


def _order(customer, customer_client, source, destination, amount="25.00", **extra):
    response = _post(customer_client, _body(source, destination, amount=amount), key=str(uuid.uuid4()), **extra)
    assert response.status_code == 201, response.content
    return StandingOrder.objects.get(pk=response.json()["id"])


def test_a_run_that_would_break_the_24_hour_limit_is_skipped_recorded_and_told(customer, customer_client, accounts):
    source, destination = accounts
    order = _order(customer, customer_client, source, destination, amount="300.00")
    CustomerLimit.objects.create(user=customer, currency="EUR", daily=50_000)  # 500.00 a day
    spend = customer_client.post(
        "/api/v1/transfers",
        {"source_account": str(source.pk), "destination": destination.iban, "amount": "250.00", "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="spend",
    )
    assert spend.status_code == 201
    balance = source.__class__.objects.get(pk=source.pk).balance
    due = order.next_due

    execution = standing_order_execute(order_id=order.pk, due_date=due)

    assert execution.outcome == StandingOrderExecution.Outcome.SKIPPED and execution.error_code == "limit_exceeded"
    assert source.__class__.objects.get(pk=source.pk).balance == balance
    assert not Transaction.objects.filter(kind="standing_order").exists()
    order.refresh_from_db()
    assert order.status == "active" and order.next_due > due  # the next due date is tried as usual
    assert AuditEvent.objects.filter(action="standing_order.skipped", target_id=str(order.pk)).exists()
    send_pending_notices()
    told = Notification.objects.get(user=customer, event="standing_order_skipped")
    assert "300.00 EUR" in told.body


def test_a_run_above_a_per_transfer_limit_lowered_since_creation_is_skipped(customer, customer_client, accounts):
    source, destination = accounts
    order = _order(customer, customer_client, source, destination, amount="900.00")
    CustomerLimit.objects.create(user=customer, currency="EUR", per_transfer=50_000)
    execution = standing_order_execute(order_id=order.pk, due_date=order.next_due)
    assert execution.outcome == "skipped" and execution.transaction_id is None
    assert not Transaction.objects.filter(kind="standing_order").exists()


def test_a_paid_run_counts_against_the_24_hour_limit(customer, customer_client, accounts):
    source, destination = accounts
    order = _order(customer, customer_client, source, destination, amount="400.00")
    assert limits_for(user=customer, currency="EUR").used_today == 0
    assert standing_order_execute(order_id=order.pk, due_date=order.next_due).outcome == "posted"
    assert limits_for(user=customer, currency="EUR").used_today == 40_000


def test_a_stepped_up_order_runs_above_the_threshold_without_a_new_second_factor(customer, customer_client, accounts):
    source, destination = accounts
    token = step_up_token_for(
        customer, amount="1500.00", currency="EUR", payee=destination.iban, purpose="standing_order"
    )
    order = _post(customer_client, {**_body(source, destination, amount="1500.00"), "step_up_token": token})
    assert order.status_code == 201
    execution = standing_order_execute(order_id=order.json()["id"], due_date=StandingOrder.objects.get().next_due)
    assert execution.outcome == "posted"
    destination.refresh_from_db()
    assert destination.balance == 150_000

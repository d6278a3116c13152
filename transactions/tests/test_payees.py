"""Beneficiaries and standing orders: API, ownership, once-per-due-date execution."""

from __future__ import annotations

from datetime import date

import pytest

from notifications.models import Notification
from transactions.models import StandingOrder, StandingOrderExecution, Transaction
from transactions.services.payees import due_on_or_after, standing_order_execute, standing_orders_run_due
from transactions.services.verify import ledger_verify
from transactions.tasks import run_standing_orders
from transactions.tests.conftest import send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

VALID_IBAN = "DE89370400440532013000"


def test_beneficiary_crud_with_iban_validation(customer_client):
    response = customer_client.post(
        "/api/v1/beneficiaries", {"name": "Landlord", "iban": "de89 3704 0044 0532 0130 00"}
    )
    assert response.status_code == 201, response.content
    beneficiary = response.json()
    assert beneficiary["iban"] == VALID_IBAN
    assert customer_client.get("/api/v1/beneficiaries").json()["results"] == [beneficiary]
    assert customer_client.get(f"/api/v1/beneficiaries/{beneficiary['id']}").json() == beneficiary
    duplicate = customer_client.post("/api/v1/beneficiaries", {"name": "Again", "iban": VALID_IBAN})
    assert duplicate.status_code == 400 and "iban" in duplicate.json()["error"]["details"]
    bad = customer_client.post("/api/v1/beneficiaries", {"name": "Typo", "iban": "DE89370400440532013001"})
    assert bad.status_code == 400 and "iban" in bad.json()["error"]["details"]
    assert customer_client.delete(f"/api/v1/beneficiaries/{beneficiary['id']}").status_code == 204
    assert customer_client.get("/api/v1/beneficiaries").json()["results"] == []


def test_another_customers_beneficiary_and_standing_order_answer_404(customer_client):
    from transactions.tests.conftest import client_for

    other = CustomerFactory()
    theirs = client_for(other).post("/api/v1/beneficiaries", {"name": "X", "iban": VALID_IBAN}).json()
    source, destination = open_account(other, balance=10_000), open_account(CustomerFactory())
    order = _create_order(client_for(other), _order_body(source, destination)).json()
    for path in (f"/api/v1/beneficiaries/{theirs['id']}", f"/api/v1/standing-orders/{order['id']}"):
        assert customer_client.get(path).status_code == 404
        assert customer_client.delete(path).status_code == 404
    assert customer_client.get("/api/v1/standing-orders").json()["results"] == []
    assert StandingOrder.objects.get(pk=order["id"]).status == "active"


def _create_order(client, body, key=None, **extra):
    """POST /standing-orders as an app does: with a fresh Idempotency-Key unless one is given."""
    import uuid

    return client.post(
        "/api/v1/standing-orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()), **extra
    )


def _order_body(source, destination, **overrides):
    body = {
        "source_account": str(source.pk),
        "destination": destination.iban,
        "amount": "25.00",
        "currency": "EUR",
        "frequency": "monthly",
        "day": 1,
        "start_date": "2026-01-01",
        "description": "Rent",
    }
    return {**body, **overrides}


def test_standing_order_is_validated(customer, customer_client):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    response = _create_order(
        customer_client, _order_body(source, destination, frequency="weekly", day=9, amount="0", end_date="2025-01-01")
    )
    assert response.status_code == 400
    assert {"amount"} <= set(response.json()["error"]["details"])
    response = _create_order(customer_client, _order_body(source, destination, frequency="weekly", day=9))
    assert set(response.json()["error"]["details"]) == {"day"}
    foreign = open_account(CustomerFactory(), balance=100)
    assert _create_order(customer_client, _order_body(foreign, destination)).status_code == 404


def test_due_dates_clamp_to_the_end_of_short_months_and_follow_weekdays():
    assert due_on_or_after(frequency="monthly", day=31, start=date(2026, 2, 3)) == date(2026, 2, 28)
    assert due_on_or_after(frequency="monthly", day=15, start=date(2026, 2, 16)) == date(2026, 3, 15)
    assert due_on_or_after(frequency="weekly", day=1, start=date(2026, 11, 25)) == date(2026, 11, 30)  # a Monday


def test_standing_order_run_twice_for_one_due_date_pays_once(customer, customer_client):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    order_id = _create_order(customer_client, _order_body(source, destination)).json()["id"]
    order = StandingOrder.objects.get(pk=order_id)
    due = order.next_due
    first = standing_order_execute(order_id=order.pk, due_date=due)
    again = standing_order_execute(order_id=order.pk, due_date=due)
    assert first.pk == again.pk and first.outcome == "posted"
    assert Transaction.objects.filter(kind="standing_order").count() == 1
    source.refresh_from_db()
    assert source.balance == 10_000 - 2_500
    order.refresh_from_db()
    assert order.next_due > due
    assert ledger_verify().ok


def test_beat_task_pays_due_orders_and_a_rerun_pays_nothing_more(customer, customer_client):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    _create_order(customer_client, _order_body(source, destination))
    order = StandingOrder.objects.get()
    today = order.next_due
    assert len(standing_orders_run_due(today=today)) == 1
    assert len(standing_orders_run_due(today=today)) == 0
    assert run_standing_orders.apply().get() == 0
    destination.refresh_from_db()
    assert destination.balance == 2_500


def test_failed_execution_is_recorded_and_the_customer_notified(customer, customer_client):
    source, destination = open_account(customer, balance=1_000), open_account(CustomerFactory())
    _create_order(customer_client, _order_body(source, destination))
    order = StandingOrder.objects.get()
    execution = standing_order_execute(order_id=order.pk, due_date=order.next_due)
    assert execution.outcome == "failed" and execution.error_code == "insufficient_funds"
    assert StandingOrderExecution.objects.filter(order=order).count() == 1
    send_pending_notices()
    notice = Notification.objects.get(user=customer, event="standing_order_failed")
    assert destination.iban not in notice.body and destination.iban[-4:] in notice.body
    source.refresh_from_db()
    assert source.balance == 1_000
    assert Transaction.objects.filter(kind="standing_order").count() == 0


def test_cancelled_order_is_not_executed(customer, customer_client):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    order_id = _create_order(customer_client, _order_body(source, destination)).json()["id"]
    due = StandingOrder.objects.get(pk=order_id).next_due
    assert customer_client.delete(f"/api/v1/standing-orders/{order_id}").status_code == 204
    assert standing_order_execute(order_id=order_id, due_date=due) is None
    assert standing_orders_run_due(today=due) == []


def _weekly_order(customer, source, destination, *, weeks: int):
    """A weekly order due today and every 7 days until its end date, `weeks` weeks on (inclusive)."""
    from datetime import timedelta

    from django.utils import timezone

    from transactions.services.payees import standing_order_create

    today = timezone.localdate()
    order = standing_order_create(
        owner=customer,
        source_account_id=source.pk,
        destination_iban=destination.iban,
        amount=2_500,
        currency="EUR",
        frequency="weekly",
        day=today.isoweekday(),
        start_date=today,
        end_date=today + timedelta(weeks=weeks),
    )
    assert order.next_due == today
    return order, [today + timedelta(weeks=n) for n in range(weeks + 1)]


def test_missed_due_dates_are_each_paid_once_up_to_the_end_date_and_the_order_finishes(customer):
    from datetime import timedelta

    source, destination = open_account(customer, balance=100_000), open_account(CustomerFactory())
    order, due_dates = _weekly_order(customer, source, destination, weeks=2)
    # The beat did not run for a month: one run catches up every missed date, the end date included.
    executions = standing_orders_run_due(today=due_dates[-1] + timedelta(days=16))
    assert [(e.due_date, e.outcome) for e in executions] == [(due, "posted") for due in due_dates]
    assert Transaction.objects.filter(kind="standing_order").count() == 3
    destination.refresh_from_db()
    source.refresh_from_db()
    assert (source.balance, destination.balance) == (100_000 - 3 * 2_500, 3 * 2_500)
    order.refresh_from_db()
    assert (order.status, order.next_due) == ("finished", None)
    # Nothing is due ever again, whoever runs it.
    assert standing_orders_run_due(today=due_dates[-1] + timedelta(days=60)) == []
    assert standing_order_execute(order_id=order.pk, due_date=due_dates[-1] + timedelta(weeks=1)) is None
    assert StandingOrderExecution.objects.filter(order=order).count() == 3
    assert ledger_verify().ok


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_pay_each_due_date_once():
    import threading
    from datetime import timedelta

    from django.db import connection

    customer = CustomerFactory()
    source, destination = open_account(customer, balance=100_000), open_account(CustomerFactory())
    order, due_dates = _weekly_order(customer, source, destination, weeks=2)
    run_day = due_dates[-1] + timedelta(days=1)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=30)
            results.append(standing_orders_run_due(today=run_day))
        except BaseException as exc:  # re-raised below: a crashed run must fail the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    assert len(results) == 2
    rows = StandingOrderExecution.objects.filter(order=order).order_by("due_date")
    assert [(row.due_date, row.outcome) for row in rows] == [(due, "posted") for due in due_dates]
    # Every execution was made by one of the runs (the other found it done or not yet due).
    assert {e.pk for executions in results for e in executions} == {row.pk for row in rows}
    assert Transaction.objects.filter(kind="standing_order").count() == 3
    destination.refresh_from_db()
    assert destination.balance == 3 * 2_500
    assert StandingOrder.objects.get(pk=order.pk).status == "finished"
    assert ledger_verify().ok


@pytest.mark.parametrize("purpose", ["cash_vault", "fees_income", "suspense"])
def test_a_standing_order_to_an_internal_account_is_refused(customer, customer_client, purpose):
    from accounts.services.bank_accounts import internal_account

    source = open_account(customer, balance=10_000)
    internal = internal_account(purpose=purpose, currency="EUR")
    response = _create_order(customer_client, _order_body(source, internal))
    assert response.status_code == 400 and "destination" in response.json()["error"]["details"]
    assert not StandingOrder.objects.exists()


def test_a_standing_order_to_a_closed_account_is_refused_and_a_run_after_closing_moves_nothing(
    customer, customer_client
):
    from accounts.services.bank_accounts import bank_account_set_status

    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    order = StandingOrder.objects.get(pk=_create_order(customer_client, _order_body(source, destination)).json()["id"])
    bank_account_set_status(account=destination, status="closed", actor="system:test")
    response = _create_order(customer_client, _order_body(source, destination))
    assert response.status_code == 400 and "destination" in response.json()["error"]["details"]
    assert StandingOrder.objects.count() == 1

    execution = standing_order_execute(order_id=order.pk, due_date=order.next_due)
    assert (execution.outcome, execution.error_code, execution.transaction_id) == ("failed", "invalid_request", None)
    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (10_000, 0)
    assert not Transaction.objects.filter(kind="standing_order").exists()

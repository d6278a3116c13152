"""Settlement on a real Celery worker that is SIGKILLed at each step, with the gateway simulator.

After every crash a new worker and the sweep finish the work: every payment is settled, each
exactly once (one debit posting per payment), the gateway executed each transfer once, and
verify_ledger holds. Each wait is bounded.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest
from django.utils import timezone

from accounts.services.bank_accounts import internal_account
from bankcore.testing import database_url_of_current_connection
from transactions.models import Payment, PaymentEvent, SettlementBatch, Transaction
from transactions.services.payments import Creditor, payment_create
from transactions.services.settlement import settlement_sweep
from transactions.services.verify import ledger_verify
from transactions.tasks import apply_settlement_report, run_settlement, submit_settlement_batch
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.gateway_fixture import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery, pytest.mark.django_db(transaction=True)]

CREDITOR = Creditor(name="Jeanne Martin", iban="FR1420041010050500013M02606")
COUNT = 5


@pytest.fixture(autouse=True)
def no_cut_off_nearby(settings):
    """The sweep's missed-cut-off check stays out of these tests (they drive the cut-off)."""
    settings.SETTLEMENT_CUTOFF = "0 0 1 1 *"


def _payments(count: int = COUNT) -> list[Payment]:
    customer = CustomerFactory()
    account = open_account(customer, balance=1_000_000)
    return [
        payment_create(user=customer, source_account_id=account.pk, amount=1_000 + n, currency="EUR", creditor=CREDITOR)
        for n in range(count)
    ]


def _statuses(payments: list[Payment]) -> set[str]:
    return set(Payment.objects.filter(pk__in=[p.pk for p in payments]).values_list("status", flat=True))


def _sweep_later() -> None:
    """What the beat sweep task does, once the re-drive interval has passed."""
    result = settlement_sweep(now=timezone.now() + timedelta(minutes=10))
    for batch_id in result.submit:
        submit_settlement_batch.delay(str(batch_id))
    for batch_id in result.poll:
        apply_settlement_report.delay(str(batch_id))


def _assert_settled_exactly_once(payments: list[Payment], gateway, before: dict, *, messages: int = 1) -> None:
    wait_for(lambda: _statuses(payments) == {"settled"}, timeout=60, what="every payment settled")
    for payment in payments:
        debits = Transaction.objects.filter(kind=Transaction.Kind.PAYMENT, reference=payment.end_to_end_id)
        assert debits.count() == 1, payment
        timeline = PaymentEvent.objects.filter(payment=payment).order_by("id").values_list("status", flat=True)
        assert list(timeline) == ["pending", "batched", "submitted", "settled"]
    state = gateway.state()
    assert state["messages"] - before["messages"] == messages  # the simulator lives for the module
    assert state["transfers_executed"] - before["transfers_executed"] == len(payments)
    wait_for(
        lambda: not SettlementBatch.objects.exclude(status="completed").exists(), timeout=30, what="batch completed"
    )
    report = ledger_verify()
    assert report.ok, report.violations


def test_killed_before_the_gateway_got_anything_the_sweep_submits(gateway, settlement_worker):
    payments = _payments()
    before = gateway.state()
    gateway.faults(fail_next=100_000)  # every submission fails: nothing is journalled
    worker = settlement_worker()
    run_settlement.delay()
    wait_for(lambda: SettlementBatch.objects.filter(submit_attempts__gte=1).exists(), what="a failed submission")
    worker.kill()
    assert gateway.state()["messages"] == before["messages"]
    assert _statuses(payments) == {"batched"}
    gateway.reset_faults()

    settlement_worker()
    _sweep_later()
    _assert_settled_exactly_once(payments, gateway, before)


def test_killed_after_the_gateway_took_the_batch_before_the_receipt_was_recorded(gateway, settlement_worker):
    payments = _payments()
    before = gateway.state()
    gateway.faults(answer_delay_seconds=30)  # journalled at once, answered late
    worker = settlement_worker(PAYMENT_GATEWAY_TIMEOUT="60")
    run_settlement.delay()
    wait_for(lambda: gateway.state()["messages"] == before["messages"] + 1, what="the gateway to journal the batch")
    worker.kill()
    batch = SettlementBatch.objects.get()
    assert batch.status == "formed" and _statuses(payments) == {"batched"}
    gateway.reset_faults()

    settlement_worker()
    _sweep_later()  # resubmits the same message id: a duplicate receipt, nothing executed twice
    _assert_settled_exactly_once(payments, gateway, before)


def _waiting_for_a_lock(exclude_pid: int) -> bool:
    with psycopg2.connect(database_url_of_current_connection()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s"
            " AND wait_event_type = 'Lock' AND query ILIKE '%%accounts_bankaccount%%'",
            [exclude_pid],
        )
        waiting = cur.fetchone()[0] > 0
    conn.close()
    return waiting


def test_killed_inside_the_capture_transaction_nothing_posts_until_the_sweep_settles(gateway, settlement_worker):
    payments = _payments()
    before = gateway.state()
    clearing = internal_account(purpose="settlement_clearing", currency="EUR")
    # Another connection holds the clearing account's row: the worker blocks inside the capture
    # transaction, after locking the payment rows, before any posting.
    locker = psycopg2.connect(database_url_of_current_connection())
    try:
        with locker.cursor() as cur:
            cur.execute("SELECT id FROM accounts_bankaccount WHERE id = %s FOR UPDATE", [str(clearing.pk)])
            cur.execute("SELECT pg_backend_pid()")
            locker_pid = cur.fetchone()[0]
        worker = settlement_worker()
        run_settlement.delay()
        wait_for(lambda: _waiting_for_a_lock(locker_pid), what="the worker blocked in the capture transaction")
        worker.kill()
    finally:
        locker.rollback()
        locker.close()
    # The killed worker's transaction rolls back: nothing posted, every payment still submitted.
    wait_for(lambda: not _waiting_for_a_lock(-1), timeout=10, what="the dead worker's transaction to end")
    assert _statuses(payments) == {"submitted"}
    assert not Transaction.objects.filter(kind=Transaction.Kind.PAYMENT).exists()

    settlement_worker()
    _sweep_later()
    _assert_settled_exactly_once(payments, gateway, before)


def test_gateway_errors_are_retried_by_the_task_and_settle_once(gateway, settlement_worker):
    payments = _payments()
    before = gateway.state()
    gateway.faults(fail_next=6)  # more than one call's retries: the task retries with backoff
    settlement_worker()
    run_settlement.delay()
    _assert_settled_exactly_once(payments, gateway, before)
    assert SettlementBatch.objects.get().submit_attempts == 2  # one failed call, one receipt

"""Settlement in-process against the real gateway simulator subprocess: the steps one by one.

pending -> batched -> submitted -> settled / rejected, the XSD guard, refusals and outages, the
sweep, the operator command, and the batch-versus-cancel race (real concurrent connections).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.services.bank_accounts import internal_account
from integrations.gateway.errors import GatewayRejected, GatewayUnavailable
from notifications.models import Notification
from transactions.exceptions import PaymentNotCancellable
from transactions.models import Entry, LimitUsage, Payment, PaymentEvent, SettlementBatch, Transaction
from transactions.selectors import account_history, counterparty_of, history_page
from transactions.services.limits import limits_for
from transactions.services.payments import Creditor, payment_cancel, payment_create
from transactions.services.settlement import (
    ReportOutcome,
    settlement_apply_report,
    settlement_form_batches,
    settlement_submit,
    settlement_sweep,
)
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.gateway_fixture import wait_for

FR = Creditor(name="Jeanne Martin", iban="FR1420041010050500013M02606")
GB = Creditor(name="John Smith", iban="GB82WEST12345698765432")

pytestmark = [pytest.mark.postgres]


def _pay(user, account, amount, creditor=FR, **extra):
    return payment_create(
        user=user, source_account_id=account.pk, amount=amount, currency="EUR", creditor=creditor, **extra
    )


def _timeline(payment):
    return list(PaymentEvent.objects.filter(payment=payment).order_by("id").values_list("status", "reason_code"))


def _settle_all(*, polls: int = 50) -> list[SettlementBatch]:
    batches = settlement_form_batches()
    for batch in batches:
        settlement_submit(batch_id=batch.pk)
        for _ in range(polls):
            if settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.COMPLETED:
                break
    return batches


def _debits(payment) -> int:
    return Transaction.objects.filter(kind=Transaction.Kind.PAYMENT, reference=payment.end_to_end_id).count()


@pytest.mark.django_db
def test_a_payment_is_held_at_acceptance_and_debited_only_at_settlement(gateway, customer):
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 2_500, remittance_information="Invoice 42")
    account.refresh_from_db()
    assert (account.balance, account.held) == (10_000, 2_500)  # available dropped, balance did not

    [batch] = settlement_form_batches()
    payment.refresh_from_db()
    assert payment.status == "batched" and payment.batch_id == batch.pk
    assert (batch.status, batch.payment_count, batch.control_sum) == ("formed", 1, 2_500)
    assert payment.end_to_end_id in batch.xml and batch.message_id in batch.xml
    account.refresh_from_db()
    assert account.balance == 10_000

    result = settlement_submit(batch_id=batch.pk)
    assert result.recorded and result.receipt is not None and not result.receipt.duplicate
    payment.refresh_from_db()
    assert payment.status == "submitted"
    assert settlement_submit(batch_id=batch.pk).receipt is None  # submitted: nothing is sent again

    assert settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.COMPLETED
    payment.refresh_from_db()
    account.refresh_from_db()
    batch.refresh_from_db()
    assert payment.status == "settled" and payment.transaction is not None
    assert (account.balance, account.held) == (7_500, 0)
    assert [status for status, _ in _timeline(payment)] == ["pending", "batched", "submitted", "settled"]
    assert batch.status == "completed" and "pain.002" in batch.status_report
    clearing = internal_account(purpose="settlement_clearing", currency="EUR")
    assert Entry.objects.filter(account=clearing, transaction=payment.transaction, amount=2_500).exists()
    # The customer's history shows the debit with the creditor as its counterparty.
    [entry] = history_page(entries=account_history(account=account), before=None, limit=1)
    assert (entry.amount, counterparty_of(entry)) == (-2_500, {"name": FR.name, "iban": FR.iban})
    # Applying the report again changes nothing: one debit per payment.
    assert settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.COMPLETED
    assert _debits(payment) == 1
    send_pending_notices()
    assert Notification.objects.filter(user=customer, event="payment_settled").count() == 1
    assert gateway.state()["transfers_executed"] >= 1
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_payment_the_gateway_rejects_releases_the_hold_and_tells_the_customer(gateway, customer):
    gateway.faults(reject_iban_pattern="^GB", reject_reason="AC01")
    account = open_account(customer, balance=10_000)
    rejected = _pay(customer, account, 3_000, creditor=GB)
    settled = _pay(customer, account, 1_000)
    assert limits_for(user=customer, currency="EUR").used_today == 4_000

    _settle_all()
    rejected.refresh_from_db()
    settled.refresh_from_db()
    account.refresh_from_db()
    assert (rejected.status, rejected.reason_code) == ("rejected", "AC01")
    assert _timeline(rejected)[-1] == ("rejected", "AC01")
    assert rejected.hold.status == "released" and _debits(rejected) == 0
    assert settled.status == "settled"
    assert (account.balance, account.held) == (9_000, 0)
    assert limits_for(user=customer, currency="EUR").used_today == 1_000  # the rejected amount is given back
    send_pending_notices()
    [notice] = Notification.objects.filter(user=customer, event="payment_rejected")
    assert "AC01" in notice.body and GB.iban not in notice.body  # account numbers masked
    assert ledger_verify().ok


@pytest.mark.django_db
def test_an_xsd_invalid_payment_never_leaves_and_the_rest_of_the_batch_goes(gateway, customer, caplog):
    account = open_account(customer, balance=10_000)
    good = [_pay(customer, account, 100 + n) for n in range(3)]
    bad = _pay(customer, account, 500)
    # Data the schema refuses (e.g. written by an older release or by hand): the IBAN pattern.
    Payment.objects.filter(pk=bad.pk).update(creditor_iban="fr14 2004 1010 0505")
    before = gateway.state()["messages"]

    with caplog.at_level(logging.ERROR, logger="transactions.services.settlement"):
        [batch] = settlement_form_batches()
    assert str(bad.pk) in caplog.text
    assert batch.payment_count == 3 and "fr14" not in batch.xml
    bad.refresh_from_db()
    assert (bad.status, bad.reason_code, bad.batch_id) == ("rejected", "FF01", None)
    assert bad.hold.status == "released"
    assert {p.status for p in Payment.objects.filter(pk__in=[p.pk for p in good])} == {"batched"}
    assert gateway.state()["messages"] == before  # forming sends nothing

    # A batch of nothing but unsendable payments is not stored, and nothing goes to the gateway.
    only_bad = _pay(customer, account, 700)
    Payment.objects.filter(pk=only_bad.pk).update(creditor_iban="NOT AN IBAN")
    assert settlement_form_batches() == []
    assert SettlementBatch.objects.count() == 1
    assert gateway.state()["messages"] == before
    account.refresh_from_db()
    assert account.held == sum(p.amount for p in good)
    assert ledger_verify().ok


@pytest.mark.django_db
def test_an_unavailable_gateway_is_recorded_and_the_same_message_settles_once(gateway, customer, settings):
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 1_000)
    [batch] = settlement_form_batches()
    gateway.faults(fail_next=20)  # more than the client's retries: the outcome is unknown
    with pytest.raises(GatewayUnavailable):
        settlement_submit(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == "formed" and batch.submit_attempts == 1 and "unavailable" in batch.last_error
    gateway.reset_faults()
    from integrations.gateway.client import gateway_breaker

    gateway_breaker.close()
    # A slow gateway: every attempt times out, yet the gateway takes the message. The next
    # submission of the same message id gets a duplicate receipt; nothing is executed twice.
    settings.PAYMENT_GATEWAY_TIMEOUT = 0.5
    messages = gateway.state()["messages"]
    executed = gateway.state()["transfers_executed"]
    gateway.faults(delay_seconds=1)
    with pytest.raises(GatewayUnavailable):
        settlement_submit(batch_id=batch.pk)
    wait_for(lambda: gateway.state()["messages"] == messages + 1, timeout=10, what="the gateway to take it")
    gateway.reset_faults()
    gateway_breaker.close()
    result = settlement_submit(batch_id=batch.pk)
    assert result.recorded and result.receipt is not None and result.receipt.duplicate
    for _ in range(20):
        if settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.COMPLETED:
            break
    payment.refresh_from_db()
    assert payment.status == "settled" and _debits(payment) == 1
    assert gateway.state()["transfers_executed"] == executed + 1 and gateway.state()["messages"] == messages + 1


@pytest.mark.django_db
def test_a_refused_batch_stays_formed_backs_off_and_alerts_staff_once(gateway, customer):
    CustomerFactory(is_staff=True, email="ops@bank.test")
    account = open_account(customer, balance=10_000)
    _pay(customer, account, 1_000)
    [batch] = settlement_form_batches()
    gateway.faults(fail_next=2, fail_status=400)
    for _ in range(2):
        with pytest.raises(GatewayRejected):
            settlement_submit(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == "formed" and batch.submit_attempts == 2
    assert batch.next_attempt_at > timezone.now() + timedelta(minutes=5)  # not re-driven every minute
    assert [m.to for m in mail.outbox] == [["ops@bank.test"]]  # once per batch
    assert settlement_sweep().submit == []


@pytest.mark.django_db
def test_a_message_the_gateway_lost_is_resubmitted_under_the_same_id(gateway, customer):
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 1_000)
    [batch] = settlement_form_batches()
    # Recorded as submitted, but the gateway never got it (say it lost its store).
    SettlementBatch.objects.filter(pk=batch.pk).update(status="submitted", submitted_at=timezone.now())
    Payment.objects.filter(pk=payment.pk).update(status="submitted")
    assert settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.RESUBMIT
    batch.refresh_from_db()
    assert batch.status == "formed"
    assert settlement_submit(batch_id=batch.pk).recorded
    for _ in range(20):
        if settlement_apply_report(batch_id=batch.pk).outcome == ReportOutcome.COMPLETED:
            break
    payment.refresh_from_db()
    assert payment.status == "settled" and _debits(payment) == 1


@pytest.mark.django_db
def test_the_sweep_forms_a_missed_cut_off_and_alerts_once_about_payments_open_too_long(gateway, customer, settings):
    CustomerFactory(is_staff=True, email="ops@bank.test")
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 1_000)
    future = _pay(customer, account, 1_000, requested_execution_date=timezone.localdate() + timedelta(days=3))
    # The payment was accepted two days ago: yesterday's cut-off should have batched it.
    two_days_ago = timezone.now() - timedelta(days=2)
    Payment.objects.filter(pk=payment.pk).update(created_at=two_days_ago, requested_execution_date=two_days_ago.date())
    settings.SETTLEMENT_CUTOFF = "0 15 * * *"
    settings.PAYMENT_PENDING_ALERT_AFTER = timedelta(hours=26)
    result = settlement_sweep()
    assert result.formed == 1 and len(result.submit) == 1
    payment.refresh_from_db()
    future.refresh_from_db()
    assert payment.status == "batched" and future.status == "pending"
    assert result.alerted == 1 and len(mail.outbox) == 1 and payment.end_to_end_id in mail.outbox[0].body
    assert settlement_sweep().alerted == 0  # once per payment
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_run_settlement_command_settles_and_fails_loudly_without_a_gateway(gateway, customer, settings, capsys):
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 1_234)
    call_command("run_settlement", "--wait", "20", "--poll-interval", "0.2")
    out = capsys.readouterr().out
    assert "1 payments, control sum 12.34 EUR" in out and "settlement done" in out
    payment.refresh_from_db()
    assert payment.status == "settled"

    _pay(customer, account, 100)
    settings.PAYMENT_GATEWAY_URL = "http://127.0.0.1:9"  # nothing listens
    with pytest.raises(CommandError):
        call_command("run_settlement", "--wait", "1")
    assert SettlementBatch.objects.filter(status="formed").count() == 1  # left for the sweep


@pytest.mark.django_db(transaction=True)
def test_batching_and_cancelling_never_both_win(gateway):
    customer = CustomerFactory()
    account = open_account(customer, balance=1_000_000)
    payments = [_pay(customer, account, 100) for _ in range(40)]
    barrier = threading.Barrier(2)
    cancelled: list[str] = []

    def cancel_all() -> None:
        barrier.wait()
        for payment in payments:
            try:
                payment_cancel(user=customer, payment_id=payment.pk)
                cancelled.append(str(payment.pk))
            except PaymentNotCancellable:
                pass
        connection.close()

    def form() -> None:
        barrier.wait()
        settlement_form_batches()
        connection.close()

    threads = [threading.Thread(target=cancel_all), threading.Thread(target=form)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = {str(p.pk): p.status for p in Payment.objects.all()}
    assert set(statuses.values()) <= {"batched", "cancelled"}
    assert {pk for pk, status in statuses.items() if status == "cancelled"} == set(cancelled)
    for payment in Payment.objects.select_related("hold"):
        events = [status for status, _ in _timeline(payment)]
        assert events in (["pending", "batched"], ["pending", "cancelled"])
        assert payment.hold.status == ("released" if payment.status == "cancelled" else "active")
    batched = sum(1 for s in statuses.values() if s == "batched")
    assert sum(SettlementBatch.objects.values_list("payment_count", flat=True)) == batched
    assert LimitUsage.objects.filter(user=customer).exists()
    assert ledger_verify().ok


@pytest.mark.django_db
def test_open_payments_are_a_prometheus_gauge_by_status(customer):
    from prometheus_client import REGISTRY

    account = open_account(customer, balance=10_000)
    _pay(customer, account, 100)
    _pay(customer, account, 200)
    assert REGISTRY.get_sample_value("bankcore_payments_open", {"status": "pending"}) == 2
    assert REGISTRY.get_sample_value("bankcore_payments_open", {"status": "submitted"}) == 0


@pytest.mark.django_db
def test_without_a_gateway_settlement_waits_and_payments_stay_pending(customer, settings):
    from transactions.services.settlement import NO_GATEWAY
    from transactions.tasks import run_settlement, sweep_settlement

    settings.PAYMENT_GATEWAY_URL = ""
    payment = _pay(customer, open_account(customer, balance=5_000), 1_000)
    assert run_settlement() == NO_GATEWAY and sweep_settlement() == NO_GATEWAY
    payment.refresh_from_db()
    assert payment.status == "pending" and not SettlementBatch.objects.exists()
    with pytest.raises(CommandError, match="PAYMENT_GATEWAY_URL"):
        call_command("run_settlement")

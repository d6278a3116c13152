"""Reconciliation of a day's camt.053 with the ledger: the service and `manage.py reconcile_settlements`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from accounts.services.bank_accounts import internal_account
from bankcore.testing import free_port
from integrations.gateway.client import GatewayClient
from integrations.gateway.iso20022 import build_pain001
from integrations.gateway.messages import (
    CreditNotification,
    CreditTransfer,
    CreditTransferBatch,
    Party,
    Statement,
    StatementEntry,
)
from transactions.models import Payment, ReconciliationMismatch, SettlementBatch
from transactions.services.holds import hold_capture
from transactions.services.incoming import incoming_credit_apply
from transactions.services.payments import Creditor, payment_create, payment_for_update, payment_record_status
from transactions.services.reconciliation import reconciliation_run
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.gateway_sim import GatewaySimulatorProcess

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

CREDITOR = Party(name="Jean Dupont", iban="FR1420041010050500013M02606", bic="BNPAFRPPXXX")
DEBTOR = Party(name="ACME SARL", iban="FR1420041010050500013M02606")


def today() -> date:
    return datetime.now(UTC).date()


def accepted_payment(amount: int) -> Payment:
    customer = CustomerFactory()
    source = open_account(customer, balance=100_000)
    return payment_create(
        user=customer,
        source_account_id=source.pk,
        amount=amount,
        currency="EUR",
        creditor=Creditor(name=CREDITOR.name, iban=CREDITOR.iban, bic=CREDITOR.bic),
        remittance_information="Invoice",
    )


def batch_of(payment: Payment, message_id: str) -> CreditTransferBatch:
    return CreditTransferBatch(
        message_id=message_id,
        debtor=Party(name="bankcore", iban="DE89370400440532013000", bic="COBADEFFXXX"),
        requested_execution_date=payment.requested_execution_date,
        transfers=[
            CreditTransfer(
                end_to_end_id=payment.end_to_end_id,
                amount=payment.amount,
                currency=payment.currency,
                creditor=CREDITOR,
                remittance_information=payment.remittance_information,
            )
        ],
    )


def settle_in_ledger(payment: Payment, message_id: str) -> Payment:
    """What settlement does for an accepted transfer: batch, submit, capture the hold, settled."""
    xml = build_pain001(batch_of(payment, message_id)).decode()
    clearing = internal_account(purpose="settlement_clearing", currency=payment.currency)
    with transaction.atomic():
        payment = payment_for_update(payment_id=payment.pk)
        payment.batch = SettlementBatch.objects.create(
            message_id=message_id,
            currency=payment.currency,
            payment_count=1,
            control_sum=payment.amount,
            requested_execution_date=payment.requested_execution_date,
            xml=xml,
            created_at=timezone.now(),
        )
        payment_record_status(payment=payment, status=Payment.Status.BATCHED)
        payment_record_status(payment=payment, status=Payment.Status.SUBMITTED)
        payment.transaction = hold_capture(
            hold=payment.hold,
            clearing_account_id=clearing.pk,
            description=f"Payment to {CREDITOR.name}",
            reference=payment.end_to_end_id,
        )
        payment_record_status(payment=payment, status=Payment.Status.SETTLED)
    return payment


def credit(notification_id: str, amount: int, booked_at: datetime | None = None) -> CreditNotification:
    return CreditNotification(
        id=notification_id,
        iban="DE02120300000000202051",  # unknown here: suspense, which reconciles all the same
        amount=amount,
        currency="EUR",
        debtor=DEBTOR,
        remittance_information="",
        booked_at=booked_at or datetime.now(UTC),
    )


def statement_of(day: date, *entries: tuple[str, int, bool]) -> Statement:
    return Statement(
        statement_id=f"STMT-{day:%Y%m%d}",
        account_iban="DE89370400440532013000",
        day=day,
        currency="EUR",
        entries=[StatementEntry(ref, amount, "EUR", credit, day, None) for ref, amount, credit in entries],
        xml=b"",
    )


def kinds(run) -> set[tuple[str, str, bool]]:
    return {(m.kind, m.reference, m.credit) for m in run.mismatches.all()}


def test_a_day_whose_statement_matches_the_ledger_has_no_mismatch():
    payment = settle_in_ledger(accepted_payment(2_500), "MSG-1")
    incoming_credit_apply(notification=credit("NTF-1", 1_000))
    day = today()
    run = reconciliation_run(
        day=day, statement=statement_of(day, (payment.end_to_end_id, 2_500, False), ("NTF-1", 1_000, True))
    )
    assert (run.mismatch_count, run.statement_entries, run.ledger_entries) == (0, 2, 2)


def test_each_kind_of_mismatch_is_recorded():
    settled = settle_in_ledger(accepted_payment(2_500), "MSG-1")
    lost = settle_in_ledger(accepted_payment(700), "MSG-2")
    incoming_credit_apply(notification=credit("NTF-1", 1_000))
    accepted_payment(900)  # pending: nothing has left, the gateway owes no entry for it
    day = today()
    statement = statement_of(
        day,
        (settled.end_to_end_id, 2_400, False),  # the gateway debited another amount
        ("NTF-1", 1_000, True),
        ("NTF-1", 1_000, True),  # booked twice at the gateway
        ("E2E-NOT-OURS", 123, False),  # a debit we never sent
    )
    run = reconciliation_run(day=day, statement=statement)
    assert kinds(run) == {
        (ReconciliationMismatch.Kind.AMOUNT_DIFFERS, settled.end_to_end_id, False),
        (ReconciliationMismatch.Kind.MISSING_IN_LEDGER, "NTF-1", True),
        (ReconciliationMismatch.Kind.MISSING_IN_LEDGER, "E2E-NOT-OURS", False),
        (ReconciliationMismatch.Kind.MISSING_AT_GATEWAY, lost.end_to_end_id, False),
    }
    differs = run.mismatches.get(kind="amount_differs")
    assert (differs.gateway_amount, differs.ledger_amount) == (2_400, 2_500)
    assert run.mismatch_count == 4


def test_only_the_days_items_are_compared():
    incoming_credit_apply(notification=credit("NTF-OLD", 1_000, datetime.now(UTC) - timedelta(days=2)))
    day = today()
    assert reconciliation_run(day=day, statement=statement_of(day)).mismatch_count == 0


@pytest.fixture
def simulator(tmp_path, settings):
    with GatewaySimulatorProcess(data_dir=tmp_path / "gateway") as sim:
        settings.PAYMENT_GATEWAY_URL = sim.url
        yield sim


def reconcile(day: date) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("reconcile_settlements", "--date", day.isoformat(), stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_the_command_exits_0_on_a_clean_day_and_1_listing_a_planted_mismatch(simulator):
    # The debit side: a payment the gateway executed, settled in the ledger.
    payment = accepted_payment(4_200)
    receipt = GatewayClient(simulator.url).submit(build_pain001(batch_of(payment, "MSG-SIM-1")), message_id="MSG-SIM-1")
    assert receipt.accepted
    settle_in_ledger(payment, "MSG-SIM-1")
    # The credit side: a credit the gateway booked, applied from its notification.
    body = simulator.control(
        "credits",
        {"iban": "DE02120300000000202051", "amount": "12.00", "currency": "EUR", "debtor": DEBTOR.__dict__},
    )
    incoming_credit_apply(notification=CreditNotification.from_json(json.dumps(body).encode()))

    out, error = reconcile(today())
    assert error is None, out
    assert "0 mismatches" in out and "2 entries at the gateway, 2 in the ledger" in out

    simulator.control("statement-entry", {"reference": "PLANTED-1", "amount": "9.99", "credit": True})
    out, error = reconcile(today())
    assert error is not None and error.returncode == 1
    assert "missing_in_ledger: credit PLANTED-1 gateway 9.99 ledger - EUR" in out
    assert "1 mismatches" in str(error)


def test_the_command_exits_1_with_a_clear_message_when_the_gateway_is_unreachable(settings):
    settings.PAYMENT_GATEWAY_URL = f"http://127.0.0.1:{free_port()}"
    _, error = reconcile(today())
    assert error is not None and error.returncode == 1
    assert "Could not fetch the statement" in str(error)


def test_the_command_exits_1_when_the_gateway_is_not_configured(settings):
    settings.PAYMENT_GATEWAY_URL = ""
    _, error = reconcile(today())
    assert error is not None and "PAYMENT_GATEWAY_URL" in str(error)

"""The gateway client against the simulator as a real process: submission, status reports,
statements, retries, the circuit breaker, and a gateway that crashes after accepting."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime

import pytest
from prometheus_client import REGISTRY

from bankcore import circuits
from integrations.gateway import iso20022
from integrations.gateway.client import gateway_breaker
from integrations.gateway.errors import GatewayRejected, GatewayUnavailable, UnknownMessage
from integrations.gateway.messages import CreditTransfer, CreditTransferBatch, Party
from integrations.gateway.testing import GatewaySimulatorProcess

DEBTOR = Party(name="bankcore Demo Bank", iban="DE89370400440532013000", bic="COBADEFFXXX")
JANE = Party(name="Jane Doe", iban="FR1420041010050500013M02606")
CLOSED_IBAN = "GB29NWBK60161331926819"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def make_batch(*transfers: CreditTransfer, message_id: str | None = None) -> CreditTransferBatch:
    if not transfers:
        transfers = (CreditTransfer(new_id("E2E"), 1250, "EUR", JANE, "Invoice"),)
    return CreditTransferBatch(
        message_id=message_id or new_id("MSG"),
        debtor=DEBTOR,
        requested_execution_date=datetime.now(UTC).date(),
        transfers=list(transfers),
    )


def submit(client, batch):
    return client.submit(iso20022.build_pain001(batch), message_id=batch.message_id)


def gauge() -> float | None:
    return REGISTRY.get_sample_value("bankcore_circuit_state", {"circuit": "payment_gateway"})


def test_a_submitted_batch_is_accepted_and_reported_settled(gateway, make_client):
    client = make_client(gateway.url)
    batch = make_batch()

    receipt = submit(client, batch)
    report = client.status_report(batch.message_id)

    assert (receipt.message_id, receipt.accepted, receipt.duplicate) == (batch.message_id, True, False)
    assert report.original_message_id == batch.message_id and report.group_status == "ACCP"
    [status] = report.transactions
    assert status.end_to_end_id == batch.transfers[0].end_to_end_id and status.status == "ACSC" and status.accepted


def test_a_creditor_iban_matching_the_reject_switch_is_rejected_with_its_reason(gateway, make_client):
    gateway.faults(reject_iban_pattern="^GB", reject_reason="AC01")
    client = make_client(gateway.url)
    good = CreditTransfer(new_id("E2E"), 100, "EUR", JANE, "ok")
    bad = CreditTransfer(new_id("E2E"), 200, "EUR", Party("Closed Ltd", CLOSED_IBAN), "closed")
    batch = make_batch(good, bad)
    before = gateway.state()

    submit(client, batch)
    report = client.status_report(batch.message_id)

    assert report.group_status == "PART"
    assert report.status_of(good.end_to_end_id).status == "ACSC"
    rejected = report.status_of(bad.end_to_end_id)
    assert rejected.rejected and rejected.reason_code == "AC01"
    after = gateway.state()
    assert after["transfers_executed"] - before["transfers_executed"] == 1
    assert after["transfers_rejected"] - before["transfers_rejected"] == 1


def test_a_duplicate_message_id_gets_a_duplicate_receipt_and_executes_once(gateway, make_client):
    client = make_client(gateway.url)
    batch = make_batch()
    before = gateway.state()

    first = submit(client, batch)
    second = submit(client, batch)

    assert not first.duplicate and second.duplicate and second.accepted
    after = gateway.state()
    assert after["messages"] - before["messages"] == 1
    assert after["transfers_executed"] - before["transfers_executed"] == 1


def test_the_same_end_to_end_id_in_a_second_message_executes_once(gateway, make_client):
    client = make_client(gateway.url)
    transfer = CreditTransfer(new_id("E2E"), 700, "EUR", JANE, "once")
    first, second = make_batch(transfer), make_batch(transfer)
    before = gateway.state()

    submit(client, first)
    receipt = submit(client, second)

    assert not receipt.duplicate  # a new message...
    assert client.status_report(second.message_id).status_of(transfer.end_to_end_id).status == "ACSC"
    assert gateway.state()["transfers_executed"] - before["transfers_executed"] == 1  # ...but no new execution
    debits = [e for e in client.statement(datetime.now(UTC).date()).entries if e.reference == transfer.end_to_end_id]
    assert len(debits) == 1


def test_a_report_not_ready_yet_is_none_and_an_unknown_message_raises(gateway, make_client):
    gateway.faults(report_delay_seconds=0.5)
    client = make_client(gateway.url)
    batch = make_batch()
    submit(client, batch)

    assert client.status_report(batch.message_id) is None
    time.sleep(0.6)
    assert client.status_report(batch.message_id).group_status == "ACCP"
    with pytest.raises(UnknownMessage):
        client.status_report(new_id("NEVER-SENT"))


def test_a_document_the_gateway_refuses_raises_rejected_without_retries(gateway, make_client):
    client = make_client(gateway.url)
    with pytest.raises(GatewayRejected) as caught:
        client.submit(b"<Document>not a pain.001</Document>", message_id="M-1")
    assert caught.value.status_code == 400
    assert gateway_breaker.current_state == "closed" and gateway_breaker.fail_counter == 0


def test_timeouts_raise_unavailable_after_retries_in_bounded_time_and_a_resubmission_is_a_duplicate(
    gateway, make_client
):
    gateway.faults(delay_seconds=1.0)
    client = make_client(gateway.url, timeout=0.2, attempts=3)
    batch = make_batch()
    before = gateway.state()

    started = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        submit(client, batch)
    assert time.monotonic() - started < 1.5  # 3 attempts x 0.2 s + tiny backoff, not 3 x 1 s

    gateway.reset_faults()
    time.sleep(1.1)  # the gateway finishes what it accepted while we had given up
    receipt = submit(client, batch)
    assert receipt.duplicate  # the outcome was unknown to us; resubmitting is safe
    assert gateway.state()["transfers_executed"] - before["transfers_executed"] == 1


def test_server_errors_are_retried_and_then_succeed(gateway, make_client):
    gateway.faults(fail_next=2, fail_status=500)
    client = make_client(gateway.url, attempts=3)

    receipt = submit(client, make_batch())

    assert receipt.accepted and not receipt.duplicate
    assert gateway.state()["faults"]["fail_next"] == 0
    assert gateway_breaker.fail_counter == 0  # one logical call, and it succeeded


def test_consecutive_failures_open_the_circuit_which_a_successful_probe_closes(gateway, make_client):
    gateway_breaker.fail_max = 3
    gateway_breaker.reset_timeout = 0.5
    client = make_client(gateway.url, attempts=2)
    gateway.faults(fail_next=1000)

    for _ in range(3):
        with pytest.raises(GatewayUnavailable):
            client.status_report(new_id("M"))
    assert gateway.state()["faults"]["fail_next"] == 1000 - 3 * 2  # retries inside one breaker call
    assert gateway_breaker.current_state == "open"
    assert circuits.states()["payment_gateway"] == "open" and gauge() == 2

    started = time.monotonic()
    with pytest.raises(GatewayUnavailable, match="circuit is open"):
        client.status_report(new_id("M"))
    assert time.monotonic() - started < 0.1
    assert gateway.state()["faults"]["fail_next"] == 994  # open: no request reached the gateway

    gateway.reset_faults()
    time.sleep(0.6)
    batch = make_batch()
    assert submit(client, batch).accepted  # the half-open probe succeeds...
    assert gateway_breaker.current_state == "closed" and gauge() == 0  # ...and closes the circuit
    assert circuits.states()["payment_gateway"] == "closed"


def test_a_failed_half_open_probe_opens_the_circuit_again(gateway, make_client):
    gateway_breaker.fail_max = 1
    gateway_breaker.reset_timeout = 0.3
    client = make_client(gateway.url, attempts=1)
    gateway.faults(fail_next=2)
    with pytest.raises(GatewayUnavailable):
        client.status_report(new_id("M"))
    assert gateway_breaker.current_state == "open"
    time.sleep(0.4)
    with pytest.raises(GatewayUnavailable):
        client.status_report(new_id("M"))
    assert gateway_breaker.current_state == "open" and gauge() == 2


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_shows_an_open_circuit_and_stays_ready(client, gateway, make_client):
    assert client.get("/readyz").json()["circuits"]["payment_gateway"] == "closed"

    gateway_breaker.fail_max = 1
    gateway.faults(fail_next=10)
    with pytest.raises(GatewayUnavailable):
        make_client(gateway.url, attempts=1).status_report(new_id("M"))

    response = client.get("/readyz")
    assert response.status_code == 200  # an open circuit only holds back settlement
    assert response.json()["circuits"]["payment_gateway"] == "open"


def test_the_statement_lists_executed_transfers_credits_and_planted_entries(gateway, make_client):
    gateway.faults(reject_iban_pattern="^GB")
    client = make_client(gateway.url)
    today = datetime.now(UTC).date()
    paid = CreditTransfer(new_id("E2E"), 1250, "EUR", JANE, "paid")
    refused = CreditTransfer(new_id("E2E"), 999, "EUR", Party("Closed", CLOSED_IBAN), "refused")
    submit(client, make_batch(paid, refused))
    credit = gateway.credit(
        iban="DE02120300000000202051",
        amount="40.00",
        currency="EUR",
        debtor={"name": "Jane Doe", "iban": JANE.iban},
        remittance_information="Thanks",
    )
    planted = gateway.plant_statement_entry(reference="FEE-1", amount="0.35", currency="EUR", credit=False)

    statement = client.statement(today)

    by_reference = {entry.reference: entry for entry in statement.entries}
    assert by_reference[paid.end_to_end_id].amount == 1250 and not by_reference[paid.end_to_end_id].credit
    assert by_reference[paid.end_to_end_id].counterparty.iban == JANE.iban
    assert refused.end_to_end_id not in by_reference
    assert by_reference[credit["id"]].credit and by_reference[credit["id"]].amount == 4000
    assert by_reference[planted["reference"]].amount == 35
    net = sum(e.amount if e.credit else -e.amount for e in statement.entries)
    assert statement.closing_balance == statement.opening_balance + net
    assert statement.account_iban == DEBTOR.iban and statement.day == today

    yesterday = client.statement(date.fromordinal(today.toordinal() - 1))
    assert yesterday.entries == [] and yesterday.closing_balance == statement.opening_balance


def test_accept_then_crash_resubmission_is_a_duplicate_executed_once(tmp_path, make_client):
    simulator = GatewaySimulatorProcess(tmp_path / "gateway").start()
    try:
        simulator.faults(crash_after_accept=True)
        client = make_client(simulator.url, attempts=2)
        batch = make_batch()

        with pytest.raises(GatewayUnavailable):
            submit(client, batch)
        assert simulator.wait_exit() == 17

        simulator.start()  # same data dir and port: the same gateway, restarted
        receipt = submit(client, batch)

        assert receipt.duplicate and receipt.accepted
        state = simulator.state()
        assert state["messages"] == 1 and state["transfers_executed"] == 1
        report = client.status_report(batch.message_id)
        assert report.transactions[0].status == "ACSC"
    finally:
        simulator.stop()

"""ISO 20022 documents and webhook bodies/signatures: built, validated, parsed (no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from integrations.gateway import iso20022, webhooks
from integrations.gateway.errors import InvalidMessage, InvalidSignature
from integrations.gateway.messages import (
    CreditNotification,
    CreditTransfer,
    CreditTransferBatch,
    Party,
    StatementEntry,
    TransactionStatus,
)

DEBTOR = Party(name="bankcore Demo Bank", iban="DE89370400440532013000", bic="COBADEFFXXX")
JANE = Party(name="Jane Müller", iban="FR1420041010050500013M02606")
BOB = Party(name="Bob Example", iban="NL91ABNA0417164300", bic="ABNANL2A")


def batch(**overrides: object) -> CreditTransferBatch:
    values: dict[str, object] = {
        "message_id": "MSG-20250102-0001",
        "debtor": DEBTOR,
        "requested_execution_date": date(2025, 1, 2),
        "transfers": [
            CreditTransfer("E2E-0001", 1250, "EUR", JANE, "Invoice 2025-001"),
            CreditTransfer("E2E-0002", 99, "EUR", BOB, ""),
        ],
    }
    values.update(overrides)
    return CreditTransferBatch(**values)  # type: ignore[arg-type]


def test_pain001_built_from_a_batch_validates_and_round_trips():
    original = batch()
    xml = iso20022.build_pain001(original)

    assert b"<MsgId>MSG-20250102-0001</MsgId>" in xml  # ours, not sepaxml's random id
    assert b"<CtrlSum>13.49</CtrlSum>" in xml and b"<NbOfTxs>2</NbOfTxs>" in xml
    iso20022.validate(xml, iso20022.PAIN001)
    assert iso20022.parse_pain001(xml) == original
    assert original.control_sum == 1349 and original.count == 2


@pytest.mark.parametrize(
    "broken",
    [
        {"creditor": Party(name="N" * 200, iban="FR1420041010050500013M02606")},
        {"creditor": Party(name="Jane", iban="not an iban")},
        {"end_to_end_id": "E" * 36},
        {"remittance_information": "R" * 141},
        {"currency": "USD"},
        {"amount": 0},
    ],
    ids=["200-char-name", "bad-iban", "long-end-to-end-id", "long-remittance", "not-eur", "zero-amount"],
)
def test_an_xsd_invalid_batch_raises_invalid_message(broken):
    transfer = replace(batch().transfers[0], **broken)
    with pytest.raises(InvalidMessage):
        iso20022.build_pain001(batch(transfers=[transfer]))


def test_an_empty_batch_or_a_long_message_id_is_invalid():
    with pytest.raises(InvalidMessage):
        iso20022.build_pain001(batch(transfers=[]))
    with pytest.raises(InvalidMessage):
        iso20022.build_pain001(batch(message_id="M" * 36))


def test_pain002_round_trips_with_reason_codes():
    xml = iso20022.build_pain002(
        message_id="STS-1",
        original_message_id="MSG-1",
        group_status="PART",
        transactions=[TransactionStatus("E2E-1", "ACSC"), TransactionStatus("E2E-2", "RJCT", "AC04")],
    )
    report = iso20022.parse_pain002(xml)

    assert (report.message_id, report.original_message_id, report.group_status) == ("STS-1", "MSG-1", "PART")
    assert report.transactions == [TransactionStatus("E2E-1", "ACSC"), TransactionStatus("E2E-2", "RJCT", "AC04")]
    assert report.transactions[0].accepted and not report.transactions[0].rejected
    assert report.transactions[1].rejected and not report.transactions[1].accepted
    assert report.status_of("E2E-2").reason_code == "AC04" and report.xml == xml


@pytest.mark.parametrize(
    "xml",
    [
        b"not xml at all",
        b"<Document/>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><Document>&e;</Document>',
    ],
    ids=["garbage", "no-namespace", "entity"],
)
def test_unreadable_or_foreign_documents_raise_invalid_message(xml):
    with pytest.raises(InvalidMessage):
        iso20022.parse_pain002(xml)


def test_a_pain002_with_an_unknown_status_code_fails_the_schema():
    xml = iso20022.build_pain002(
        message_id="STS-1", original_message_id="MSG-1", group_status="ACCP", transactions=[TransactionStatus("E", "ACSC")]
    )
    with pytest.raises(InvalidMessage, match="TxSts"):
        iso20022.parse_pain002(xml.replace(b"<TxSts>ACSC</TxSts>", b"<TxSts>DONE</TxSts>"))


def test_camt053_round_trips_with_consistent_balances():
    day = date(2025, 1, 2)
    entries = [
        StatementEntry("E2E-1", 1250, "EUR", False, day, JANE),
        StatementEntry("NTF-1", 500, "EUR", True, day, BOB),
    ]
    xml = iso20022.build_camt053(
        statement_id="STMT-1", account_iban=DEBTOR.iban, day=day, currency="EUR", opening_balance=1000, entries=entries
    )
    statement = iso20022.parse_camt053(xml)

    assert (statement.statement_id, statement.account_iban, statement.day, statement.currency) == (
        "STMT-1",
        DEBTOR.iban,
        day,
        "EUR",
    )
    assert statement.entries == entries
    assert (statement.opening_balance, statement.closing_balance) == (1000, 250)
    assert b"<Refs><EndToEndId>E2E-1</EndToEndId></Refs>" in xml


def test_camt054_carries_a_credit_notification():
    notification = CreditNotification(
        id="NTF-1",
        iban="DE02120300000000202051",
        amount=1250,
        currency="EUR",
        debtor=JANE,
        remittance_information="Rent",
        booked_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    xml = iso20022.build_camt054(message_id="N-1", account_iban=DEBTOR.iban, notification=notification)
    assert iso20022.parse_camt054(xml) == [notification]


def credit_body(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "id": "NTF-1",
        "type": "credit",
        "iban": "DE02120300000000202051",
        "amount": "12.50",
        "currency": "EUR",
        "debtor": {"name": "Jane Müller", "iban": "FR1420041010050500013M02606"},
        "remittance_information": "Rent January",
        "booked_at": "2025-01-02T10:00:00+00:00",
    }
    body.update(overrides)
    return json.dumps(body).encode()


def test_credit_notification_reads_the_webhook_body():
    notification = CreditNotification.from_json(credit_body())
    assert notification.amount == 1250 and notification.currency == "EUR"
    assert notification.debtor == Party("Jane Müller", "FR1420041010050500013M02606")
    assert notification.booked_at == datetime(2025, 1, 2, 10, tzinfo=UTC)
    assert CreditNotification.from_json(notification.to_json()) == notification


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "JSON"),
        (b"[]", "object"),
        (credit_body(type="debit"), "type"),
        (credit_body(id=""), "id"),
        (credit_body(amount=12.5), "amount"),
        (credit_body(amount="12.505"), "amount"),
        (credit_body(amount="-1.00"), "amount"),
        (credit_body(currency="XXX"), "amount"),
        (credit_body(debtor="Jane"), "debtor"),
        (credit_body(debtor={"name": "Jane"}), "debtor.iban"),
        (credit_body(booked_at="yesterday"), "booked_at"),
        (credit_body(booked_at="2025-01-02T10:00:00"), "booked_at"),
        (credit_body(remittance_information=5), "remittance_information"),
    ],
)
def test_a_malformed_webhook_body_raises_value_error_naming_the_problem(body, problem):
    with pytest.raises(ValueError, match=problem):
        CreditNotification.from_json(body)


def test_a_webhook_signature_verifies_only_for_its_body_secret_and_time():
    body, now = b'{"id":"NTF-1"}', 1_700_000_000
    header = webhooks.sign("s3cret", body, now)
    assert header.startswith(f"t={now},v1=")

    webhooks.verify("s3cret", header, body, now=now + 299)
    webhooks.verify("new-secret, s3cret", header, body, now=now)  # rotation: any listed secret

    with pytest.raises(InvalidSignature, match="does not match"):
        webhooks.verify("s3cret", header, body + b" ", now=now)
    with pytest.raises(InvalidSignature, match="does not match"):
        webhooks.verify("other", header, body, now=now)
    with pytest.raises(InvalidSignature, match="tolerance"):
        webhooks.verify("s3cret", header, body, now=now + 301)
    with pytest.raises(InvalidSignature, match="tolerance"):
        webhooks.verify("s3cret", header, body, now=now - 301)
    forged_time = header.replace(f"t={now}", f"t={now + 10}")
    with pytest.raises(InvalidSignature, match="does not match"):
        webhooks.verify("s3cret", forged_time, body, now=now)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00", f"t={1_700_000_000}", "t=1,v1"])
def test_a_missing_or_malformed_signature_header_is_refused(header):
    with pytest.raises(InvalidSignature):
        webhooks.verify("s3cret", header, b"{}", now=1_700_000_000)


def test_no_configured_secret_refuses_every_webhook():
    with pytest.raises(InvalidSignature):
        webhooks.verify("", webhooks.sign("x", b"{}", 1), b"{}", now=1)

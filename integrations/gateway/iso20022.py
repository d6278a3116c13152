"""ISO 20022 documents for the payment gateway: build and parse, always schema-validated.

- pain.001.001.03 (customer credit transfer initiation): built by sepaxml's SepaTransfer,
  validated against the XSD sepaxml ships.
- pain.002.001.03 (payment status report), camt.053.001.02 (bank-to-customer statement),
  camt.054.001.02 (debit/credit notification): the official XSDs vendored in schemas/.

Every parse validates first and raises InvalidMessage on any failure (malformed XML, schema
violation, a value we cannot read); every build validates its output, so nothing invalid
leaves this module. XML is read with xmlschema's defused parser (no entities, no DTDs).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import sepaxml
import xmlschema
from sepaxml import SepaTransfer

from bankcore.money import exponent, format_amount

from .errors import InvalidMessage
from .messages import (
    CreditNotification,
    CreditTransfer,
    CreditTransferBatch,
    Party,
    Statement,
    StatementEntry,
    StatusReport,
    TransactionStatus,
)

PAIN001 = "pain.001.001.03"
PAIN002 = "pain.002.001.03"
CAMT053 = "camt.053.001.02"
CAMT054 = "camt.054.001.02"

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
_SCHEMA_FILES = {
    PAIN001: Path(sepaxml.__file__).resolve().parent / "schemas" / f"{PAIN001}.xsd",
    PAIN002: SCHEMAS_DIR / f"{PAIN002}.xsd",
    CAMT053: SCHEMAS_DIR / f"{CAMT053}.xsd",
    CAMT054: SCHEMAS_DIR / f"{CAMT054}.xsd",
}
SEPA_CURRENCY = "EUR"


# --- schemas and validation ---------------------------------------------------------------


@cache
def schema(name: str) -> xmlschema.XMLSchema:
    """The compiled XSD `name` (compiling takes a noticeable fraction of a second: once per process)."""
    return xmlschema.XMLSchema(str(_SCHEMA_FILES[name]))


def _ns(name: str) -> str:
    return f"urn:iso:std:iso:20022:tech:xsd:{name}"


def validate(xml: bytes, name: str) -> ET.Element:
    """Parse `xml` (defused) and validate it against schema `name`; its root element.

    Raises InvalidMessage with the first problem found.
    """
    try:
        resource = xmlschema.XMLResource(io.BytesIO(xml), defuse="always", allow="none")
    except Exception as exc:
        raise InvalidMessage(f"{name}: not well-formed XML: {exc}") from exc
    try:
        error = next(schema(name).iter_errors(resource), None)
    except Exception as exc:
        raise InvalidMessage(f"{name}: cannot be validated: {exc}") from exc
    if error is not None:
        path = getattr(error, "path", "") or ""
        raise InvalidMessage(f"{name}: {path}: {error.reason or error.message}")
    root = resource.root
    if root.tag != f"{{{_ns(name)}}}Document":
        raise InvalidMessage(f"{name}: root element is {root.tag}, not a {name} Document")
    return root  # type: ignore[no-any-return]


def pretty(xml: bytes | str) -> str:
    """`xml` indented for people (the admin); parsed defused. Unreadable input comes back as it is."""
    data = xml.encode() if isinstance(xml, str) else xml
    try:
        root = xmlschema.XMLResource(io.BytesIO(data), defuse="always", allow="none").root
    except Exception:  # noqa: BLE001 - shown as stored when it cannot be parsed
        return data.decode(errors="replace")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


# --- small helpers ----------------------------------------------------------------------------


class _Reader:
    """Namespaced lookups on one document: path segments separated by '/'."""

    def __init__(self, name: str) -> None:
        self.prefix = f"{{{_ns(name)}}}"

    def _path(self, path: str) -> str:
        return "/".join(self.prefix + part for part in path.split("/"))

    def find(self, element: ET.Element, path: str) -> ET.Element | None:
        return element.find(self._path(path))

    def findall(self, element: ET.Element, path: str) -> list[ET.Element]:
        return element.findall(self._path(path))

    def text(self, element: ET.Element, path: str, default: str | None = None) -> str:
        found = element.find(self._path(path))
        if found is None or found.text is None:
            if default is None:
                raise InvalidMessage(f"missing element {path}")
            return default
        return found.text.strip()


def _minor_units(text: str, currency: str) -> int:
    """'12.50' EUR -> 1250, exactly (the schema already checked the syntax)."""
    try:
        value = Decimal(text).scaleb(exponent(currency))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidMessage(f"unreadable amount {text!r} {currency}: {exc}") from None
    if value != value.to_integral_value():
        raise InvalidMessage(f"amount {text!r} has more decimals than {currency} allows")
    return int(value)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidMessage(f"unreadable date {text!r}") from None


def _now_text(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0).isoformat()


class _Builder:
    """Element building in one namespace; serialised with it as the default namespace."""

    def __init__(self, name: str, root_tag: str) -> None:
        self.name = name
        # Unqualified tags under a root carrying xmlns: ElementTree's default_namespace option
        # refuses unqualified attributes such as Ccy, and register_namespace is process-global.
        self.document = ET.Element("Document", {"xmlns": _ns(name)})
        self.root = self.sub(self.document, root_tag)

    def sub(self, parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
        element = ET.SubElement(parent, tag, attrib)
        if text is not None:
            element.text = text
        return element

    def path(self, parent: ET.Element, path: str, text: str | None = None) -> ET.Element:
        """Create the nested elements of 'A/B/C' under parent; text on the last."""
        element = parent
        for part in path.split("/"):
            element = self.sub(element, part)
        if text is not None:
            element.text = text
        return element

    def amount(self, parent: ET.Element, tag: str, minor: int, currency: str) -> ET.Element:
        return self.sub(parent, tag, format_amount(minor, currency), Ccy=currency)

    def party(self, parent: ET.Element, role: str, party: Party) -> None:
        """<Dbtr><Nm/></Dbtr><DbtrAcct><Id><IBAN/></Id></DbtrAcct> (role = Dbtr or Cdtr)."""
        self.path(parent, f"{role}/Nm", party.name)
        self.path(parent, f"{role}Acct/Id/IBAN", party.iban)

    def export(self) -> bytes:
        xml: bytes = ET.tostring(self.document, encoding="utf-8", xml_declaration=True)
        validate(xml, self.name)
        return xml


# --- pain.001: credit transfer initiation (ours, to the gateway) ------------------------------


class _SepaTransfer(SepaTransfer):
    """sepaxml's SepaTransfer with our message id instead of its random one (it writes MsgId
    into the group header while constructing, so the id must be in place before that)."""

    def __init__(self, config: dict[str, Any], *, message_id: str) -> None:
        self._message_id = message_id
        super().__init__(config, schema=PAIN001, clean=False)

    def _create_header(self) -> None:
        self.msg_id = self._message_id
        super()._create_header()

    def _finalize_batch(self) -> None:
        super()._finalize_batch()
        # sepaxml always writes <RmtInf><Ustrd>; without remittance text the element must go
        # (Max140Text has a minimum length of 1). Its tree has unqualified tags.
        for tx in self._xml.iter("CdtTrfTxInf"):
            remittance = tx.find("RmtInf")
            if remittance is not None and not (remittance.findtext("Ustrd") or "").strip():
                tx.remove(remittance)


def build_pain001(batch: CreditTransferBatch) -> bytes:
    """The batch as one pain.001.001.03 SEPA credit transfer message, validated against the XSD.

    MsgId is batch.message_id; each transfer carries its end_to_end_id. EUR only (SEPA).
    Nothing is cleaned or truncated: a value the schema refuses (a name over 70 characters,
    a malformed IBAN, an id over 35) raises InvalidMessage, and nothing should be sent.
    """
    if not batch.transfers:
        raise InvalidMessage("a pain.001 needs at least one transfer")
    for transfer in batch.transfers:
        if transfer.currency != SEPA_CURRENCY:
            raise InvalidMessage(f"{transfer.end_to_end_id}: SEPA transfers are in EUR, not {transfer.currency}")
        if transfer.amount <= 0:
            raise InvalidMessage(f"{transfer.end_to_end_id}: amount must be positive")
    config: dict[str, Any] = {
        "name": batch.debtor.name,
        "IBAN": batch.debtor.iban,
        "batch": True,
        "currency": SEPA_CURRENCY,
    }
    if batch.debtor.bic:
        config["BIC"] = batch.debtor.bic
    try:
        sepa = _SepaTransfer(config, message_id=batch.message_id)
        for transfer in batch.transfers:
            payment: dict[str, Any] = {
                "name": transfer.creditor.name,
                "IBAN": transfer.creditor.iban,
                "amount": transfer.amount,
                "execution_date": batch.requested_execution_date,
                "description": transfer.remittance_information,
                "endtoend_id": transfer.end_to_end_id,
            }
            if transfer.creditor.bic:
                payment["BIC"] = transfer.creditor.bic
            sepa.add_payment(payment)
        xml: bytes = sepa.export(validate=False)
    except Exception as exc:
        raise InvalidMessage(f"pain.001 cannot be built: {exc}") from exc
    validate(xml, PAIN001)  # the cached schema: sepaxml's own validate compiles it every time
    return xml


def parse_pain001(xml: bytes) -> CreditTransferBatch:
    """A pain.001.001.03 back into a batch (the gateway simulator's side). Validated first.

    The debtor and execution date are the first payment information block's.
    """
    root = validate(xml, PAIN001)
    r = _Reader(PAIN001)
    initiation = r.find(root, "CstmrCdtTrfInitn")
    assert initiation is not None  # the schema requires it
    message_id = r.text(initiation, "GrpHdr/MsgId")
    blocks = r.findall(initiation, "PmtInf")
    first = blocks[0]
    debtor = Party(
        name=r.text(first, "Dbtr/Nm", ""),
        iban=r.text(first, "DbtrAcct/Id/IBAN", ""),
        bic=r.text(first, "DbtrAgt/FinInstnId/BIC", ""),
    )
    transfers = []
    for block in blocks:
        for tx in r.findall(block, "CdtTrfTxInf"):
            instructed = r.find(tx, "Amt/InstdAmt")
            if instructed is None or instructed.text is None:
                raise InvalidMessage("pain.001: only instructed amounts are supported")
            currency = instructed.get("Ccy", "")
            transfers.append(
                CreditTransfer(
                    end_to_end_id=r.text(tx, "PmtId/EndToEndId"),
                    amount=_minor_units(instructed.text, currency),
                    currency=currency,
                    creditor=Party(
                        name=r.text(tx, "Cdtr/Nm", ""),
                        iban=r.text(tx, "CdtrAcct/Id/IBAN", ""),
                        bic=r.text(tx, "CdtrAgt/FinInstnId/BIC", ""),
                    ),
                    remittance_information=r.text(tx, "RmtInf/Ustrd", ""),
                )
            )
    return CreditTransferBatch(
        message_id=message_id,
        debtor=debtor,
        requested_execution_date=_parse_date(r.text(first, "ReqdExctnDt")),
        transfers=transfers,
    )


def pain001_payment_information_id(xml: bytes) -> str:
    """The first PmtInfId of a (valid) pain.001: its status report refers to it."""
    root = validate(xml, PAIN001)
    return _Reader(PAIN001).text(root, "CstmrCdtTrfInitn/PmtInf/PmtInfId")


# --- pain.002: payment status report (the gateway's, to us) ----------------------------------


def build_pain002(
    *,
    message_id: str,
    original_message_id: str,
    group_status: str,
    transactions: Iterable[TransactionStatus],
    original_payment_information_id: str = "",
    created_at: datetime | None = None,
) -> bytes:
    """A pain.002.001.03 reporting on `original_message_id`: group status plus one status
    (and reason code when rejected) per end-to-end id. Validated."""
    b = _Builder(PAIN002, "CstmrPmtStsRpt")
    header = b.sub(b.root, "GrpHdr")
    b.sub(header, "MsgId", message_id)
    b.sub(header, "CreDtTm", _now_text(created_at))
    group = b.sub(b.root, "OrgnlGrpInfAndSts")
    b.sub(group, "OrgnlMsgId", original_message_id)
    b.sub(group, "OrgnlMsgNmId", PAIN001)
    b.sub(group, "GrpSts", group_status)
    payment_info = b.sub(b.root, "OrgnlPmtInfAndSts")
    b.sub(payment_info, "OrgnlPmtInfId", original_payment_information_id or original_message_id)
    for status in transactions:
        tx = b.sub(payment_info, "TxInfAndSts")
        b.sub(tx, "OrgnlEndToEndId", status.end_to_end_id)
        b.sub(tx, "TxSts", status.status)
        if status.reason_code:
            b.path(tx, "StsRsnInf/Rsn/Cd", status.reason_code)
    return b.export()


def parse_pain002(xml: bytes) -> StatusReport:
    """A pain.002.001.03 into a StatusReport. Validated first (InvalidMessage otherwise).

    A transaction without its own status takes the payment block's, then the group's.
    """
    root = validate(xml, PAIN002)
    r = _Reader(PAIN002)
    report = r.find(root, "CstmrPmtStsRpt")
    assert report is not None
    group_status = r.text(report, "OrgnlGrpInfAndSts/GrpSts", "")
    transactions = []
    for block in r.findall(report, "OrgnlPmtInfAndSts"):
        block_status = r.text(block, "PmtInfSts", group_status)
        for tx in r.findall(block, "TxInfAndSts"):
            reason = r.text(tx, "StsRsnInf/Rsn/Cd", "") or r.text(tx, "StsRsnInf/Rsn/Prtry", "")
            transactions.append(
                TransactionStatus(
                    end_to_end_id=r.text(tx, "OrgnlEndToEndId"),
                    status=r.text(tx, "TxSts", block_status),
                    reason_code=reason,
                )
            )
    return StatusReport(
        message_id=r.text(report, "GrpHdr/MsgId"),
        original_message_id=r.text(report, "OrgnlGrpInfAndSts/OrgnlMsgId"),
        group_status=group_status,
        transactions=transactions,
        xml=xml,
    )


# --- camt.053: end-of-day statement of the bank's account at the gateway ---------------------

# ISO bank transaction codes: payments, issued / received credit transfers, SEPA.
_BANK_TX_CODE = {False: ("PMNT", "ICDT", "ESCT"), True: ("PMNT", "RCDT", "ESCT")}


def _balance(b: _Builder, parent: ET.Element, code: str, minor: int, currency: str, day: date) -> None:
    balance = b.sub(parent, "Bal")
    b.path(balance, "Tp/CdOrPrtry/Cd", code)
    b.amount(balance, "Amt", abs(minor), currency)
    b.sub(balance, "CdtDbtInd", "CRDT" if minor >= 0 else "DBIT")
    b.path(balance, "Dt/Dt", day.isoformat())


def _entry(b: _Builder, parent: ET.Element, entry: StatementEntry) -> None:
    element = b.sub(parent, "Ntry")
    b.amount(element, "Amt", entry.amount, entry.currency)
    b.sub(element, "CdtDbtInd", "CRDT" if entry.credit else "DBIT")
    b.sub(element, "Sts", "BOOK")
    b.path(element, "BookgDt/Dt", entry.booking_date.isoformat())
    b.path(element, "ValDt/Dt", entry.booking_date.isoformat())
    domain, family, sub_family = _BANK_TX_CODE[entry.credit]
    code = b.path(element, "BkTxCd/Domn")
    b.sub(code, "Cd", domain)
    fmly = b.sub(code, "Fmly")
    b.sub(fmly, "Cd", family)
    b.sub(fmly, "SubFmlyCd", sub_family)
    details = b.path(element, "NtryDtls/TxDtls")
    refs = b.sub(details, "Refs")
    if entry.credit:
        b.sub(refs, "AcctSvcrRef", entry.reference)
    b.sub(refs, "EndToEndId", entry.reference)
    if entry.counterparty is not None:
        parties = b.sub(details, "RltdPties")
        b.party(parties, "Dbtr" if entry.credit else "Cdtr", entry.counterparty)
        if entry.counterparty.bic:
            agent = "DbtrAgt" if entry.credit else "CdtrAgt"
            b.path(details, f"RltdAgts/{agent}/FinInstnId/BIC", entry.counterparty.bic)


def build_camt053(
    *,
    statement_id: str,
    account_iban: str,
    day: date,
    currency: str,
    opening_balance: int,
    entries: Iterable[StatementEntry],
    message_id: str = "",
    created_at: datetime | None = None,
) -> bytes:
    """A camt.053.001.02 for `account_iban` on `day`: opening (OPBD) and closing (CLBD) booked
    balances, closing = opening + credits - debits, and one booked entry per StatementEntry
    whose reference travels in NtryDtls/TxDtls/Refs/EndToEndId. Validated."""
    entries = list(entries)
    closing = opening_balance + sum(e.amount if e.credit else -e.amount for e in entries)
    b = _Builder(CAMT053, "BkToCstmrStmt")
    header = b.sub(b.root, "GrpHdr")
    b.sub(header, "MsgId", message_id or statement_id)
    b.sub(header, "CreDtTm", _now_text(created_at))
    statement = b.sub(b.root, "Stmt")
    b.sub(statement, "Id", statement_id)
    b.sub(statement, "CreDtTm", _now_text(created_at))
    period = b.sub(statement, "FrToDt")
    b.sub(period, "FrDtTm", f"{day.isoformat()}T00:00:00+00:00")
    b.sub(period, "ToDtTm", f"{day.isoformat()}T23:59:59+00:00")
    account = b.sub(statement, "Acct")
    b.path(account, "Id/IBAN", account_iban)
    b.sub(account, "Ccy", currency)
    _balance(b, statement, "OPBD", opening_balance, currency, day)
    _balance(b, statement, "CLBD", closing, currency, day)
    for entry in entries:
        _entry(b, statement, entry)
    return b.export()


def _read_entry(r: _Reader, element: ET.Element, fallback_day: date) -> StatementEntry:
    amount = r.find(element, "Amt")
    assert amount is not None and amount.text is not None
    currency = amount.get("Ccy", "")
    credit = r.text(element, "CdtDbtInd") == "CRDT"
    details = r.find(element, "NtryDtls/TxDtls")
    reference = ""
    counterparty = None
    if details is not None:
        reference = r.text(details, "Refs/EndToEndId", "") or r.text(details, "Refs/AcctSvcrRef", "")
        role = "Dbtr" if credit else "Cdtr"
        parties = r.find(details, "RltdPties")
        if parties is not None and r.find(parties, role) is not None:
            counterparty = Party(
                name=r.text(parties, f"{role}/Nm", ""),
                iban=r.text(parties, f"{role}Acct/Id/IBAN", ""),
                bic=r.text(details, f"RltdAgts/{role}Agt/FinInstnId/BIC", ""),
            )
    reference = reference or r.text(element, "AcctSvcrRef", "") or r.text(element, "NtryRef", "")
    booking = r.text(element, "BookgDt/Dt", "") or r.text(element, "BookgDt/DtTm", "")
    return StatementEntry(
        reference=reference,
        amount=_minor_units(amount.text, currency),
        currency=currency,
        credit=credit,
        booking_date=_parse_date(booking) if booking else fallback_day,
        counterparty=counterparty,
    )


def _read_balance(r: _Reader, statement: ET.Element, code: str) -> tuple[int, date | None] | None:
    for balance in r.findall(statement, "Bal"):
        if r.text(balance, "Tp/CdOrPrtry/Cd", "") != code:
            continue
        amount = r.find(balance, "Amt")
        assert amount is not None and amount.text is not None
        minor = _minor_units(amount.text, amount.get("Ccy", ""))
        if r.text(balance, "CdtDbtInd") == "DBIT":
            minor = -minor
        when = r.text(balance, "Dt/Dt", "") or r.text(balance, "Dt/DtTm", "")
        return minor, _parse_date(when) if when else None
    return None


def parse_camt053(xml: bytes) -> Statement:
    """A camt.053.001.02 into a Statement (its first Stmt). Validated first.

    The day is the closing balance's date (else the period's start); an entry's reference is
    its TxDtls/Refs/EndToEndId (else the account servicer's reference).
    """
    root = validate(xml, CAMT053)
    r = _Reader(CAMT053)
    statement = r.find(root, "BkToCstmrStmt/Stmt")
    assert statement is not None
    closing = _read_balance(r, statement, "CLBD")
    opening = _read_balance(r, statement, "OPBD")
    day_text = r.text(statement, "FrToDt/FrDtTm", "")
    day = (closing[1] if closing and closing[1] else None) or (_parse_date(day_text) if day_text else None)
    if day is None:
        raise InvalidMessage("camt.053: no statement date (no CLBD balance date, no FrToDt)")
    entries = [_read_entry(r, element, day) for element in r.findall(statement, "Ntry")]
    currency = r.text(statement, "Acct/Ccy", "") or (entries[0].currency if entries else "")
    iban = r.text(statement, "Acct/Id/IBAN", "")
    return Statement(
        statement_id=r.text(statement, "Id"),
        account_iban=iban,
        day=day,
        currency=currency,
        entries=entries,
        xml=xml,
        opening_balance=opening[0] if opening else 0,
        closing_balance=closing[0] if closing else 0,
    )


# --- camt.054: credit notification (the JSON webhook is the contract; this is its ISO twin) ---


def build_camt054(*, message_id: str, account_iban: str, notification: CreditNotification) -> bytes:
    """One incoming credit as a camt.054.001.02 notification. Validated."""
    b = _Builder(CAMT054, "BkToCstmrDbtCdtNtfctn")
    header = b.sub(b.root, "GrpHdr")
    b.sub(header, "MsgId", message_id)
    b.sub(header, "CreDtTm", _now_text())
    ntfctn = b.sub(b.root, "Ntfctn")
    b.sub(ntfctn, "Id", notification.id)
    b.sub(ntfctn, "CreDtTm", _now_text())
    account = b.sub(ntfctn, "Acct")
    b.path(account, "Id/IBAN", account_iban)
    entry = StatementEntry(
        reference=notification.id,
        amount=notification.amount,
        currency=notification.currency,
        credit=True,
        booking_date=notification.booked_at.astimezone(UTC).date(),
        counterparty=notification.debtor,
    )
    _entry(b, ntfctn, entry)
    ntry = ntfctn.findall("Ntry")[-1]
    details = ntry.find("NtryDtls/TxDtls")
    assert details is not None
    # The creditor account is the customer's: it travels as the related creditor account.
    parties = details.find("RltdPties")
    if parties is None:
        parties = b.sub(details, "RltdPties")
    b.path(parties, "CdtrAcct/Id/IBAN", notification.iban)
    if notification.remittance_information:
        b.path(details, "RmtInf/Ustrd", notification.remittance_information)
    return b.export()


def parse_camt054(xml: bytes) -> list[CreditNotification]:
    """The credit entries of a camt.054.001.02 as CreditNotifications. Validated first."""
    root = validate(xml, CAMT054)
    r = _Reader(CAMT054)
    notifications = []
    for ntfctn in r.findall(root, "BkToCstmrDbtCdtNtfctn/Ntfctn"):
        for element in r.findall(ntfctn, "Ntry"):
            entry = _read_entry(r, element, datetime.now(UTC).date())
            if not entry.credit:
                continue
            details = r.find(element, "NtryDtls/TxDtls")
            iban = r.text(details, "RltdPties/CdtrAcct/Id/IBAN", "") if details is not None else ""
            remittance = r.text(details, "RmtInf/Ustrd", "") if details is not None else ""
            notifications.append(
                CreditNotification(
                    id=entry.reference,
                    iban=iban or r.text(ntfctn, "Acct/Id/IBAN", ""),
                    amount=entry.amount,
                    currency=entry.currency,
                    debtor=entry.counterparty or Party(name="", iban=""),
                    remittance_information=remittance,
                    booked_at=datetime.combine(entry.booking_date, datetime.min.time(), tzinfo=UTC),
                )
            )
    return notifications

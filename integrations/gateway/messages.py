"""Plain values that cross the payment-gateway edge, in and out.

The ledger builds and reads these; it never sees XML, JSON or HTTP. Amounts are integer minor
units of `currency` (bankcore.money), never floats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bankcore.money import InvalidAmount, format_amount, parse_amount

ACCEPTED_STATUSES = frozenset({"ACCP", "ACSC", "ACSP", "ACTC", "ACWC"})
REJECTED_STATUS = "RJCT"


@dataclass(frozen=True)
class Party:
    """A debtor or creditor: name and account (IBAN), with the bank's BIC when known."""

    name: str
    iban: str
    bic: str = ""


@dataclass(frozen=True)
class CreditTransfer:
    """One payment to another bank inside a batch. `end_to_end_id` travels with it to the
    creditor and back in every status report and statement (at most 35 characters)."""

    end_to_end_id: str
    amount: int
    currency: str
    creditor: Party
    remittance_information: str


@dataclass(frozen=True)
class CreditTransferBatch:
    """One pain.001 message: transfers from the bank's settlement account (`debtor`)."""

    message_id: str
    debtor: Party
    requested_execution_date: date
    transfers: list[CreditTransfer] = field(default_factory=list)

    @property
    def control_sum(self) -> int:
        """Sum of the transfers' amounts, in minor units."""
        return sum(transfer.amount for transfer in self.transfers)

    @property
    def count(self) -> int:
        return len(self.transfers)


@dataclass(frozen=True)
class TransactionStatus:
    """The gateway's verdict on one transfer (ISO 20022 status code, reason code when rejected)."""

    end_to_end_id: str
    status: str
    reason_code: str = ""

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED_STATUSES

    @property
    def rejected(self) -> bool:
        return self.status == REJECTED_STATUS


@dataclass(frozen=True)
class StatusReport:
    """A pain.002: the gateway's report on one message we sent (`original_message_id`)."""

    message_id: str
    original_message_id: str
    group_status: str
    transactions: list[TransactionStatus]
    xml: bytes

    def status_of(self, end_to_end_id: str) -> TransactionStatus | None:
        return next((tx for tx in self.transactions if tx.end_to_end_id == end_to_end_id), None)


@dataclass(frozen=True)
class StatementEntry:
    """One booking on the bank's account at the gateway. `reference` is the end-to-end id for
    our payments, the notification id for incoming credits. `amount` is positive; `credit`
    says the direction."""

    reference: str
    amount: int
    currency: str
    credit: bool
    booking_date: date
    counterparty: Party | None


@dataclass(frozen=True)
class Statement:
    """A camt.053: the bank's account at the gateway for one day. Balances in minor units
    (closing = opening + credits - debits)."""

    statement_id: str
    account_iban: str
    day: date
    currency: str
    entries: list[StatementEntry]
    xml: bytes
    opening_balance: int = 0
    closing_balance: int = 0


@dataclass(frozen=True)
class SubmissionReceipt:
    """The gateway's answer to a pain.001: received (`accepted`), and whether it had that
    message id already (`duplicate`: nothing new was executed)."""

    message_id: str
    accepted: bool
    duplicate: bool


@dataclass(frozen=True)
class CreditNotification:
    """An incoming credit the gateway booked for one of our customers (the webhook body)."""

    id: str
    iban: str
    amount: int
    currency: str
    debtor: Party
    remittance_information: str
    booked_at: datetime

    @classmethod
    def from_json(cls, body: bytes) -> CreditNotification:
        """Parse the webhook body (API.md, "Incoming credits from the gateway").

        Raises ValueError naming the first problem; never anything else for bad input.
        """
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        if data.get("type") != "credit":
            raise ValueError(f"type must be 'credit', got {data.get('type')!r}")
        notification_id = _text(data, "id")
        iban = _text(data, "iban").replace(" ", "").upper()
        currency = _text(data, "currency").upper()
        try:
            amount = parse_amount(data.get("amount"), currency)
        except InvalidAmount as exc:
            raise ValueError(f"amount: {exc}") from None
        debtor_data = data.get("debtor")
        if not isinstance(debtor_data, dict):
            raise ValueError("debtor must be an object with name and iban")
        debtor = Party(
            name=_text(debtor_data, "name", "debtor.name"),
            iban=_text(debtor_data, "iban", "debtor.iban").replace(" ", "").upper(),
            bic=_text(debtor_data, "bic", "debtor.bic", required=False),
        )
        remittance = data.get("remittance_information", "")
        if remittance is None:
            remittance = ""
        if not isinstance(remittance, str):
            raise ValueError("remittance_information must be a string")
        booked_text = _text(data, "booked_at")
        try:
            booked_at = datetime.fromisoformat(booked_text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"booked_at is not an ISO 8601 date-time: {booked_text!r}") from None
        if booked_at.tzinfo is None:
            raise ValueError("booked_at must carry a UTC offset")
        return cls(
            id=notification_id,
            iban=iban,
            amount=amount,
            currency=currency,
            debtor=debtor,
            remittance_information=remittance,
            booked_at=booked_at,
        )

    def to_dict(self) -> dict[str, Any]:
        debtor: dict[str, str] = {"name": self.debtor.name, "iban": self.debtor.iban}
        if self.debtor.bic:
            debtor["bic"] = self.debtor.bic
        return {
            "id": self.id,
            "type": "credit",
            "iban": self.iban,
            "amount": format_amount(self.amount, self.currency),
            "currency": self.currency,
            "debtor": debtor,
            "remittance_information": self.remittance_information,
            "booked_at": self.booked_at.isoformat(),
        }

    def to_json(self) -> bytes:
        """The webhook body, as the gateway sends it."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def _text(data: dict[str, Any], key: str, label: str | None = None, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{label or key} must be a non-empty string")
    return value.strip()

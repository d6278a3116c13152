"""Plain values that cross the legacy core's edge, in and out.

The app builds and reads these; it never sees ISO 8583. Amounts are integer minor units of
`currency` (bankcore.money), never floats; times are aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import protocol

DEBIT, CREDIT = "debit", "credit"
_PROCESSING_CODES = {DEBIT: protocol.PROCESSING_DEBIT, CREDIT: protocol.PROCESSING_CREDIT}
_KINDS = {code: kind for kind, code in _PROCESSING_CODES.items()}


@dataclass(frozen=True)
class LegacyBalance:
    """A legacy account's balances as the core reported them at `as_of` (our clock on receipt).
    `ledger` is the booked balance, `available` what can be debited now."""

    account_number: str
    currency: str
    ledger: int
    available: int
    as_of: datetime


@dataclass(frozen=True)
class OriginalRequest:
    """Everything about one financial request (0200) that its reversal (0400) needs, fixed
    BEFORE it is sent: store it, then send it (store-and-forward), and a reversal can be built
    from the stored row at any later time, by any process.

    `stan` and `rrn` are the request's identifiers (PROTOCOL.md); `transmitted_at` its field 7
    (UTC, second precision); `processing_code` 000000 (debit) or 200000 (credit).
    """

    mti: str
    stan: str
    rrn: str
    transmitted_at: datetime
    account_number: str
    amount: int
    currency: str
    processing_code: str
    terminal_id: str

    @property
    def kind(self) -> str:
        """ "debit" or "credit"."""
        return _KINDS[self.processing_code]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (strings and an int): for a JSONField or a Celery argument."""
        return {
            "mti": self.mti,
            "stan": self.stan,
            "rrn": self.rrn,
            "transmitted_at": self.transmitted_at.astimezone(UTC).isoformat(),
            "account_number": self.account_number,
            "amount": self.amount,
            "currency": self.currency,
            "processing_code": self.processing_code,
            "terminal_id": self.terminal_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OriginalRequest:
        """The inverse of to_dict (ValueError/KeyError on a malformed dict)."""
        transmitted_at = datetime.fromisoformat(str(data["transmitted_at"]))
        if transmitted_at.tzinfo is None:
            raise ValueError("transmitted_at must carry its time zone")
        processing_code = str(data["processing_code"])
        if processing_code not in _KINDS:
            raise ValueError(f"processing code {processing_code!r} is not a debit or credit")
        amount = data["amount"]
        if not isinstance(amount, int) or amount <= 0:
            raise ValueError("amount must be a positive integer (minor units)")
        return cls(
            mti=str(data["mti"]),
            stan=str(data["stan"]),
            rrn=str(data["rrn"]),
            transmitted_at=transmitted_at.astimezone(UTC),
            account_number=str(data["account_number"]),
            amount=amount,
            currency=str(data["currency"]),
            processing_code=processing_code,
            terminal_id=str(data["terminal_id"]),
        )


@dataclass(frozen=True)
class LegacyResult:
    """The core's answer to a financial request (0210) or a reversal (0410).

    `approved`: response code 00. For a reversal, `acknowledged` is what to retry until: the
    core holds the reversal (00: the original is undone, or had no effect; 25: the core never
    received the original and will decline it if it arrives later) — nothing of the original
    remains, now or later. `balance` is the account after the request, when the core says.
    """

    mti: str
    approved: bool
    response_code: str
    stan: str
    rrn: str
    approval_code: str = ""
    balance: LegacyBalance | None = None

    @property
    def description(self) -> str:
        return protocol.response_description(self.response_code)

    @property
    def acknowledged(self) -> bool:
        """A reversal the core holds (00 or 25); for a 0210, the same as `approved`."""
        if self.mti == protocol.REVERSAL_RESPONSE:
            return self.response_code in (protocol.APPROVED, protocol.ORIGINAL_NOT_FOUND)
        return self.approved


def processing_code_of(kind: str) -> str:
    try:
        return _PROCESSING_CODES[kind]
    except KeyError:
        raise ValueError(f"kind must be {DEBIT!r} or {CREDIT!r}, not {kind!r}") from None

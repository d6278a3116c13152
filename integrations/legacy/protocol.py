"""ISO 8583:1987, ASCII, framed by a 2-byte big-endian length over TCP: the legacy core's wire.

The field specification (which fields, their formats, which messages carry them, the response
codes) is PROTOCOL.md next to this file; this module is its code. A message is a plain dict
in pyiso8583's convention: "t" is the MTI, other keys are field numbers as strings ("11"), all
values str. The bitmaps are computed on encode and dropped on decode.

    encode(message) -> bytes        one frame: 2-byte length + ISO 8583 body
    decode(frame) -> dict           the inverse; ProtocolError on anything else
    FrameBuffer / read_frame_async  reading frames from a socket or an asyncio stream
"""

from __future__ import annotations

import asyncio
import copy
import re
import socket
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import iso8583
import iso8583.specs

LENGTH_PREFIX = struct.Struct(">H")
MAX_FRAME_BODY = 65535
# MTI (4) + primary bitmap (16): no real message is shorter.
MIN_FRAME_BODY = 20

# --- message types -------------------------------------------------------------------------
ECHO_REQUEST, ECHO_RESPONSE = "0800", "0810"
BALANCE_REQUEST, BALANCE_RESPONSE = "0100", "0110"
FINANCIAL_REQUEST, FINANCIAL_RESPONSE = "0200", "0210"
REVERSAL_REQUEST, REVERSAL_RESPONSE = "0400", "0410"
REQUEST_MTIS = (ECHO_REQUEST, BALANCE_REQUEST, FINANCIAL_REQUEST, REVERSAL_REQUEST)
RESPONSE_MTI = {req: req[:2] + str(int(req[2]) + 1) + req[3] for req in REQUEST_MTIS}
KNOWN_MTIS = frozenset(REQUEST_MTIS) | frozenset(RESPONSE_MTI.values())

NETWORK_ECHO = "301"  # field 70 of an echo test

# --- processing codes (field 3: transaction type 2 + from account 2 + to account 2) -------
PROCESSING_BALANCE = "310000"
PROCESSING_DEBIT = "000000"
PROCESSING_CREDIT = "200000"

# --- response codes (field 39) -------------------------------------------------------------
APPROVED = "00"
INVALID_TRANSACTION = "12"
INVALID_ACCOUNT = "14"
ORIGINAL_NOT_FOUND = "25"
FORMAT_ERROR = "30"
INSUFFICIENT_FUNDS = "51"
RESTRICTED_ACCOUNT = "62"
DUPLICATE_TRANSMISSION = "94"
SYSTEM_MALFUNCTION = "96"
RESPONSE_CODES = {
    APPROVED: "approved",
    INVALID_TRANSACTION: "invalid transaction",
    INVALID_ACCOUNT: "invalid account",
    ORIGINAL_NOT_FOUND: "original not found",
    FORMAT_ERROR: "format error",
    INSUFFICIENT_FUNDS: "insufficient funds",
    RESTRICTED_ACCOUNT: "restricted account",
    DUPLICATE_TRANSMISSION: "duplicate transmission",
    SYSTEM_MALFUNCTION: "system malfunction",
}

# --- currencies (field 49: ISO 4217 numeric) -----------------------------------------------
# The currencies bankcore keeps accounts in (bankcore.money.CURRENCY_EXPONENTS).
CURRENCY_NUMERIC = {"EUR": "978", "USD": "840", "GBP": "826", "CHF": "756", "JPY": "392", "BHD": "048"}
CURRENCY_ALPHA = {numeric: alpha for alpha, numeric in CURRENCY_NUMERIC.items()}

# Amount types in field 54 (ISO 8583:1987 annex): ledger and available balance.
AMOUNT_LEDGER, AMOUNT_AVAILABLE = "01", "02"
ACCOUNT_TYPE_DEFAULT = "00"


class ProtocolError(ValueError):
    """Bytes that are not a frame of this protocol, or a message that breaks its field rules."""


@dataclass(frozen=True)
class Field:
    """One data element as this protocol uses it: format `kind` ("n" digits, "an" letters and
    digits, "ans" printable), `length` (exact when fixed, else the maximum), `variable` (LL/LLL
    prefixed)."""

    number: str
    kind: str
    length: int
    variable: bool
    name: str


FIELDS: dict[str, Field] = {
    f.number: f
    for f in (
        Field("3", "n", 6, False, "processing code"),
        Field("4", "n", 12, False, "amount, transaction (minor units)"),
        Field("7", "n", 10, False, "transmission date and time, UTC, MMDDhhmmss"),
        Field("11", "n", 6, False, "system trace audit number (STAN)"),
        Field("12", "n", 6, False, "time, local transaction, hhmmss"),
        Field("13", "n", 4, False, "date, local transaction, MMDD"),
        Field("37", "an", 12, False, "retrieval reference number (RRN)"),
        Field("38", "an", 6, False, "approval code"),
        Field("39", "an", 2, False, "response code"),
        Field("41", "ans", 8, False, "terminal id"),
        Field("49", "n", 3, False, "currency code, ISO 4217 numeric"),
        Field("54", "ans", 120, True, "additional amounts (balances)"),
        Field("70", "n", 3, False, "network management information code"),
        Field("90", "n", 42, False, "original data elements"),
        Field("102", "ans", 28, True, "account identification 1 (legacy account number)"),
    )
}

# Which fields each message must carry (PROTOCOL.md has the optional ones too).
REQUIRED: dict[str, tuple[str, ...]] = {
    ECHO_REQUEST: ("7", "11", "70"),
    ECHO_RESPONSE: ("7", "11", "39", "70"),
    BALANCE_REQUEST: ("3", "7", "11", "102"),
    BALANCE_RESPONSE: ("3", "7", "11", "39", "102"),
    FINANCIAL_REQUEST: ("3", "4", "7", "11", "37", "49", "102"),
    FINANCIAL_RESPONSE: ("3", "4", "7", "11", "37", "39", "49", "102"),
    REVERSAL_REQUEST: ("3", "4", "7", "11", "37", "49", "90", "102"),
    REVERSAL_RESPONSE: ("3", "4", "7", "11", "37", "39", "49", "90", "102"),
}

SPEC: dict[str, Any] = copy.deepcopy(iso8583.specs.default_ascii)
SPEC["54"]["max_len"] = 120  # ISO 8583:1987: ans..120 (pyiso8583's default allows 240)

_KIND_PATTERN = {
    "n": re.compile(r"^[0-9]*$"),
    "an": re.compile(r"^[A-Za-z0-9 ]*$"),
    "ans": re.compile(r"^[\x20-\x7e]*$"),
}


def _check_fields(message: dict[str, str], *, required: bool) -> None:
    mti = message.get("t")
    if mti not in KNOWN_MTIS:
        raise ProtocolError(f"unknown message type {mti!r}")
    for number, value in message.items():
        if number in ("t", "p", "1"):
            continue
        if not isinstance(value, str):
            raise ProtocolError(f"field {number}: value must be str, not {type(value).__name__}")
        field = FIELDS.get(number)
        if field is None:
            continue  # a field this protocol does not use: carried, not interpreted
        if (field.variable and len(value) > field.length) or (not field.variable and len(value) != field.length):
            raise ProtocolError(f"field {number} ({field.name}): length {len(value)}, expected {field.length}")
        if not _KIND_PATTERN[field.kind].match(value):
            raise ProtocolError(f"field {number} ({field.name}): not {field.kind}: {value!r}")
    if required:
        missing = [n for n in REQUIRED[mti] if n not in message]
        if missing:
            raise ProtocolError(f"{mti} lacks field(s) {', '.join(missing)}")


def encode(message: dict[str, str], *, complete: bool = True) -> bytes:
    """One frame (2-byte big-endian length + ASCII ISO 8583 body). ProtocolError when the
    message breaks a field rule or (unless `complete` is False: a format-error answer to an
    incomplete request) lacks a field its MTI requires."""
    _check_fields(message, required=complete)
    try:
        body, _ = iso8583.encode(dict(message), SPEC)
    except iso8583.EncodeError as exc:
        raise ProtocolError(f"cannot encode: {exc}") from exc
    if len(body) > MAX_FRAME_BODY:
        raise ProtocolError(f"message of {len(body)} bytes does not fit a frame")
    return LENGTH_PREFIX.pack(len(body)) + bytes(body)


def decode_body(body: bytes) -> dict[str, str]:
    """The message in a frame's body (without the length prefix). Checks field formats but not
    which fields are present: a peer's incomplete request deserves a format-error answer (30)
    carrying its STAN, so required fields are checked by `missing_fields`."""
    if len(body) < MIN_FRAME_BODY:
        raise ProtocolError(f"frame body of {len(body)} bytes is too short for ISO 8583")
    try:
        message, _ = iso8583.decode(bytes(body), SPEC)
    except (iso8583.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not ISO 8583: {exc}") from exc
    message = {k: v for k, v in message.items() if k not in ("p", "1")}
    _check_fields(message, required=False)
    return message


def decode(frame: bytes) -> dict[str, str]:
    """The message in one whole frame (length prefix included) — the inverse of `encode`,
    including its field checks. ProtocolError on anything else."""
    if len(frame) < LENGTH_PREFIX.size:
        raise ProtocolError("frame shorter than its length prefix")
    (length,) = LENGTH_PREFIX.unpack_from(frame)
    if length != len(frame) - LENGTH_PREFIX.size:
        raise ProtocolError(f"length prefix says {length} bytes, frame has {len(frame) - LENGTH_PREFIX.size}")
    message = decode_body(frame[LENGTH_PREFIX.size :])
    missing = missing_fields(message)
    if missing:
        raise ProtocolError(f"{message['t']} lacks field(s) {', '.join(missing)}")
    return message


def missing_fields(message: dict[str, str]) -> list[str]:
    return [n for n in REQUIRED.get(message.get("t", ""), ()) if n not in message]


# --- reading frames ------------------------------------------------------------------------


class FrameBuffer:
    """Frames from a blocking socket, keeping partial reads between calls: a read that times
    out mid-frame leaves its bytes here, so the connection stays usable and in step."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_body(self) -> bytes | None:
        """A complete frame's body if one is buffered (removed from the buffer), else None."""
        if len(self._buffer) < LENGTH_PREFIX.size:
            return None
        (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
        if length < MIN_FRAME_BODY:
            raise ProtocolError(f"frame length {length} is too short for ISO 8583")
        end = LENGTH_PREFIX.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[LENGTH_PREFIX.size : end])
        del self._buffer[:end]
        return body

    def read_body(self, sock: socket.socket, deadline: float) -> bytes:
        """The next frame's body, waiting until `deadline` (time.monotonic()). Raises
        TimeoutError past the deadline (bytes read so far stay buffered), ConnectionError when
        the peer closes, ProtocolError on an impossible length."""
        while True:
            body = self.next_body()
            if body is not None:
                return body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame before the deadline")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise
            except OSError as exc:
                raise ConnectionError(f"connection broken: {exc}") from exc
            if not data:
                raise ConnectionError("connection closed by the peer")
            self.feed(data)


async def read_frame_async(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's body from an asyncio stream; None at a clean end of stream (between
    frames). Raises ProtocolError on an impossible length, asyncio.IncompleteReadError when the
    stream ends mid-frame."""
    try:
        prefix = await reader.readexactly(LENGTH_PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    (length,) = LENGTH_PREFIX.unpack(prefix)
    if length < MIN_FRAME_BODY:
        raise ProtocolError(f"frame length {length} is too short for ISO 8583")
    return await reader.readexactly(length)


# --- field values --------------------------------------------------------------------------


def transmission_datetime(moment: datetime) -> str:
    """Field 7: MMDDhhmmss in UTC."""
    return moment.astimezone(UTC).strftime("%m%d%H%M%S")


def local_time_fields(moment: datetime) -> dict[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) of `moment` (the terminal's local time: we use UTC)."""
    moment = moment.astimezone(UTC)
    return {"12": moment.strftime("%H%M%S"), "13": moment.strftime("%m%d")}


def amount_field(amount: int) -> str:
    """Field 4: 12 digits, minor units, zero-padded."""
    if not 0 <= amount < 10**12:
        raise ProtocolError(f"amount {amount} does not fit field 4")
    return f"{amount:012d}"


def currency_numeric(currency: str) -> str:
    try:
        return CURRENCY_NUMERIC[currency]
    except KeyError:
        raise ProtocolError(f"currency {currency!r} has no ISO 4217 numeric code here") from None


def currency_alpha(numeric: str) -> str:
    try:
        return CURRENCY_ALPHA[numeric]
    except KeyError:
        raise ProtocolError(f"unknown ISO 4217 numeric currency {numeric!r}") from None


def additional_amounts(*, ledger: int, available: int, currency: str) -> str:
    """Field 54: two 20-character amounts, ledger then available: account type (2), amount type
    (2: 01 ledger, 02 available), currency (3, numeric), sign (C credit/positive, D debit/
    negative), amount (12, minor units)."""
    code = currency_numeric(currency)
    parts = []
    for amount_type, value in ((AMOUNT_LEDGER, ledger), (AMOUNT_AVAILABLE, available)):
        sign = "C" if value >= 0 else "D"
        parts.append(f"{ACCOUNT_TYPE_DEFAULT}{amount_type}{code}{sign}{abs(value):012d}")
    return "".join(parts)


def parse_additional_amounts(text: str) -> dict[str, tuple[int, str]]:
    """Field 54 -> {amount type: (signed minor units, currency alpha)}; ProtocolError if malformed."""
    if len(text) % 20:
        raise ProtocolError(f"field 54 of {len(text)} characters is not a list of 20-character amounts")
    amounts: dict[str, tuple[int, str]] = {}
    for start in range(0, len(text), 20):
        part = text[start : start + 20]
        amount_type, code, sign, digits = part[2:4], part[4:7], part[7], part[8:]
        if sign not in "CD" or not digits.isdigit():
            raise ProtocolError(f"field 54 amount {part!r} is malformed")
        value = int(digits)
        amounts[amount_type] = (value if sign == "C" else -value, currency_alpha(code))
    return amounts


def original_data_elements(*, mti: str, stan: str, transmitted: str) -> str:
    """Field 90: original MTI (4), STAN (6), transmission date-time (10), acquiring and
    forwarding institution ids (11 + 11, zeros: there is one acquirer)."""
    return f"{mti}{stan}{transmitted}" + "0" * 22


def parse_original_data_elements(text: str) -> tuple[str, str, str]:
    """Field 90 -> (original MTI, STAN, transmission date-time)."""
    if len(text) != 42 or not text.isdigit():
        raise ProtocolError(f"field 90 {text!r} is malformed")
    return text[:4], text[4:10], text[10:20]


def response_description(code: str) -> str:
    return RESPONSE_CODES.get(code, "unknown response code")

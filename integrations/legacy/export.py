"""The legacy core's fixed-width export of customers and accounts (docs/legacy.md).

One file: a header record, then each customer record followed by that customer's account
records (customers in ascending customer number, a customer's accounts in ascending account
number), then a trailer record with counts and control totals. Every record is
RECORD_LENGTH characters, UTF-8, one per line; `LAYOUTS` is the one definition of where each
field sits.

`ExportReader` streams a file line by line (memory stays flat whatever the file's size) and
yields plain values: ExportHeader, LegacyCustomer, LegacyAccount, ExportTrailer, or a
RejectedLine (line number, raw text, reason) for a line that breaks the layout or the rules
below. It never raises on bad data, and every check needs only the line itself and the
customer record before it, so two readings of one file reject exactly the same lines.

`write_sample_export` writes a believable file with planted bad lines for tests, demos and
the benchmark, and returns what it wrote (its own truth to check an import against).

Plain values only: no ledger, no models (integrations knows nothing of transactions).
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from bankcore.money import MAX_AMOUNT_MINOR, SUPPORTED_CURRENCIES

RECORD_LENGTH = 200
FORMAT_VERSION = "LGX1"
HASH_MODULUS = 10**18  # hash totals keep their last 18 digits, as the legacy core prints them


@dataclass(frozen=True)
class Field:
    """One field of a record: 1-based start column and width, as the legacy documentation counts.

    Types: X text (left-aligned, space-padded), 9 digits (zero-padded), S sign (+ or -),
    D date YYYYMMDD, T timestamp YYYYMMDDHHMMSS.
    """

    name: str
    start: int
    width: int
    type: str

    @property
    def end(self) -> int:
        return self.start + self.width - 1


def _layout(record_type: str, *fields: tuple[str, int, str]) -> tuple[Field, ...]:
    """Fields laid end to end from column 2 (column 1 is the record type); the rest is filler."""
    laid = [Field("record_type", 1, 1, "X")]
    column = 2
    for name, width, kind in fields:
        laid.append(Field(name, column, width, kind))
        column += width
    if column - 1 > RECORD_LENGTH:
        raise AssertionError(f"record {record_type} is longer than {RECORD_LENGTH}")
    laid.append(Field("filler", column, RECORD_LENGTH - column + 1, "X"))
    return tuple(laid)


LAYOUTS: dict[str, tuple[Field, ...]] = {
    "H": _layout(
        "H",
        ("format_version", 4, "X"),
        ("source_system", 8, "X"),
        ("bank_code", 8, "X"),
        ("exported_at", 14, "T"),
        ("file_sequence", 6, "9"),
    ),
    "C": _layout(
        "C",
        ("customer_number", 10, "9"),
        ("full_name", 60, "X"),
        ("email", 80, "X"),
        ("phone", 16, "X"),
    ),
    "A": _layout(
        "A",
        ("account_number", 12, "9"),
        ("customer_number", 10, "9"),
        ("iban", 34, "X"),
        ("kind", 1, "X"),
        ("currency", 3, "X"),
        ("balance_sign", 1, "S"),
        ("balance", 15, "9"),
        ("status", 1, "X"),
        ("opened_on", 8, "D"),
    ),
    "T": _layout(
        "T",
        ("record_count", 9, "9"),
        ("customer_count", 9, "9"),
        ("account_count", 9, "9"),
        ("control_total_sign", 1, "S"),
        ("control_total", 18, "9"),
        ("account_hash_total", 18, "9"),
    ),
}
_SLICES = {kind: tuple((f.name, f.start - 1, f.end, f.type) for f in fields) for kind, fields in LAYOUTS.items()}
ACCOUNT_KINDS = {"C": "current", "S": "savings"}
ACCOUNT_STATUSES = {"A": "active", "F": "frozen"}


# --- what a reading yields ------------------------------------------------------------------


@dataclass(frozen=True)
class ExportHeader:
    line_number: int
    format_version: str
    source_system: str
    bank_code: str
    exported_at: datetime
    file_sequence: int


@dataclass(frozen=True)
class LegacyCustomer:
    line_number: int
    number: str  # 10 digits, the legacy core's customer number
    full_name: str
    email: str  # lower-cased
    phone: str  # E.164, or "" when the legacy core has none
    record: str  # the record as read: its fingerprint tells a changed re-export from the same one

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.record.encode()).hexdigest()


@dataclass(frozen=True)
class LegacyAccount:
    line_number: int
    number: str  # 12 digits: the customer number and a 2-digit suffix
    customer_number: str
    iban: str  # compact, valid, of this bank
    kind: str  # "current" | "savings"
    currency: str
    balance: int  # minor units, >= 0
    status: str  # "active" | "frozen"
    opened_on: date
    record: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.record.encode()).hexdigest()


@dataclass(frozen=True)
class ExportTrailer:
    """What the legacy core says it exported. record_count counts every line between header and
    trailer (malformed ones too: nothing may go missing in transit); the other counts and the
    control totals cover the valid customer and account records only."""

    line_number: int
    record_count: int
    customer_count: int
    account_count: int
    control_total: int  # signed sum of the accounts' balances in minor units, all currencies
    account_hash_total: int  # sum of the account numbers, modulo 10**18


@dataclass(frozen=True)
class RejectedLine:
    line_number: int
    raw: str
    reason: str


ExportItem = ExportHeader | LegacyCustomer | LegacyAccount | ExportTrailer | RejectedLine


class _Bad(Exception):
    """A record breaks the layout or a rule; the reason goes to the reject file."""


_email_validator = EmailValidator()


def _digits(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise _Bad(f"{name}: not digits ({value!r})")
    return int(value)


def _sign(value: str, name: str) -> int:
    if value not in ("+", "-"):
        raise _Bad(f"{name}: sign must be + or - ({value!r})")
    return -1 if value == "-" else 1


def _date(value: str, name: str) -> date:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise _Bad(f"{name}: not a date YYYYMMDD ({value!r})") from None


def _text(value: str) -> str:
    return value.rstrip(" ")


def e164(value: str) -> str:
    """A valid phone number in E.164 (+4915112345678), the rule registration applies; or _Bad."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise _Bad(f"phone: not in international format ({value!r})") from None
    if not phonenumbers.is_valid_number(number):
        raise _Bad(f"phone: not a valid number ({value!r})")
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value:
        raise _Bad(f"phone: not E.164 ({value!r}, expected {formatted})")
    return formatted


class ExportReader:
    """Streams one export: iterate it once per pass. `bytes_read` / `total_bytes` follow the
    reading (for a progress bar). Reads a path or an open binary file; holds one line at a time.

    Rules beyond the layout (each needs only the line and the customer record before it):
    the header is line 1 and the trailer the last line; customer numbers ascend (a repeat is a
    duplicate); an account follows its customer's record, its number starts with that customer
    number and ascends within the customer; its IBAN is valid and of this bank (so it can stay
    the customer's account number); balances are not negative (overdrafts are not migrated).
    A rejected customer record rejects nothing else; accounts after it have no customer to
    follow and are rejected as such.
    """

    def __init__(
        self, source: str | Path | BinaryIO, *, country_code: str | None = None, bank_code: str | None = None
    ) -> None:
        self.source = source
        self.country_code = country_code or settings.BANK_COUNTRY_CODE
        self.bank_code = bank_code or settings.BANK_CODE
        self.bytes_read = 0
        self.total_bytes: int | None = Path(source).stat().st_size if isinstance(source, str | Path) else None

    def __iter__(self) -> Iterator[ExportItem]:
        self.bytes_read = 0
        if isinstance(self.source, str | Path):
            with open(self.source, "rb") as stream:
                yield from self._read(stream)
        else:
            yield from self._read(self.source)

    def _read(self, stream: BinaryIO) -> Iterator[ExportItem]:
        header_seen = trailer_seen = False
        self._customer: str | None = None  # the last accepted customer's number
        self._last_customer = -1
        self._last_account = -1
        line_number = 0
        for raw_bytes in stream:
            line_number += 1
            self.bytes_read += len(raw_bytes)
            try:
                text = raw_bytes.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield RejectedLine(line_number, raw_bytes.decode("utf-8", "replace").rstrip("\r\n"), "not UTF-8")
                continue
            try:
                if trailer_seen:
                    raise _Bad("record after the trailer")
                if len(text) != RECORD_LENGTH:
                    raise _Bad(f"record length {len(text)}, expected {RECORD_LENGTH}")
                kind = text[0]
                if kind not in _SLICES:
                    raise _Bad(f"unknown record type {kind!r}")
                values = {name: text[start:end] for name, start, end, _ in _SLICES[kind]}
                if kind == "H":
                    if line_number != 1 or header_seen:
                        raise _Bad("header record not on the first line")
                    item: ExportItem = self._header(line_number, values)
                    header_seen = True
                elif line_number == 1:
                    raise _Bad("the first record must be the header")
                elif kind == "C":
                    item = self._customer_record(line_number, values, text)
                elif kind == "A":
                    item = self._account_record(line_number, values, text)
                else:
                    item = self._trailer(line_number, values)
                    trailer_seen = True
            except _Bad as bad:
                yield RejectedLine(line_number, text, str(bad))
                continue
            yield item

    def _header(self, line_number: int, v: dict[str, str]) -> ExportHeader:
        if v["format_version"] != FORMAT_VERSION:
            raise _Bad(f"format version {v['format_version']!r}, expected {FORMAT_VERSION}")
        try:
            exported_at = datetime.strptime(v["exported_at"], "%Y%m%d%H%M%S")
        except ValueError:
            raise _Bad(f"exported_at: not a timestamp ({v['exported_at']!r})") from None
        return ExportHeader(
            line_number=line_number,
            format_version=v["format_version"],
            source_system=_text(v["source_system"]),
            bank_code=_text(v["bank_code"]),
            exported_at=exported_at,
            file_sequence=_digits(v["file_sequence"], "file_sequence"),
        )

    def _customer_record(self, line_number: int, v: dict[str, str], text: str) -> LegacyCustomer:
        number = _digits(v["customer_number"], "customer_number")
        full_name = _text(v["full_name"]).strip()
        if not full_name:
            raise _Bad("full_name: empty")
        email = _text(v["email"]).strip().lower()
        try:
            _email_validator(email)
        except ValidationError:
            raise _Bad(f"email: not a valid address ({email!r})") from None
        phone = _text(v["phone"]).strip()
        if phone:
            phone = e164(phone)
        if number <= self._last_customer:
            raise _Bad(f"customer number {v['customer_number']} not ascending (a duplicate or out of order)")
        self._last_customer = number
        self._customer = v["customer_number"]
        self._last_account = -1
        return LegacyCustomer(line_number, v["customer_number"], full_name, email, phone, text)

    def _account_record(self, line_number: int, v: dict[str, str], text: str) -> LegacyAccount:
        number, customer = v["account_number"], v["customer_number"]
        _digits(number, "account_number")
        _digits(customer, "customer_number")
        if number[:10] != customer:
            raise _Bad(f"account number {number} does not start with its customer number {customer}")
        if customer != self._customer:
            raise _Bad(f"account for unknown customer {customer} (not the customer record before it)")
        suffix = int(number[10:])
        if suffix <= self._last_account:
            raise _Bad(f"account number {number} not ascending within its customer (a duplicate or out of order)")
        try:
            iban = IBAN(_text(v["iban"]))
        except (SchwiftyException, ValueError) as exc:
            raise _Bad(f"iban: invalid ({_text(v['iban'])!r}: {exc})") from None
        if iban.country_code != self.country_code or iban.bank_code != self.bank_code:
            raise _Bad(f"iban: {iban.compact} is not an account of this bank ({self.country_code} {self.bank_code})")
        if v["kind"] not in ACCOUNT_KINDS:
            raise _Bad(f"kind: {v['kind']!r} is neither C (current) nor S (savings)")
        if v["currency"] not in SUPPORTED_CURRENCIES:
            raise _Bad(f"currency: {v['currency']!r} is not one the bank keeps accounts in")
        balance = _sign(v["balance_sign"], "balance_sign") * _digits(v["balance"], "balance")
        if balance < 0:
            raise _Bad("balance: negative (overdrafts are not migrated)")
        if balance > MAX_AMOUNT_MINOR:
            raise _Bad("balance: above the largest amount the ledger takes")
        if v["status"] not in ACCOUNT_STATUSES:
            raise _Bad(f"status: {v['status']!r} is neither A (active) nor F (frozen)")
        opened_on = _date(v["opened_on"], "opened_on")
        self._last_account = suffix
        return LegacyAccount(
            line_number=line_number,
            number=number,
            customer_number=customer,
            iban=iban.compact,
            kind=ACCOUNT_KINDS[v["kind"]],
            currency=v["currency"],
            balance=balance,
            status=ACCOUNT_STATUSES[v["status"]],
            opened_on=opened_on,
            record=text,
        )

    def _trailer(self, line_number: int, v: dict[str, str]) -> ExportTrailer:
        return ExportTrailer(
            line_number=line_number,
            record_count=_digits(v["record_count"], "record_count"),
            customer_count=_digits(v["customer_count"], "customer_count"),
            account_count=_digits(v["account_count"], "account_count"),
            control_total=_sign(v["control_total_sign"], "control_total_sign")
            * _digits(v["control_total"], "control_total"),
            account_hash_total=_digits(v["account_hash_total"], "account_hash_total"),
        )


# --- writing ----------------------------------------------------------------------------------


def format_record(record_type: str, values: Mapping[str, object]) -> str:
    """One record of `record_type` from its field values (missing fields blank), exactly
    RECORD_LENGTH characters. Digits are zero-padded, text left-aligned; too long raises."""
    parts = []
    for f in LAYOUTS[record_type]:
        if f.name == "record_type":
            parts.append(record_type)
            continue
        value = values.get(f.name, "")
        text = str(value).zfill(f.width) if f.type == "9" and value != "" else str(value).ljust(f.width)
        if len(text) != f.width:
            raise ValueError(f"{record_type}.{f.name}: {value!r} does not fit {f.width} characters")
        parts.append(text)
    return "".join(parts)


@dataclass
class SampleExport:
    """What `write_sample_export` wrote: the truth an import is checked against."""

    path: Path
    lines: int = 0  # every line, header and trailer included
    customers: int = 0  # valid customer records
    accounts: int = 0  # valid account records
    funded_accounts: int = 0  # valid accounts with a balance above zero
    frozen_accounts: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # currency -> sum of valid balances
    control_total: int = 0
    account_hash_total: int = 0
    bad_lines: dict[int, str] = field(default_factory=dict)  # line number -> what was planted

    @property
    def records(self) -> int:
        """Data records between header and trailer (the trailer's record_count)."""
        return self.lines - 2


BAD_LINE_KINDS = (
    "wrong_length",
    "bad_record_type",
    "bad_digits",
    "unknown_customer",
    "bad_iban",
    "duplicate_account",
    "negative_balance",
    "bad_currency",
    "foreign_iban",
    "duplicate_customer",
    "bad_email",
    "bad_phone",
)
_FIRST_NAMES = (
    "Anna", "Jonas", "Lea", "Lukas", "Marie", "Felix", "Sofia", "Paul", "Emilia", "Ben", "Zoë", "Jürgen",
    "Chloé", "Matteo", "Aylin", "Mehmet", "Olga", "Piotr", "Ines", "João", "Søren", "Élodie", "Nikos", "Fatima",
)  # fmt: skip
_LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann", "Schäfer",
    "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Y\u0131lmaz", "Kowalski", "García", "Rossi",
    "Dubois", "Papadopoulos", "Nielsen", "de Vries", "O'Brien", "Nowak", "Kaya", "Silva",
)  # fmt: skip
_MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.de")
_MOBILE_PREFIXES = ("+49151", "+49160", "+49170", "+49171", "+49176")  # + 8 digits: valid German mobiles
_CURRENCIES = (("EUR", 90), ("USD", 5), ("GBP", 3), ("CHF", 2))
_FOREIGN_BANK_CODES = ("50010517", "10010010")


def write_sample_export(
    path: str | Path,
    *,
    customers: int,
    bad_lines: int = 0,
    seed: int = 0,
    country_code: str | None = None,
    bank_code: str | None = None,
) -> SampleExport:
    """Write a believable export of `customers` customers (1-3 accounts each, EUR mostly, IBANs
    of this bank) with `bad_lines` malformed records planted between customer blocks, one kind
    after another from BAD_LINE_KINDS. The trailer's record_count counts the planted lines; its
    customer and account counts and control totals cover the valid records only, so a
    file with planted lines still passes the totals check while every planted line is rejected.
    Streams: memory stays flat however many customers. Deterministic for a seed.
    """
    country_code = country_code or settings.BANK_COUNTRY_CODE
    bank_code = bank_code or settings.BANK_CODE
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    bban_length = len(IBAN.generate(country_code, bank_code=bank_code, account_code="0").bban)
    account_digits = bban_length - len(bank_code)
    foreign_bank = next(code for code in _FOREIGN_BANK_CODES if code != bank_code)
    truth = SampleExport(path=Path(path))
    # Where the planted lines go: after the block of these customers (0-based), several per slot allowed.
    plants: dict[int, int] = {}
    for slot in rng.choices(range(max(customers, 1)), k=bad_lines):
        plants[slot] = plants.get(slot, 0) + 1
    planted = 0
    currencies = [c for c, _ in _CURRENCIES]
    weights = [w for _, w in _CURRENCIES]
    today = date(2026, 11, 30)

    def iban_for(number: str, bank: str = bank_code) -> str:
        account_code = number[-account_digits:] if account_digits <= len(number) else number.zfill(account_digits)
        return IBAN.generate(country_code, bank_code=bank, account_code=account_code).compact

    def account_record(number: str, customer: str, *, iban: str | None = None, **overrides: object) -> str:
        values: dict[str, object] = {
            "account_number": number,
            "customer_number": customer,
            "iban": iban or iban_for(number),
            "kind": "C",
            "currency": "EUR",
            "balance_sign": "+",
            "balance": 1000,
            "status": "A",
            "opened_on": "20190401",
        }
        values.update(overrides)
        return format_record("A", values)

    with open(path, "w", encoding="utf-8", newline="\n") as out:

        def emit(record: str) -> None:
            out.write(record)
            out.write("\n")
            truth.lines += 1

        emit(
            format_record(
                "H",
                {
                    "format_version": FORMAT_VERSION,
                    "source_system": "CORE390",
                    "bank_code": bank_code,
                    "exported_at": "20261130020000",
                    "file_sequence": seed % 1_000_000,
                },
            )
        )
        customer_number = 1_000_000
        for index in range(customers):
            customer_number += rng.randint(1, 3)
            customer = str(customer_number).zfill(10)
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            local = _ascii(f"{first}.{last}".lower())
            email = f"{local}.{customer_number}@{rng.choice(_MAIL_DOMAINS)}"
            phone = f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}" if rng.random() < 0.9 else ""
            values = {"customer_number": customer, "full_name": f"{first} {last}", "email": email, "phone": phone}
            emit(format_record("C", values))
            truth.customers += 1
            n_accounts = rng.choices((1, 2, 3), weights=(55, 35, 10))[0]
            last_record = ""
            for suffix in range(1, n_accounts + 1):
                number = f"{customer}{suffix:02d}"
                currency = "EUR" if suffix == 1 else rng.choices(currencies, weights=weights)[0]
                balance = 0 if rng.random() < 0.05 else int(rng.lognormvariate(11, 1.6))
                balance = min(balance, 10**12)
                status = "F" if rng.random() < 0.02 else "A"
                opened = today - timedelta(days=rng.randrange(30, 9000))
                last_record = account_record(
                    number,
                    customer,
                    kind="C" if suffix == 1 or rng.random() < 0.5 else "S",
                    currency=currency,
                    balance=balance,
                    status=status,
                    opened_on=opened.strftime("%Y%m%d"),
                )
                emit(last_record)
                truth.accounts += 1
                truth.funded_accounts += balance > 0
                truth.frozen_accounts += status == "F"
                truth.totals[currency] = truth.totals.get(currency, 0) + balance
                truth.control_total += balance
                truth.account_hash_total = (truth.account_hash_total + int(number)) % HASH_MODULUS
            for _ in range(plants.get(index, 0)):
                kind = BAD_LINE_KINDS[planted % len(BAD_LINE_KINDS)]
                planted += 1
                emit(_bad_line(kind, customer, last_record, planted, account_record, iban_for, foreign_bank))
                truth.bad_lines[truth.lines] = kind
        emit(
            format_record(
                "T",
                {
                    "record_count": truth.lines - 1,
                    "customer_count": truth.customers,
                    "account_count": truth.accounts,
                    "control_total_sign": "+" if truth.control_total >= 0 else "-",
                    "control_total": abs(truth.control_total),
                    "account_hash_total": truth.account_hash_total,
                },
            )
        )
    return truth


_TRANSLITERATION = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "\u0131": "i", " ": "", "'": ""}
)


def _ascii(text: str) -> str:
    """An e-mail local part from a name: 'jürgen.o'brien' -> 'juergen.obrien'."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    return decomposed.encode("ascii", "ignore").decode()


def _bad_line(
    kind: str,
    customer: str,
    last_account: str,
    serial: int,
    account_record: Callable[..., str],
    iban_for: Callable[..., str],
    foreign_bank: str,
) -> str:
    """One planted malformed record, placed after `customer`'s block (whose last account record
    is `last_account`); each kind breaks exactly one rule of the reader."""
    customer_values = {
        "customer_number": customer,
        "full_name": "Planted Record",
        "email": f"planted{serial}@example.com",
    }
    if kind == "wrong_length":
        return last_account[:150]
    if kind == "bad_record_type":
        return "X" + last_account[1:]
    if kind == "bad_digits":
        return format_record("C", {**customer_values, "customer_number": customer[:5] + "A" + customer[6:]})
    if kind == "unknown_customer":
        stranger = str(9_900_000_000 + serial)
        return account_record(stranger + "01", stranger)
    if kind == "bad_iban":
        good = iban_for(customer + "99")
        broken = good[:2] + f"{(int(good[2:4]) + 1) % 100:02d}" + good[4:]
        return account_record(customer + "99", customer, iban=broken)
    if kind == "duplicate_account":
        return last_account
    if kind == "negative_balance":
        return account_record(customer + "98", customer, balance_sign="-")
    if kind == "bad_currency":
        return account_record(customer + "97", customer, currency="XYZ")
    if kind == "foreign_iban":
        return account_record(customer + "96", customer, iban=iban_for(customer + "96", foreign_bank))
    if kind == "duplicate_customer":
        return format_record("C", customer_values)
    if kind == "bad_email":
        return format_record("C", {**customer_values, "email": "planted-at-nowhere"})
    if kind == "bad_phone":
        return format_record("C", {**customer_values, "phone": "+49123"})
    raise ValueError(kind)

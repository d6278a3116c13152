"""Money at the edges: decimal strings in the API, integer minor units everywhere else.

Never a float: amounts are parsed from strings with Decimal and stored as int.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents of the currencies the bank keeps accounts in.
CURRENCY_EXPONENTS: dict[str, int] = {"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "JPY": 0, "BHD": 3}
SUPPORTED_CURRENCIES = tuple(CURRENCY_EXPONENTS)
# Bigger than any real payment, far below BIGINT: keeps sums of many entries safe.
MAX_AMOUNT_MINOR = 10**15

_AMOUNT_SYNTAX = re.compile(r"^\d{1,16}(\.\d{1,3})?$")


class InvalidAmount(ValueError):
    """The text is not a valid positive amount in the currency."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidAmount(f"Unsupported currency {currency!r}.") from None


def parse_amount(text: object, currency: str) -> int:
    """'12.50' EUR -> 1250. Positive, at most the currency's decimals, no exponent notation."""
    if not isinstance(text, str):
        raise InvalidAmount('Amount must be a decimal string such as "12.50".')
    places = exponent(currency)
    if not _AMOUNT_SYNTAX.match(text):
        raise InvalidAmount('Amount must be a decimal string such as "12.50".')
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount('Amount must be a decimal string such as "12.50".') from None
    if "." in text and len(text.split(".", 1)[1]) > places:
        raise InvalidAmount(f"{currency} amounts have at most {places} decimal places.")
    minor = int(value.scaleb(places))
    if minor <= 0:
        raise InvalidAmount("Amount must be greater than zero.")
    if minor > MAX_AMOUNT_MINOR:
        raise InvalidAmount("Amount is too large.")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """1250 EUR -> '12.50'; -5 EUR -> '-0.05'; 1000 JPY -> '1000'."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(int(minor)), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"

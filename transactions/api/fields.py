"""Serializer fields for money and IBANs at the API edge."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.services.bank_accounts import InvalidIBAN, iban_normalize
from bankcore.api.inputs import StrictInputSerializer
from bankcore.api.schema import POSITIVE_AMOUNT
from bankcore.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, SUPPORTED_CURRENCIES, InvalidAmount, parse_amount

# Country, check digits, account: spaces and lower case allowed. The country's length and the
# mod-97 check cannot be a pattern: `format: iban` names them (a property-based test can register
# a strategy for it, e.g. schemathesis.openapi.format("iban", ...)).
IBAN_SCHEMA = {
    "type": "string",
    "format": "iban",
    "pattern": r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{11,38}$",
    "maxLength": 42,
    "example": "DE89370400440532013000",
}


@extend_schema_field(IBAN_SCHEMA)
class IBANTextField(serializers.CharField):
    """An IBAN the service validates (the schema says so; the field only takes the text)."""


@extend_schema_field(IBAN_SCHEMA)
class IBANField(serializers.CharField):
    """Accepts an IBAN with or without spaces, validated (country format, mod-97); returns it compact."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 42)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return iban_normalize(text)
        except InvalidIBAN as exc:
            raise serializers.ValidationError(f"Not a valid IBAN: {exc}") from None


def _positive_amount_pattern(places: int, max_minor: int = MAX_AMOUNT_MINOR) -> str:
    """The exact set parse_amount accepts for a currency with `places` decimals, in canonical
    form (no leading zeros): positive, at most `places` decimals, at most `max_minor` minor units."""
    largest = str(max_minor // 10**places)  # e.g. "10000000000000" for 10**15 cents
    whole = f"[1-9][0-9]{{0,{len(largest) - 2}}}"  # below `largest` by digit count
    top = largest + (f"(\\.0{{1,{places}}})?" if places else "")  # exactly the maximum
    if not places:
        return f"^({whole}|{top})$"
    fraction = f"(\\.[0-9]{{1,{places}}})?"
    below_one = "|".join(
        "0" * i + "[1-9]" + (f"[0-9]{{0,{places - 1 - i}}}" if places - 1 - i else "") for i in range(places)
    )
    return f"^({whole}{fraction}|0\\.({below_one})|{top})$"


AMOUNT_PATTERNS = {currency: _positive_amount_pattern(places) for currency, places in CURRENCY_EXPONENTS.items()}
# Any supported currency's amount (the per-currency pattern narrows it by `currency`).
_ANY_AMOUNT = r"^(0|[1-9][0-9]*)(\.[0-9]{1,3})?$"
# Amounts the API answers with: signed (history), the currency's decimals exactly.
MONEY_OUTPUT_SCHEMA = {"type": "string", "pattern": r"^-?(0|[1-9][0-9]*)(\.[0-9]{1,3})?$", "example": "12.50"}
money_output = extend_schema_field(MONEY_OUTPUT_SCHEMA)


@money_output
class MoneyStringField(serializers.CharField):
    """An amount in a response: a decimal string with the currency's decimals ("12.50", "-3.00", "1000" JPY)."""


@extend_schema_field({"type": "string", "pattern": POSITIVE_AMOUNT, "example": "12.50"})
class AmountField(serializers.Field):
    """A positive decimal *string*; converted to minor units by the serializer's validate()."""

    default_error_messages = {"invalid": 'Amount must be a decimal string such as "12.50".'}

    def to_internal_value(self, data: Any) -> str:
        # Canonical digits only (no leading zeros, no other scripts' digits), as the schema's pattern says.
        if not isinstance(data, str) or not re.fullmatch(_ANY_AMOUNT, data):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


class MoneyInputSerializer(StrictInputSerializer):
    """amount + currency; validate() turns amount into `amount_minor` or names the field's error.

    The schema ties `amount` to the currency's decimals (one `oneOf` branch per exponent).
    """

    amount = AmountField()
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)

    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        """Cross-field rules for the request schema (bankcore.api.schema merges them with allOf)."""
        by_pattern: dict[str, list[str]] = {}
        for currency, pattern in AMOUNT_PATTERNS.items():
            by_pattern.setdefault(pattern, []).append(currency)
        # "currency in C implies amount matches P", one rule per exponent: anyOf(not C, P).
        return [
            {
                "anyOf": [
                    {"not": {"properties": {"currency": {"enum": currencies}}, "required": ["currency"]}},
                    {"properties": {"amount": {"pattern": pattern}}},
                ]
            }
            for pattern, currencies in by_pattern.items()
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["amount_minor"] = parse_amount(attrs["amount"], attrs["currency"])
        except InvalidAmount as exc:
            raise serializers.ValidationError({"amount": [str(exc)]}) from None
        return attrs


def paginated(item: type[serializers.Serializer]) -> serializers.Serializer:
    """OpenAPI shape of a keyset page: {"results": [item...], "next": cursor|null}."""
    from drf_spectacular.utils import inline_serializer

    name = item.__name__.removesuffix("Output")
    return inline_serializer(
        name=f"{name}Page",
        fields={
            "results": item(many=True),
            "next": serializers.CharField(allow_null=True, help_text="Cursor of the next page, or null."),
        },
    )

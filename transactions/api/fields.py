"""Serializer fields for money and IBANs at the API edge."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.services.bank_accounts import InvalidIBAN, iban_normalize
from bankcore.money import SUPPORTED_CURRENCIES, InvalidAmount, parse_amount


@extend_schema_field({"type": "string", "example": "DE89370400440532013000"})
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


@extend_schema_field({"type": "string", "pattern": r"^\d+(\.\d+)?$", "example": "12.50"})
class AmountField(serializers.Field):
    """A positive decimal *string*; converted to minor units by the serializer's validate()."""

    default_error_messages = {"invalid": 'Amount must be a decimal string such as "12.50".'}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> str:
        return str(value)


class MoneyInputSerializer(serializers.Serializer):
    """amount + currency; validate() turns amount into `amount_minor` or names the field's error."""

    amount = AmountField()
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)

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

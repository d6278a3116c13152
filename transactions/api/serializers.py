"""Input and output shapes of the ledger's endpoints."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import BankAccount
from accounts.services.legacy_links import LegacyAccountBalance
from bankcore.api.inputs import StrictInputSerializer
from bankcore.money import SUPPORTED_CURRENCIES, format_amount
from transactions.api.fields import MONEY_OUTPUT_SCHEMA, IBANField, MoneyInputSerializer, MoneyStringField, money_output
from transactions.models import Category, Entry, Transaction
from transactions.selectors import counterparty_of
from transactions.services.ledger import available_balance
from transactions.services.legacy_transfers import legacy_request_of

# DRF's own rendering of a datetime (ISO 8601 in the current time zone), for hand-built outputs.
_DATETIME = serializers.DateTimeField()


class BankAccountOutput(serializers.Serializer):
    id = serializers.UUIDField()
    number = serializers.CharField(source="iban", help_text="The IBAN.")
    name = serializers.CharField()
    kind = serializers.CharField()
    currency = serializers.CharField()
    balance = serializers.SerializerMethodField(help_text="Ledger balance, decimal string.")
    available = serializers.SerializerMethodField(help_text="balance - holds + overdraft, decimal string.")
    overdraft_limit = serializers.SerializerMethodField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    # A field named "source" (DRF's Field has an attribute of that name; the declared field wins).
    source = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text="`bankcore`, or `legacy` for an account on the legacy core."
    )
    stale = serializers.SerializerMethodField(help_text="True when the balance is the last known one (core down).")
    as_of = serializers.SerializerMethodField(help_text="When the balance was read.")

    @money_output
    def get_balance(self, account: BankAccount) -> str:
        return format_amount(account.balance, account.currency)

    def get_source(self, account: BankAccount) -> str:
        return "bankcore"

    def get_stale(self, account: BankAccount) -> bool:
        return False

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_as_of(self, account: BankAccount) -> str:
        # The ledger's balances are current by definition.
        return str(serializers.DateTimeField().to_representation(self.context.get("now") or timezone.now()))

    @money_output
    def get_available(self, account: BankAccount) -> str:
        return format_amount(available_balance(account), account.currency)

    @money_output
    def get_overdraft_limit(self, account: BankAccount) -> str:
        return format_amount(account.overdraft_limit, account.currency)


class LegacyAccountOutput(serializers.Serializer):
    """A linked account on the legacy core, in the same shape as bankcore's accounts."""

    id = serializers.UUIDField(source="link.id", help_text="The link's id.")
    number = serializers.CharField(source="link.iban", help_text="The IBAN.")
    name = serializers.CharField(source="link.name")
    kind = serializers.CharField(source="link.kind")
    currency = serializers.CharField(source="link.currency")
    balance = serializers.SerializerMethodField(help_text="Ledger balance at the core; null if never read.")
    available = serializers.SerializerMethodField()
    overdraft_limit = serializers.SerializerMethodField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField(source="link.created_at")
    source = serializers.SerializerMethodField()  # type: ignore[assignment]
    stale = serializers.BooleanField()
    as_of = serializers.DateTimeField(allow_null=True)

    @extend_schema_field({**MONEY_OUTPUT_SCHEMA, "nullable": True})
    def get_balance(self, item: LegacyAccountBalance) -> str | None:
        return None if item.ledger is None else format_amount(item.ledger, item.link.currency)

    @extend_schema_field({**MONEY_OUTPUT_SCHEMA, "nullable": True})
    def get_available(self, item: LegacyAccountBalance) -> str | None:
        return None if item.available is None else format_amount(item.available, item.link.currency)

    @money_output
    def get_overdraft_limit(self, item: LegacyAccountBalance) -> str:
        return format_amount(0, item.link.currency)

    def get_source(self, item: LegacyAccountBalance) -> str:
        return "legacy"


class BankAccountInput(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=[BankAccount.Kind.CURRENT.value, BankAccount.Kind.SAVINGS.value])
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TransferInput(MoneyInputSerializer):
    source_account = serializers.UUIDField()
    destination = IBANField()
    description = serializers.CharField(max_length=140, required=False, allow_blank=True, default="")
    step_up_token = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")


class TransferOutput(serializers.Serializer):
    # The declared fields are the API's shape (and the OpenAPI schema's); `to_representation`
    # builds the same dict directly, without copying and binding eight fields on every instance
    # (a test holds the two equal). A comment, not a docstring: drf-spectacular would publish it.

    id = serializers.UUIDField()
    status = serializers.CharField()
    source_account = serializers.SerializerMethodField(help_text="The account id (a linked legacy account's id).")
    destination = serializers.SerializerMethodField(help_text="The destination IBAN.")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()

    def to_representation(self, instance: Transaction) -> dict[str, Any]:
        return {
            "id": str(instance.pk),
            "status": instance.status,
            "source_account": self.get_source_account(instance),
            "destination": self.get_destination(instance),
            "amount": self.get_amount(instance),
            "currency": instance.currency,
            "description": instance.description,
            "created_at": _DATETIME.to_representation(instance.created_at),
        }

    @money_output
    def get_amount(self, transfer: Transaction) -> str:
        return format_amount(transfer.amount or 0, transfer.currency)

    @extend_schema_field(OpenApiTypes.UUID)
    def get_source_account(self, transfer: Transaction) -> str:
        legacy = legacy_request_of(transfer)
        if legacy is not None and legacy.direction == legacy.Direction.FROM_LEGACY:
            return str(legacy.link_id)
        return str(transfer.source_account_id)

    def get_destination(self, transfer: Transaction) -> str:
        legacy = legacy_request_of(transfer)
        if legacy is not None and legacy.direction == legacy.Direction.TO_LEGACY:
            return legacy.legacy_iban
        return transfer.destination_account.iban if transfer.destination_account is not None else ""


class CounterpartyOutput(serializers.Serializer):
    name = serializers.CharField()
    iban = serializers.CharField()


class HistoryEntryOutput(serializers.Serializer):
    id = serializers.CharField(help_text="Opaque entry id.")
    transfer_id = serializers.UUIDField(source="transaction_id", help_text="The journal transaction (transfer) id.")
    kind = serializers.CharField(source="transaction.kind")
    amount = serializers.SerializerMethodField(help_text="Signed: negative is money out.")
    balance_after = serializers.SerializerMethodField()
    currency = serializers.CharField()
    description = serializers.CharField(source="transaction.description")
    counterparty = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField(
        help_text="Spending category: the customer's own choice, else the bank's rules (see insights)."
    )
    created_at = serializers.DateTimeField()

    @money_output
    def get_amount(self, entry: Entry) -> str:
        return format_amount(entry.amount, entry.currency)

    @extend_schema_field(serializers.ChoiceField(choices=Category.values))
    def get_category(self, entry: Entry) -> str:
        # The view reads the page's categories in one query (`categories` in the context).
        return str(self.context.get("categories", {}).get(entry.pk, Category.OTHER.value))

    @money_output
    def get_balance_after(self, entry: Entry) -> str:
        return format_amount(entry.balance_after, entry.currency)

    def get_counterparty(self, entry: Entry) -> dict[str, Any] | None:
        return counterparty_of(entry)


class LimitsOutput(serializers.Serializer):
    currency = serializers.CharField()
    step_up_threshold = MoneyStringField()
    per_transfer = MoneyStringField()
    daily = MoneyStringField()
    used_today = MoneyStringField()
    remaining_today = MoneyStringField()


class BeneficiaryInput(StrictInputSerializer):
    name = serializers.CharField(max_length=140)
    iban = IBANField()


class BeneficiaryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    iban = serializers.CharField()
    created_at = serializers.DateTimeField()


class StandingOrderInput(MoneyInputSerializer):
    source_account = serializers.UUIDField()
    destination = IBANField()
    description = serializers.CharField(max_length=140, required=False, allow_blank=True, default="")
    frequency = serializers.ChoiceField(choices=["weekly", "monthly"])
    day = serializers.IntegerField(min_value=1, max_value=31, help_text="weekly: 1 (Monday) - 7; monthly: 1-31.")
    start_date = serializers.DateField()
    end_date = serializers.DateField(required=False, allow_null=True, default=None)
    step_up_token = serializers.CharField(
        max_length=512,
        required=False,
        allow_blank=True,
        default="",
        help_text="Above the step-up threshold: a step-up token (purpose `standing_order`) for this amount and payee.",
    )

    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        weekly_day = {
            "anyOf": [
                {"not": {"properties": {"frequency": {"enum": ["weekly"]}}, "required": ["frequency"]}},
                {"properties": {"day": {"maximum": 7}}},
            ]
        }
        return [*super().openapi_request_constraints(), weekly_day]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        errors: dict[str, list[str]] = {}
        if attrs["frequency"] == "weekly" and attrs["day"] > 7:
            errors["day"] = ["Weekly orders take a weekday 1 (Monday) to 7 (Sunday)."]
        if attrs["end_date"] is not None and attrs["end_date"] < attrs["start_date"]:
            errors["end_date"] = ["Must not be before start_date."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class StandingOrderOutput(serializers.Serializer):
    id = serializers.UUIDField()
    source_account = serializers.UUIDField(source="source_account_id")
    destination = serializers.CharField(source="destination_iban")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    description = serializers.CharField()
    frequency = serializers.CharField()
    day = serializers.IntegerField()
    start_date = serializers.DateField()
    end_date = serializers.DateField(allow_null=True)
    status = serializers.CharField()
    next_due = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()

    @money_output
    def get_amount(self, order: Any) -> str:
        return format_amount(order.amount, order.currency)

"""Input and output shapes of the ledger's endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from bankcore.money import format_amount
from transactions.api.fields import IBANField, MoneyInputSerializer
from transactions.models import Entry, Transaction
from transactions.selectors import counterparty_of


class TransferInput(MoneyInputSerializer):
    source_account = serializers.UUIDField()
    destination = IBANField()
    description = serializers.CharField(max_length=140, required=False, allow_blank=True, default="")
    step_up_token = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")


class TransferOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    source_account = serializers.UUIDField(source="source_account_id")
    destination = serializers.CharField(source="destination_account.iban")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_amount(self, transfer: Transaction) -> str:
        return format_amount(transfer.amount or 0, transfer.currency)


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
    created_at = serializers.DateTimeField()

    def get_amount(self, entry: Entry) -> str:
        return format_amount(entry.amount, entry.currency)

    def get_balance_after(self, entry: Entry) -> str:
        return format_amount(entry.balance_after, entry.currency)

    def get_counterparty(self, entry: Entry) -> dict[str, Any] | None:
        return counterparty_of(entry)


class LimitsOutput(serializers.Serializer):
    currency = serializers.CharField()
    step_up_threshold = serializers.CharField()
    per_transfer = serializers.CharField()
    daily = serializers.CharField()
    used_today = serializers.CharField()
    remaining_today = serializers.CharField()

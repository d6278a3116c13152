"""Spending insights: GET /insights/spending, PATCH on a history entry (the customer's category),
GET/PATCH /insights/preferences (the opt-in to recommendations).

Thin views: parse, authorise (ownership via selectors), call transactions.services.insights,
serialize. Money leaves as decimal strings in the answer's one currency.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bankcore.api.inputs import StrictInputSerializer
from bankcore.api.schema import MONTH
from bankcore.money import SUPPORTED_CURRENCIES, format_amount
from transactions.api.fields import MoneyStringField
from transactions.api.serializers import HistoryEntryOutput
from transactions.models import Category
from transactions.services.insights import (
    Spending,
    customer_entry,
    entry_recategorise,
    insights_currency,
    insights_preference,
    insights_preference_set,
    parse_month,
    spending_for_month,
)


class CategorySpendingOutput(serializers.Serializer):
    category = serializers.ChoiceField(choices=Category.values)
    amount = MoneyStringField(help_text="Money out in this category during the month, decimal string.")
    change_vs_previous_month = MoneyStringField(
        help_text="amount minus the previous month's amount in this category: a signed decimal string."
    )
    previous_month_amount = MoneyStringField()


class RecommendationOutput(serializers.Serializer):
    code = serializers.CharField(help_text="open_savings_account")
    message = serializers.CharField()
    details = serializers.DictField(help_text="average_balance and threshold, decimal strings.")


class SpendingOutput(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM")
    currency = serializers.CharField()
    total_out = MoneyStringField(help_text="All money out of the customer's accounts in this currency.")
    categories = CategorySpendingOutput(many=True)
    recommendations = RecommendationOutput(many=True, help_text="Empty unless the customer opted in.")


def _spending_data(spending: Spending) -> dict[str, Any]:
    currency = spending.currency
    return {
        "month": spending.month.strftime("%Y-%m"),
        "currency": currency,
        "total_out": format_amount(spending.total_out, currency),
        "categories": [
            {
                "category": item.category,
                "amount": format_amount(item.amount, currency),
                "change_vs_previous_month": format_amount(item.change, currency),
                "previous_month_amount": format_amount(item.previous, currency),
            }
            for item in spending.categories
        ],
        "recommendations": [
            {
                "code": advice.code,
                "message": advice.message,
                "details": {name: format_amount(value, currency) for name, value in advice.details.items()},
            }
            for advice in spending.recommendations
        ],
    }


class SpendingInsights(APIView):
    @extend_schema(
        operation_id="insights_spending",
        summary="Money out per category in one month, with the change against the previous month",
        parameters=[
            OpenApiParameter("month", MONTH, description="YYYY-MM (UTC months); default the current month."),
            OpenApiParameter(
                "currency",
                str,
                enum=list(SUPPORTED_CURRENCIES),
                description="Default: the currency of the customer's first current account.",
            ),
        ],
        responses=SpendingOutput,
    )
    def get(self, request: Request) -> Response:
        raw_month = request.query_params.get("month")
        month = parse_month(raw_month) if raw_month is not None else timezone.now().date().replace(day=1)
        errors: dict[str, list[str]] = {}
        if month is None:
            errors["month"] = ["Use YYYY-MM."]
        requested = request.query_params.get("currency") or None
        if requested is not None and requested not in SUPPORTED_CURRENCIES:
            errors["currency"] = [f"One of {', '.join(SUPPORTED_CURRENCIES)}."]
        if errors:
            raise serializers.ValidationError(errors)
        assert month is not None  # parsed above, or ValidationError was raised
        currency = insights_currency(user=request.user, requested=requested) or SUPPORTED_CURRENCIES[0]
        spending = spending_for_month(user=request.user, month=month, currency=currency)
        return Response(_spending_data(spending))


class EntryCategoryInput(StrictInputSerializer):
    openapi_whole_patch = True  # the PATCH must name the category: validated whole, not partially

    category = serializers.ChoiceField(choices=Category.values)


class AccountHistoryEntry(APIView):
    @extend_schema(
        operation_id="accounts_transactions_partial_update",
        summary="Re-categorise one of the caller's entries (later insights and entries from the same counterparty "
        "follow it)",
        request=EntryCategoryInput,
        responses=HistoryEntryOutput,
    )
    def patch(self, request: Request, account_id: Any, entry_id: str) -> Response:
        entry = customer_entry(user=request.user, account_id=account_id, entry_id=entry_id)
        data = EntryCategoryInput(data=request.data)
        data.is_valid(raise_exception=True)
        category = entry_recategorise(user=request.user, entry=entry, category=data.validated_data["category"])
        return Response(HistoryEntryOutput(entry, context={"categories": {entry.pk: category}}).data)


class InsightsPreferenceIO(StrictInputSerializer):
    recommendations = serializers.BooleanField(help_text="Opt in to rule-based recommendations.")


class InsightsPreferences(APIView):
    @extend_schema(summary="The caller's insights preferences", responses=InsightsPreferenceIO)
    def get(self, request: Request) -> Response:
        preference = insights_preference(user=request.user)
        return Response({"recommendations": preference.recommendations})

    @extend_schema(
        summary="Opt in to (or out of) recommendations", request=InsightsPreferenceIO, responses=InsightsPreferenceIO
    )
    def patch(self, request: Request) -> Response:
        data = InsightsPreferenceIO(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if "recommendations" not in data.validated_data:  # a PATCH of nothing changes nothing
            return Response({"recommendations": insights_preference(user=request.user).recommendations})
        preference = insights_preference_set(user=request.user, recommendations=data.validated_data["recommendations"])
        return Response({"recommendations": preference.recommendations})

"""Customer bank accounts: list, open, show. History and statements live in transactions.api."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import BankAccount
from accounts.services.bank_accounts import bank_account_open
from bankcore.api.pagination import KeysetPagination
from bankcore.money import SUPPORTED_CURRENCIES, format_amount
from transactions.api.fields import paginated
from transactions.api.views import PAGE_PARAMETERS
from transactions.selectors import customer_account, customer_accounts
from transactions.services.ledger import available_balance


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

    def get_balance(self, account: BankAccount) -> str:
        return format_amount(account.balance, account.currency)

    def get_available(self, account: BankAccount) -> str:
        return format_amount(available_balance(account, getattr(account, "held", 0) or 0), account.currency)

    def get_overdraft_limit(self, account: BankAccount) -> str:
        return format_amount(account.overdraft_limit, account.currency)


class BankAccountInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[BankAccount.Kind.CURRENT.value, BankAccount.Kind.SAVINGS.value])
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class BankAccountListCreate(APIView):
    pagination_class = KeysetPagination

    @extend_schema(
        operation_id="accounts_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(BankAccountOutput),
        summary="The caller's accounts, newest first",
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(customer_accounts(user=request.user), request, view=self)
        return paginator.get_paginated_response(BankAccountOutput(page, many=True).data)

    @extend_schema(request=BankAccountInput, responses={201: BankAccountOutput}, summary="Open an account")
    def post(self, request: Request) -> Response:
        data = BankAccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = bank_account_open(owner=request.user, **data.validated_data)
        account.held = 0  # type: ignore[attr-defined]  # a new account has no holds
        return Response(BankAccountOutput(account).data, status=status.HTTP_201_CREATED)


class BankAccountDetail(APIView):
    @extend_schema(responses=BankAccountOutput, summary="One of the caller's accounts")
    def get(self, request: Request, account_id: Any) -> Response:
        return Response(BankAccountOutput(customer_account(user=request.user, account_id=account_id)).data)

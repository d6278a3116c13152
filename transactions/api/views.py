"""Thin views: parse, authorise (ownership via selectors), call one service, serialize."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.http import FileResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.exceptions import StepUpRequired
from accounts.services.bank_accounts import bank_account_open
from accounts.services.legacy_links import customer_legacy_link, customer_legacy_links, legacy_balances
from bankcore.api.pagination import KeysetPagination, decode_cursor, encode_cursor, parse_limit
from bankcore.api.schema import DATE_OR_DATETIME, MONTH, page_parameters, raises
from bankcore.db.replica import reads_pinned
from bankcore.idempotency import claim_now, idempotent
from bankcore.money import SUPPORTED_CURRENCIES, format_amount
from transactions.api.fields import paginated
from transactions.api.serializers import (
    BankAccountInput,
    BankAccountOutput,
    BeneficiaryInput,
    BeneficiaryOutput,
    HistoryEntryOutput,
    LegacyAccountOutput,
    LimitsOutput,
    StandingOrderInput,
    StandingOrderOutput,
    TransferInput,
    TransferOutput,
)
from transactions.exceptions import (
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    LimitExceeded,
    SameAccount,
    UnknownDestination,
)
from transactions.models import Beneficiary, StandingOrder
from transactions.selectors import (
    account_history,
    customer_account,
    customer_accounts,
    customer_transfer,
    customer_transfers,
    history_page,
)
from transactions.services.insights import entry_categories
from transactions.services.legacy_transfers import (
    LegacyCoreUnavailable,
    is_legacy_iban,
    transfer_from_legacy,
    transfer_to_legacy,
)
from transactions.services.limits import limits_for
from transactions.services.payees import (
    beneficiary_create,
    beneficiary_delete,
    standing_order_cancel,
    standing_order_create,
)
from transactions.services.transfers import transfer_create
from transactions.statements import owner_display_name, statement_csv, statement_pdf

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=True,
    description="1-255 printable characters; same key + same body replays the first response for 24 h.",
)


PAGE_PARAMETERS = page_parameters()


def _paginate(view: APIView, request: Request, queryset: Any, serializer: type[serializers.Serializer]) -> Response:
    paginator = KeysetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def _time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    moment = parse_datetime(raw)
    if moment is None:
        day = parse_date(raw) if len(raw) == 10 else None
        if day is None:
            raise serializers.ValidationError({name: ["Use an ISO 8601 date or date-time."]})
        moment = datetime(day.year, day.month, day.day)
    return make_aware(moment) if is_naive(moment) else moment


class BankAccountListCreate(APIView):
    pagination_class = KeysetPagination

    @extend_schema(
        operation_id="accounts_list",
        parameters=PAGE_PARAMETERS,
        responses=paginated(BankAccountOutput),
        summary="The caller's accounts, newest first; then, on the first page, linked legacy accounts",
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(customer_accounts(user=request.user), request, view=self)
        results = list(BankAccountOutput(page, many=True, context={"now": timezone.now()}).data)
        if not request.query_params.get("cursor"):
            # Accounts on the legacy core (few per customer): after bankcore's, on the first page.
            links = customer_legacy_links(customer=request.user)
            results += LegacyAccountOutput(legacy_balances(links=links), many=True).data
        return paginator.get_paginated_response(results)

    @extend_schema(request=BankAccountInput, responses={201: BankAccountOutput}, summary="Open an account")
    def post(self, request: Request) -> Response:
        data = BankAccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = bank_account_open(owner=request.user, **data.validated_data)
        return Response(BankAccountOutput(account).data, status=status.HTTP_201_CREATED)


class BankAccountDetail(APIView):
    @extend_schema(responses=BankAccountOutput, summary="One of the caller's accounts")
    def get(self, request: Request, account_id: Any) -> Response:
        try:
            account = customer_account(user=request.user, account_id=account_id)
        except AccountNotFound:
            link = customer_legacy_link(customer=request.user, link_id=account_id)
            if link is None:
                raise
            return Response(LegacyAccountOutput(legacy_balances(links=[link])[0]).data)
        return Response(BankAccountOutput(account).data)


class AccountHistory(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="accounts_transactions_list",
        summary="An account's entries, newest first",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("since", DATE_OR_DATETIME, description="ISO date/date-time, inclusive."),
            OpenApiParameter("until", DATE_OR_DATETIME, description="ISO date/date-time, exclusive."),
        ],
        responses=paginated(HistoryEntryOutput),
    )
    def get(self, request: Request, account_id: Any) -> Response:
        account = customer_account(user=request.user, account_id=account_id)
        entries = account_history(
            account=account, since=_time_param(request, "since"), until=_time_param(request, "until")
        )
        limit = parse_limit(request)
        cursor = request.query_params.get("cursor")
        before = None
        if cursor:
            created_at, entry_id = decode_cursor(cursor, 2)
            moment = parse_datetime(created_at or "")
            if moment is None or not str(entry_id).isdigit():
                raise serializers.ValidationError({"cursor": ["Invalid cursor."]})
            before = (moment, int(entry_id))
        rows = history_page(entries=entries, before=before, limit=limit + 1)
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor([last.created_at.isoformat(), last.id])
        page = rows[:limit]
        categories = entry_categories(customer=request.user, entry_ids=[entry.pk for entry in page])
        return Response(
            {
                "results": HistoryEntryOutput(page, many=True, context={"categories": categories}).data,
                "next": next_cursor,
            }
        )


class _JSONErrorsOnly(DefaultContentNegotiation):
    """`?format=` here picks the statement's file type, not a DRF renderer; errors stay JSON."""

    def select_renderer(self, request: Request, renderers: Iterable[Any], format_suffix: str | None = None) -> Any:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class AccountStatement(APIView):
    content_negotiation_class = _JSONErrorsOnly

    @extend_schema(
        summary="Monthly statement: opening balance, every entry, closing balance",
        parameters=[
            OpenApiParameter("month", MONTH, required=True, description="YYYY-MM"),
            OpenApiParameter("format", str, enum=["csv", "pdf"], description="Default csv."),
        ],
        # CSV is text (`type: string`): generated clients read it as text. Declared as binary, the text/*
        # type made openapi-python-client build a file from `response.text` and crash on every download.
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/pdf"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, account_id: Any) -> HttpResponseBase:
        account = customer_account(user=request.user, account_id=account_id)
        raw_month = request.query_params.get("month", "")
        try:
            month = parse_date(f"{raw_month}-01") if len(raw_month) == 7 else None
        except ValueError:
            month = None
        errors = {}
        if month is None:
            errors["month"] = ["Use YYYY-MM."]
        kind = request.query_params.get("format", "csv")
        if kind not in ("csv", "pdf"):
            errors["format"] = ["csv or pdf."]
        if errors:
            raise serializers.ValidationError(errors)
        assert month is not None  # parsed above, or ValidationError was raised
        filename = f"statement-{account.iban[-4:]}-{raw_month}.{kind}"
        if kind == "csv":
            response: HttpResponseBase = StreamingHttpResponse(
                # Streamed after the view returns: its reads keep the replica-or-primary choice made now.
                reads_pinned(statement_csv(account=account, month=month)),
                content_type="text/csv; charset=utf-8",
            )
        else:
            document = statement_pdf(account=account, month=month, owner_name=owner_display_name(account))
            response = FileResponse(document, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _transfer_created(transfer: Any) -> Response:
    return Response(TransferOutput(transfer).data, status=status.HTTP_201_CREATED)


class TransferListCreate(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="transfers_list",
        parameters=PAGE_PARAMETERS,
        summary="Transfers the caller sent, newest first",
        responses=paginated(TransferOutput),
    )
    def get(self, request: Request) -> Response:
        return _paginate(self, request, customer_transfers(user=request.user), TransferOutput)

    @raises(
        AccountNotFound,
        StepUpRequired,
        InsufficientFunds,
        AccountFrozen,
        CurrencyMismatch,
        SameAccount,
        LimitExceeded,
        UnknownDestination,
        LegacyCoreUnavailable,
    )
    @extend_schema(
        summary="Send money to an account of this bank",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=TransferInput,
        responses={201: TransferOutput},
    )
    # The view returns the transfer; the answer is `_transfer_created(transfer)`, which
    # transfer_create's posting stores with itself (bankcore.idempotency, step 4).
    @idempotent(claim="with_first_statement", answer=_transfer_created)
    def post(self, request: Request) -> Any:
        data = TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        arguments = {
            "user": request.user,
            "destination_iban": values["destination"],
            "amount": values["amount_minor"],
            "currency": values["currency"],
            "description": values["description"],
            "step_up_token": values["step_up_token"] or None,
        }
        if is_legacy_iban(values["destination"]):
            claim_now()  # the legacy core is called: the key must be held first
            transfer = transfer_to_legacy(source_account_id=values["source_account"], **arguments)
        else:
            try:
                # Its first statement (the locks) carries the Idempotency-Key's claim.
                transfer = transfer_create(source_account_id=values["source_account"], **arguments)
            except AccountNotFound:
                # Not one of the customer's bankcore accounts: maybe their linked legacy account.
                if customer_legacy_link(customer=request.user, link_id=values["source_account"]) is None:
                    raise
                claim_now()  # made already by transfer_create's locks; never call out unclaimed
                transfer = transfer_from_legacy(link_id=values["source_account"], **arguments)
        return transfer


class TransferDetail(APIView):
    @extend_schema(summary="One of the caller's transfers", responses=TransferOutput)
    def get(self, request: Request, transfer_id: Any) -> Response:
        return Response(TransferOutput(customer_transfer(user=request.user, transfer_id=transfer_id)).data)


class Limits(APIView):
    @extend_schema(
        summary="Transfer limits and what the last 24 hours used",
        parameters=[OpenApiParameter("currency", str, enum=list(SUPPORTED_CURRENCIES))],
        responses=LimitsOutput,
    )
    def get(self, request: Request) -> Response:
        currency = request.query_params.get("currency")
        if currency is None:
            first = customer_accounts(user=request.user).order_by("created_at").first()
            currency = first.currency if first is not None else "EUR"
        if currency not in SUPPORTED_CURRENCIES:
            raise serializers.ValidationError({"currency": [f"One of {', '.join(SUPPORTED_CURRENCIES)}."]})
        limits = limits_for(user=request.user, currency=currency)
        body = {
            "currency": currency,
            "step_up_threshold": format_amount(limits.step_up_threshold, currency),
            "per_transfer": format_amount(limits.per_transfer, currency),
            "daily": format_amount(limits.daily, currency),
            "used_today": format_amount(limits.used_today, currency),
            "remaining_today": format_amount(limits.remaining_today, currency),
        }
        return Response(LimitsOutput(body).data)


class BeneficiaryListCreate(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="beneficiaries_list",
        parameters=PAGE_PARAMETERS,
        summary="The caller's saved payees",
        responses=paginated(BeneficiaryOutput),
    )
    def get(self, request: Request) -> Response:
        return _paginate(self, request, Beneficiary.objects.filter(owner=request.user.pk), BeneficiaryOutput)

    @extend_schema(summary="Save a payee", request=BeneficiaryInput, responses={201: BeneficiaryOutput})
    def post(self, request: Request) -> Response:
        data = BeneficiaryInput(data=request.data)
        data.is_valid(raise_exception=True)
        beneficiary = beneficiary_create(owner=request.user, **data.validated_data)
        return Response(BeneficiaryOutput(beneficiary).data, status=status.HTTP_201_CREATED)


class BeneficiaryDetail(APIView):
    def _get(self, request: Request, beneficiary_id: Any) -> Beneficiary:
        beneficiary = Beneficiary.objects.filter(owner=request.user.pk, pk=beneficiary_id).first()
        if beneficiary is None:
            raise AccountNotFound("No such beneficiary.")
        return beneficiary

    @extend_schema(summary="One saved payee", responses=BeneficiaryOutput)
    def get(self, request: Request, beneficiary_id: Any) -> Response:
        return Response(BeneficiaryOutput(self._get(request, beneficiary_id)).data)

    @extend_schema(summary="Forget a saved payee", responses={204: None})
    def delete(self, request: Request, beneficiary_id: Any) -> Response:
        beneficiary_delete(owner=request.user, beneficiary_id=beneficiary_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StandingOrderListCreate(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="standing_orders_list",
        parameters=PAGE_PARAMETERS,
        summary="The caller's standing orders",
        responses=paginated(StandingOrderOutput),
    )
    def get(self, request: Request) -> Response:
        return _paginate(self, request, StandingOrder.objects.filter(owner=request.user.pk), StandingOrderOutput)

    @raises(AccountNotFound, UnknownDestination, StepUpRequired, CurrencyMismatch, SameAccount, LimitExceeded)
    @extend_schema(
        summary="Schedule a recurring transfer",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=StandingOrderInput,
        responses={201: StandingOrderOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = StandingOrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        order = standing_order_create(
            owner=request.user,
            source_account_id=values["source_account"],
            destination_iban=values["destination"],
            amount=values["amount_minor"],
            currency=values["currency"],
            frequency=values["frequency"],
            day=values["day"],
            start_date=values["start_date"],
            end_date=values["end_date"],
            description=values["description"],
            step_up_token=values["step_up_token"] or None,
        )
        return Response(StandingOrderOutput(order).data, status=status.HTTP_201_CREATED)


class StandingOrderDetail(APIView):
    @extend_schema(summary="One standing order", responses=StandingOrderOutput)
    def get(self, request: Request, order_id: Any) -> Response:
        order = StandingOrder.objects.filter(owner=request.user.pk, pk=order_id).first()
        if order is None:
            raise AccountNotFound("No such standing order.")
        return Response(StandingOrderOutput(order).data)

    @extend_schema(summary="Cancel a standing order", responses={204: None})
    def delete(self, request: Request, order_id: Any) -> Response:
        standing_order_cancel(owner=request.user, order_id=order_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

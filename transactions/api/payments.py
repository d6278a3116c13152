"""Payments to other banks: POST/GET /payments, GET/DELETE /payments/{id} (API.md).

Thin views like the transfers': parse, call one service (transactions.services.payments),
serialize. A payment is accepted with a hold (202): it settles later through the gateway.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.exceptions import StepUpRequired
from bankcore.api.inputs import StrictInputSerializer
from bankcore.api.schema import raises
from bankcore.idempotency import idempotent
from bankcore.money import format_amount
from transactions.api.fields import IBANTextField, MoneyInputSerializer, money_output, paginated
from transactions.api.views import IDEMPOTENCY_PARAMETER, PAGE_PARAMETERS, _paginate
from transactions.exceptions import (
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidPayment,
    LimitExceeded,
    PaymentNotCancellable,
)
from transactions.models import Payment
from transactions.selectors import customer_payment, customer_payments
from transactions.services.payments import (
    CREDITOR_NAME_MAX,
    REMITTANCE_MAX,
    Creditor,
    creditor_validated,
    payment_cancel,
    payment_create,
)


class CreditorInput(StrictInputSerializer):
    name = serializers.CharField(max_length=CREDITOR_NAME_MAX, help_text="The account holder at the other bank.")
    iban = IBANTextField(max_length=42, help_text="With or without spaces; country format and mod-97 checked.")
    bic = serializers.CharField(max_length=11, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> Creditor:
        try:
            return creditor_validated(name=attrs["name"], iban=attrs["iban"], bic=attrs["bic"])
        except InvalidPayment as exc:
            # The service names fields "creditor.iban"; nested under "creditor" here.
            raise serializers.ValidationError(
                {name.removeprefix("creditor."): messages for name, messages in exc.details.items()}
            ) from None


class PaymentInput(MoneyInputSerializer):
    source_account = serializers.UUIDField()
    beneficiary = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A saved payee's id (instead of `creditor`)."
    )
    creditor = CreditorInput(required=False, allow_null=True, default=None, help_text="Instead of `beneficiary`.")
    remittance_information = serializers.CharField(
        max_length=REMITTANCE_MAX, required=False, allow_blank=True, default=""
    )
    requested_execution_date = serializers.DateField(
        required=False, allow_null=True, default=None, help_text="Default today; not in the past."
    )
    step_up_token = serializers.CharField(
        max_length=512,
        required=False,
        allow_blank=True,
        default="",
        help_text="Above the step-up threshold: a step-up token (purpose `payment`, payee the creditor IBAN).",
    )

    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        given = {"beneficiary": {"type": "string"}, "creditor": {"type": "object"}}
        either = {
            "anyOf": [{"properties": {name: schema}, "required": [name]} for name, schema in given.items()],
        }
        not_both = {"not": {"properties": given, "required": list(given)}}
        return [*super().openapi_request_constraints(), either, not_both]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if (attrs["beneficiary"] is None) == (attrs["creditor"] is None):
            errors["creditor"] = ["Give either `beneficiary` (a saved payee's id) or `creditor`."]
        try:
            attrs = super().validate(attrs)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)  # type: ignore[arg-type]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CreditorOutput(serializers.Serializer):
    name = serializers.CharField(source="creditor_name")
    iban = serializers.CharField(source="creditor_iban")
    bic = serializers.CharField(source="creditor_bic", help_text="Empty when not given.")


class PaymentEventOutput(serializers.Serializer):
    status = serializers.CharField()
    at = serializers.DateTimeField()
    reason_code = serializers.CharField(required=False, help_text="ISO 20022 reason, on a rejection only.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not data.get("reason_code"):
            data.pop("reason_code", None)
        return data


class PaymentOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    source_account = serializers.UUIDField(source="source_account_id")
    creditor = CreditorOutput(source="*")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    remittance_information = serializers.CharField()
    end_to_end_id = serializers.CharField(help_text="ISO 20022 EndToEndId: the creditor's bank sees it too.")
    requested_execution_date = serializers.DateField()
    created_at = serializers.DateTimeField()
    events = serializers.SerializerMethodField(help_text="The status timeline, oldest first.")

    @money_output
    def get_amount(self, payment: Payment) -> str:
        return format_amount(payment.amount, payment.currency)

    @extend_schema_field(PaymentEventOutput(many=True))
    def get_events(self, payment: Payment) -> list[dict[str, Any]]:
        # Prefetched by the selectors (or the one event of a payment just created): sorted here.
        events = sorted(payment.events.all(), key=lambda event: event.id)
        return PaymentEventOutput(events, many=True).data  # type: ignore[return-value]


class PaymentListCreate(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="payments_list",
        parameters=PAGE_PARAMETERS,
        summary="Payments to other banks the caller made, newest first",
        responses=paginated(PaymentOutput),
    )
    def get(self, request: Request) -> Response:
        return _paginate(self, request, customer_payments(user=request.user), PaymentOutput)

    @raises(
        InvalidPayment,
        AccountNotFound,
        StepUpRequired,
        InsufficientFunds,
        AccountFrozen,
        CurrencyMismatch,
        LimitExceeded,
    )
    @extend_schema(
        summary="Pay an account at another bank (SEPA credit transfer): accepted now, settled later",
        description="The amount is held at once (`available` drops); `balance` drops when the payment settles.",
        parameters=[IDEMPOTENCY_PARAMETER],
        request=PaymentInput,
        responses={202: PaymentOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = PaymentInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        payment = payment_create(
            user=request.user,
            source_account_id=values["source_account"],
            amount=values["amount_minor"],
            currency=values["currency"],
            creditor=values["creditor"],
            beneficiary_id=values["beneficiary"],
            remittance_information=values["remittance_information"],
            requested_execution_date=values["requested_execution_date"],
            step_up_token=values["step_up_token"] or None,
        )
        return Response(PaymentOutput(payment).data, status=status.HTTP_202_ACCEPTED)


class PaymentDetail(APIView):
    @extend_schema(
        summary="One of the caller's payments, with its status timeline",
        responses={200: PaymentOutput},
    )
    def get(self, request: Request, payment_id: Any) -> Response:
        return Response(PaymentOutput(customer_payment(user=request.user, payment_id=payment_id)).data)

    @raises(PaymentNotCancellable)
    @extend_schema(
        summary="Cancel a payment that has not left yet (`pending`): the hold is released",
        responses={204: None},
    )
    def delete(self, request: Request, payment_id: Any) -> Response:
        payment_cancel(user=request.user, payment_id=payment_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

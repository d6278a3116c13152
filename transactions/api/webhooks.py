"""POST /api/v1/integrations/gateway/webhook: incoming credits from the payment gateway.

No customer is behind this request: no JWT, no Idempotency-Key (the notification id is the
idempotency key) and no CSRF (APIView exempts it; nothing here reads a cookie). What
authenticates it is the HMAC in `X-Signature` over the raw body, checked before anything is
parsed (integrations.gateway.webhooks.verify). Every delivery with a valid signature answers
200 - "applied" the first time, "duplicate" after - so the gateway stops redelivering.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bankcore.api.exceptions import BankError
from bankcore.api.schema import raises
from integrations.gateway.errors import InvalidSignature
from integrations.gateway.messages import CreditNotification
from integrations.gateway.webhooks import SIGNATURE_HEADER, verify
from transactions.services.incoming import incoming_credit_apply

logger = logging.getLogger(__name__)


class WebhookSignatureInvalid(BankError):
    status_code = 401
    code = "invalid_signature"
    default_message = "The webhook signature is missing, wrong or too old."


class WebhookBodyInvalid(BankError):
    status_code = 400
    code = "invalid_request"
    default_message = "The notification could not be read."


class GatewayWebhook(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @raises(WebhookSignatureInvalid, WebhookBodyInvalid)
    @extend_schema(
        operation_id="gateway_webhook",
        summary="Incoming credit from the payment gateway (signed; applied once per notification id)",
        auth=[],
        parameters=[
            OpenApiParameter(
                SIGNATURE_HEADER,
                location=OpenApiParameter.HEADER,
                required=True,
                description='`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`',
            )
        ],
        request=inline_serializer(
            name="CreditNotification",
            fields={
                "id": serializers.CharField(),
                "type": serializers.ChoiceField(choices=["credit"]),
                "iban": serializers.CharField(),
                "amount": serializers.CharField(),
                "currency": serializers.CharField(),
                "debtor": inline_serializer(
                    name="CreditNotificationDebtor",
                    fields={"name": serializers.CharField(), "iban": serializers.CharField()},
                ),
                "remittance_information": serializers.CharField(required=False),
                "booked_at": serializers.DateTimeField(),
            },
        ),
        responses={
            200: inline_serializer(
                name="WebhookReceipt", fields={"status": serializers.ChoiceField(choices=["applied", "duplicate"])}
            ),
        },
    )
    def post(self, request: Request) -> Response:
        body = request._request.body  # the raw bytes the MAC covers, before any parsing
        try:
            verify(settings.GATEWAY_WEBHOOK_SECRET, request.headers.get(SIGNATURE_HEADER), body, now=time.time())
        except InvalidSignature as exc:
            logger.warning("gateway webhook refused: %s", exc)
            raise WebhookSignatureInvalid() from None
        try:
            notification = CreditNotification.from_json(body)
        except ValueError as exc:
            logger.warning("gateway webhook with a valid signature but an unreadable body: %s", exc)
            raise WebhookBodyInvalid(details={"body": [str(exc)]}) from None
        _, applied = incoming_credit_apply(notification=notification)
        return Response({"status": "applied" if applied else "duplicate"})

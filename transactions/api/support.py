"""Support tickets: GET/POST /support/tickets, GET /support/tickets/{id},
POST /support/tickets/{id}/messages (API.md, "The app itself").

A customer sees only their own tickets: anyone else's id answers 404 `not_found`, as an
unknown one does. Texts are returned as typed (JSON); whoever shows them escapes them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bankcore.api.inputs import StrictInputSerializer
from bankcore.api.schema import raises
from transactions.api.fields import paginated
from transactions.api.views import PAGE_PARAMETERS, _paginate
from transactions.exceptions import AccountNotFound, PaymentNotFound
from transactions.models import SupportMessage, SupportTicket
from transactions.models.support import MESSAGE_MAX, SUBJECT_MAX
from transactions.selectors import customer_ticket, customer_tickets
from transactions.services.support import ticket_message_add, ticket_open


class SupportMessageOutput(serializers.Serializer):
    id = serializers.UUIDField()
    author = serializers.SerializerMethodField(help_text="`customer` or `bank`.")
    message = serializers.CharField(source="body")
    created_at = serializers.DateTimeField()

    def get_author(self, message: SupportMessage) -> str:
        return "bank" if message.from_staff else "customer"


class SupportTicketOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=SupportTicket.Status.choices)
    subject = serializers.CharField()
    transfer_id = serializers.UUIDField(allow_null=True)
    payment_id = serializers.UUIDField(allow_null=True)
    messages = SupportMessageOutput(many=True, help_text="Oldest first.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SupportTicketInput(StrictInputSerializer):
    subject = serializers.CharField(max_length=SUBJECT_MAX)
    message = serializers.CharField(max_length=MESSAGE_MAX)
    transfer_id = serializers.UUIDField(required=False, allow_null=True, default=None)
    payment_id = serializers.UUIDField(required=False, allow_null=True, default=None)

    @classmethod
    def openapi_request_constraints(cls) -> list[dict[str, Any]]:
        both = {"transfer_id": {"type": "string"}, "payment_id": {"type": "string"}}
        return [{"not": {"properties": both, "required": list(both)}}]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["transfer_id"] and attrs["payment_id"]:
            raise serializers.ValidationError({"payment_id": ["Give a transfer or a payment, not both."]})
        return attrs


class SupportMessageInput(StrictInputSerializer):
    message = serializers.CharField(max_length=MESSAGE_MAX)


class SupportTicketListCreate(APIView):
    keyset_ordering = ("-id",)

    @extend_schema(
        operation_id="support_tickets_list",
        parameters=PAGE_PARAMETERS,
        summary="The caller's support tickets, newest first",
        responses=paginated(SupportTicketOutput),
    )
    def get(self, request: Request) -> Response:
        return _paginate(self, request, customer_tickets(user=request.user), SupportTicketOutput)

    @raises(AccountNotFound, PaymentNotFound)
    @extend_schema(
        summary="Open a support ticket, optionally about one of the caller's transfers or payments",
        request=SupportTicketInput,
        responses={201: SupportTicketOutput},
    )
    def post(self, request: Request) -> Response:
        data = SupportTicketInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        ticket = ticket_open(
            customer=request.user,
            subject=values["subject"],
            message=values["message"],
            transfer_id=values["transfer_id"],
            payment_id=values["payment_id"],
        )
        shown = customer_ticket(user=request.user, ticket_id=ticket.pk)
        return Response(SupportTicketOutput(shown).data, status=status.HTTP_201_CREATED)


class SupportTicketDetail(APIView):
    @extend_schema(
        summary="One of the caller's support tickets with its messages",
        responses={200: SupportTicketOutput},
    )
    def get(self, request: Request, ticket_id: Any) -> Response:
        return Response(SupportTicketOutput(customer_ticket(user=request.user, ticket_id=ticket_id)).data)


class SupportTicketMessages(APIView):
    @extend_schema(
        summary="Write to one of the caller's tickets (a closed one is reopened)",
        request=SupportMessageInput,
        responses={201: SupportMessageOutput},
    )
    def post(self, request: Request, ticket_id: Any) -> Response:
        data = SupportMessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        written = ticket_message_add(customer=request.user, ticket_id=ticket_id, message=data.validated_data["message"])
        return Response(SupportMessageOutput(written).data, status=status.HTTP_201_CREATED)

"""The naive transfer view: a first-draft DRF + ORM endpoint (see the package docstring)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import BankAccount
from transactions.models import Entry, Transaction


class NaiveTransferInput(serializers.Serializer):
    source = serializers.UUIDField()
    destination = serializers.UUIDField()
    amount = serializers.IntegerField(min_value=1)


class NaiveTransfer(APIView):
    """POST {"source", "destination", "amount" (minor units)}: move the money, 201 with the id."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        data = NaiveTransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        source_id, destination_id = data.validated_data["source"], data.validated_data["destination"]
        amount = data.validated_data["amount"]
        with transaction.atomic():
            accounts = {
                account.pk: account
                for account in BankAccount.objects.select_for_update()
                .filter(pk__in=[source_id, destination_id])
                .order_by("pk")
            }
            source, destination = accounts[source_id], accounts[destination_id]
            if source.balance < amount:
                return Response({"error": "insufficient funds"}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
            source.balance -= amount
            source.save(update_fields=["balance"])
            destination.balance += amount
            destination.save(update_fields=["balance"])
            now = timezone.now()
            journal = Transaction.objects.create(
                kind=Transaction.Kind.TRANSFER,
                initiated_by_id=source.owner_id,
                currency=source.currency,
                amount=amount,
                source_account=source,
                destination_account=destination,
                created_at=now,
                posted_at=now,
            )
            Entry.objects.create(
                transaction=journal,
                account=source,
                amount=-amount,
                currency=source.currency,
                balance_after=source.balance,
                created_at=now,
            )
            Entry.objects.create(
                transaction=journal,
                account=destination,
                amount=amount,
                currency=destination.currency,
                balance_after=destination.balance,
                created_at=now,
            )
        return Response({"id": str(journal.pk)}, status=status.HTTP_201_CREATED)

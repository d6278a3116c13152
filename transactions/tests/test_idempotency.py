"""Idempotency-Key lifecycle: in-flight 409, crashed-request takeover, 24 h expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from transactions.models import IdempotencyKey, Transaction
from transactions.tasks import expire_idempotency_keys
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _send(client, source, destination, key, amount="5.00"):
    body = {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}
    return client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.fixture
def pair(customer):
    return open_account(customer, balance=10_000), open_account(CustomerFactory())


def _body(source, destination, amount="5.00"):
    return {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}


def _leftover_claim(customer, key, body, lease_left):
    """What a first request leaves behind while it runs (lease ahead) or after it crashed (lease past)."""
    from types import SimpleNamespace

    from bankcore.idempotency import request_fingerprint

    now = timezone.now()
    fingerprint = request_fingerprint(SimpleNamespace(method="POST", path="/api/v1/transfers", data=body))
    IdempotencyKey.objects.create(
        user=customer,
        key=key,
        request_hash=fingerprint,
        claim_token="first-request",
        lease_until=now + lease_left,
        created_at=now,
        expires_at=now + timedelta(hours=24),
    )


def test_duplicate_while_the_first_is_in_flight_answers_409(customer, customer_client, pair):
    source, destination = pair
    _leftover_claim(customer, "inflight", _body(source, destination), timedelta(seconds=30))
    response = _send(customer_client, source, destination, "inflight")
    assert response.status_code == 409 and response.json()["error"]["code"] == "idempotency_in_progress"
    assert Transaction.objects.filter(kind="transfer").count() == 0
    assert IdempotencyKey.objects.get(key="inflight").claim_token == "first-request"  # untouched


def test_a_claim_left_by_a_crashed_request_is_taken_over_after_its_lease(customer, customer_client, pair):
    source, destination = pair
    # The first attempt claimed the key and died before its transaction committed: no transfer exists.
    _leftover_claim(customer, "crashed", _body(source, destination), -timedelta(seconds=1))
    response = _send(customer_client, source, destination, "crashed")
    assert response.status_code == 201, response.content
    assert Transaction.objects.filter(kind="transfer").count() == 1
    assert _send(customer_client, source, destination, "crashed").json() == response.json()
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_a_request_that_lost_its_claim_rolls_its_transfer_back(customer, pair):
    from rest_framework.response import Response

    from bankcore.idempotency import IdempotencyInProgress, run_idempotent
    from transactions.services.transfers import transfer_create

    source, destination = pair

    def handler():
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
        # Meanwhile our lease ran out and a retry took the key over.
        IdempotencyKey.objects.filter(key="lost").update(claim_token="the-retry")
        return Response({"ok": True}, status=201)

    with pytest.raises(IdempotencyInProgress):
        run_idempotent(user=customer, key="lost", fingerprint="f", handler=handler)
    assert Transaction.objects.filter(kind="transfer").count() == 0


def test_expired_keys_are_forgotten_by_the_beat_task(customer, customer_client, pair):
    source, destination = pair
    _send(customer_client, source, destination, "old")
    _send(customer_client, source, destination, "fresh")
    IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expire_idempotency_keys.apply().get() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    # The forgotten key is free again: a new request with it posts a new transfer.
    assert _send(customer_client, source, destination, "old").status_code == 201
    assert Transaction.objects.filter(kind="transfer").count() == 3

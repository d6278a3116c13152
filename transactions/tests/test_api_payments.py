"""POST/GET/DELETE /api/v1/payments: payments to other banks, the contract's statuses and codes."""

from __future__ import annotations

import uuid

import pytest

from accounts.tests.factories import step_up_token_for
from transactions.models import Hold, Payment
from transactions.services.payees import beneficiary_create
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.snapshots import assert_refusal_moved_nothing, ledger_snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

CREDITOR = {"name": "Jean Dupont", "iban": "FR1420041010050500013M02606", "bic": "BNPAFRPPXXX"}


@pytest.fixture
def source(customer):
    return open_account(customer, balance=500_000)


def pay(client, source, amount="25.00", *, key=None, creditor=CREDITOR, **extra):
    """POST a payment; `creditor=None` leaves the creditor out."""
    body = {
        "source_account": str(source),
        "amount": amount,
        "currency": "EUR",
        "remittance_information": "Invoice 42",
        **extra,
    }
    if creditor is not None:
        body["creditor"] = creditor
    return client.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def error_code(response):
    return response.json()["error"]["code"]


def refused(client, source, amount="25.00", *, status, code, **extra):
    key = uuid.uuid4().hex
    before = ledger_snapshot()
    holds, payments = Hold.objects.count(), Payment.objects.count()
    response = pay(client, source, amount, key=key, **extra)
    assert (response.status_code, error_code(response)) == (status, code), response.content
    assert_refusal_moved_nothing(before, response, key=key)
    assert (Hold.objects.count(), Payment.objects.count()) == (holds, payments)
    return response


def test_a_payment_is_accepted_with_a_hold_available_drops_and_balance_does_not(customer_client, source):
    response = pay(customer_client, source.pk, "25.00")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending" and body["amount"] == "25.00" and body["currency"] == "EUR"
    assert body["creditor"] == {"name": "Jean Dupont", "iban": CREDITOR["iban"], "bic": "BNPAFRPPXXX"}
    assert body["source_account"] == str(source.pk) and body["remittance_information"] == "Invoice 42"
    assert body["end_to_end_id"].startswith("E2E") and len(body["end_to_end_id"]) <= 35
    assert [event["status"] for event in body["events"]] == ["pending"]
    assert "reason_code" not in body["events"][0]
    assert body["requested_execution_date"] and body["created_at"]
    account = customer_client.get(f"/api/v1/accounts/{source.pk}").json()
    assert (account["balance"], account["available"]) == ("5000.00", "4975.00")
    assert ledger_verify().ok


def test_the_same_key_and_body_replays_and_another_body_is_refused(customer_client, source):
    key = uuid.uuid4().hex
    first = pay(customer_client, source.pk, "25.00", key=key)
    again = pay(customer_client, source.pk, "25.00", key=key)
    assert again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1 and Hold.objects.count() == 1
    other = pay(customer_client, source.pk, "26.00", key=key)
    assert (other.status_code, error_code(other)) == (422, "idempotency_key_reused")
    assert Payment.objects.count() == 1


def test_a_payment_without_an_idempotency_key_answers_400(customer_client, source):
    body = {"source_account": str(source.pk), "creditor": CREDITOR, "amount": "1.00", "currency": "EUR"}
    response = customer_client.post("/api/v1/payments", body, format="json")
    assert (response.status_code, error_code(response)) == (400, "invalid_request")
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"creditor": {**CREDITOR, "iban": "FR1420041010050500013M02607"}}, "creditor"),
        ({"creditor": {**CREDITOR, "bic": "NOTABIC"}}, "creditor"),
        ({"creditor": {**CREDITOR, "name": ""}}, "creditor"),
        ({"remittance_information": "x" * 141}, "remittance_information"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "1.005"}, "amount"),
        ({"requested_execution_date": "2001-01-01"}, "requested_execution_date"),
    ],
)
def test_invalid_payments_answer_400_naming_the_field_and_change_nothing(customer_client, source, change, field):
    response = refused(customer_client, source.pk, status=400, code="invalid_request", **change)
    assert field in response.json()["error"]["details"], response.json()


def test_a_bad_iban_is_named_inside_the_creditor(customer_client, source):
    response = refused(
        customer_client,
        source.pk,
        status=400,
        code="invalid_request",
        creditor={**CREDITOR, "iban": "FR1420041010050500013M02607"},
    )
    assert "iban" in response.json()["error"]["details"]["creditor"]


def test_neither_or_both_of_beneficiary_and_creditor_answer_400(customer, customer_client, source):
    saved = beneficiary_create(owner=customer, name="Jean", iban=CREDITOR["iban"])
    refused(customer_client, source.pk, status=400, code="invalid_request", creditor=None)
    both = refused(customer_client, source.pk, status=400, code="invalid_request", beneficiary=str(saved.pk))
    assert "creditor" in both.json()["error"]["details"]


def test_a_payment_to_a_saved_beneficiary(customer, customer_client, source):
    saved = beneficiary_create(owner=customer, name="Jean Dupont", iban=CREDITOR["iban"])
    body = {"source_account": str(source.pk), "beneficiary": str(saved.pk), "amount": "3.00", "currency": "EUR"}
    response = customer_client.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="b1")
    assert response.status_code == 202, response.content
    assert response.json()["creditor"]["iban"] == CREDITOR["iban"]


def test_insufficient_funds_is_422_and_stored_for_replay(customer_client, source):
    refused(customer_client, source.pk, "5000.01", status=422, code="insufficient_funds")


def test_another_customers_source_account_answers_404(customer_client):
    theirs = open_account(CustomerFactory(), balance=100_000)
    refused(customer_client, theirs.pk, status=404, code="not_found")


def test_above_the_step_up_threshold_a_token_is_needed(customer, customer_client, source):
    refused(customer_client, source.pk, "1500.00", status=403, code="step_up_required")
    # A token for a transfer, not a payment, does not do.
    wrong = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=CREDITOR["iban"])
    refused(customer_client, source.pk, "1500.00", status=403, code="step_up_required", step_up_token=wrong)
    token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=CREDITOR["iban"], purpose="payment")
    response = pay(customer_client, source.pk, "1500.00", step_up_token=token)
    assert response.status_code == 202, response.content
    source.refresh_from_db()
    assert source.held == 150_000


def test_list_and_detail_show_only_the_callers_payments(customer_client, source):
    first = pay(customer_client, source.pk, "1.00").json()
    second = pay(customer_client, source.pk, "2.00").json()
    other = CustomerFactory()
    other_client = client_for(other)
    theirs = pay(other_client, open_account(other, balance=10_000).pk, "3.00").json()

    page = customer_client.get("/api/v1/payments?limit=1").json()
    assert [item["id"] for item in page["results"]] == [second["id"]]  # newest first
    rest = customer_client.get(f"/api/v1/payments?limit=1&cursor={page['next']}").json()
    assert [item["id"] for item in rest["results"]] == [first["id"]] and rest["next"] is None
    assert customer_client.get(f"/api/v1/payments/{first['id']}").json() == first
    response = customer_client.get(f"/api/v1/payments/{theirs['id']}")
    assert (response.status_code, error_code(response)) == (404, "not_found")
    assert customer_client.delete(f"/api/v1/payments/{theirs['id']}").status_code == 404
    assert Payment.objects.get(pk=theirs["id"]).status == "pending"


def test_cancel_while_pending_releases_the_hold_and_cancelling_again_is_refused(customer_client, source):
    payment = pay(customer_client, source.pk, "25.00").json()
    response = customer_client.delete(f"/api/v1/payments/{payment['id']}")
    assert response.status_code == 204
    source.refresh_from_db()
    assert (source.balance, source.held) == (500_000, 0)
    detail = customer_client.get(f"/api/v1/payments/{payment['id']}").json()
    assert detail["status"] == "cancelled"
    assert [event["status"] for event in detail["events"]] == ["pending", "cancelled"]
    again = customer_client.delete(f"/api/v1/payments/{payment['id']}")
    assert (again.status_code, error_code(again)) == (422, "payment_not_cancellable")
    assert ledger_verify().ok


def test_the_schema_documents_the_payment_endpoints(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    assert {"/api/v1/payments", "/api/v1/payments/{payment_id}", "/api/v1/integrations/gateway/webhook"} <= set(
        schema["paths"]
    )
    post = schema["paths"]["/api/v1/payments"]["post"]
    assert {"202", "400", "403", "422"} <= set(post["responses"])

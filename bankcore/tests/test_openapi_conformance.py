"""The server holds to the schema's types and constraints (schemathesis' conformance findings, issue 20)."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator

from accounts.models import BankAccount
from bankcore.money import CURRENCY_EXPONENTS, InvalidAmount, parse_amount
from transactions.api.fields import AMOUNT_PATTERNS, AmountField
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _served_schema(client) -> dict:
    import yaml

    return yaml.safe_load(client.get("/api/schema/").content)


def test_a_number_is_not_an_account_name_and_nothing_is_opened():
    customer = CustomerFactory()
    client = client_for(customer)
    response = client.post("/api/v1/accounts", {"kind": "current", "currency": "EUR", "name": 0}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"name": ["Must be a JSON string."]}
    assert not BankAccount.objects.filter(owner=customer).exists()
    # A boolean is no integer, 0 is no boolean.
    order = {"frequency": "monthly", "day": True}
    assert (
        "day"
        in client.post("/api/v1/standing-orders", order, format="json", HTTP_IDEMPOTENCY_KEY="k").json()["error"][
            "details"
        ]
    )
    refused = client.patch("/api/v1/insights/preferences", {"recommendations": 0}, format="json")
    assert refused.status_code == 400 and "recommendations" in refused.json()["error"]["details"]
    opened = client.post("/api/v1/accounts", {"kind": "current", "currency": "EUR", "name": "Ok"}, format="json")
    assert opened.status_code == 201, opened.content


def test_unread_filter_takes_true_or_false_only():
    client = client_for(CustomerFactory())
    for bad in ("yes", "1", "TRUE", ""):
        response = client.get("/api/v1/notifications", {"unread": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["details"] == {"unread": ["Must be true or false."]}
    assert client.get("/api/v1/notifications", {"unread": "true"}).status_code == 200
    assert client.get("/api/v1/notifications", {"unread": "false"}).status_code == 200


def test_unset_notification_contacts_read_null_and_match_the_schema():
    client = client_for(CustomerFactory(notification_email="", notification_phone=""))
    body = client.get("/api/v1/me").json()
    assert body["notification_email"] is None and body["notification_phone"] is None
    schema = _served_schema(client)
    user = schema["paths"]["/api/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    errors = list(OAS30Validator({**user, "components": schema["components"]}).iter_errors(body))
    assert not errors, errors


def test_amounts_are_canonical_decimal_strings():
    customer = CustomerFactory()
    client = client_for(customer)
    source = open_account(customer, balance=10_000)
    destination = open_account(CustomerFactory())
    body = {"source_account": str(source.pk), "destination": destination.iban, "currency": "EUR"}
    for amount in ("012.50", "1e2", "١٢"):  # leading zero, exponent, other scripts' digits
        response = client.post(
            "/api/v1/transfers", {**body, "amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
        )
        assert (response.status_code, list(response.json()["error"]["details"])) == (400, ["amount"]), amount
    ok = client.post("/api/v1/transfers", {**body, "amount": "12.5"}, format="json", HTTP_IDEMPOTENCY_KEY="ok")
    assert ok.status_code == 201, ok.content


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.from_regex(r"\A[0-9]{1,17}(\.[0-9]{0,4})?\Z"),
        st.sampled_from(["0", "0.00", "0.001", "10000000000000", "10000000000000.01", "1000000000000000"]),
    ),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_the_schema_amount_pattern_is_exactly_what_the_server_accepts(text, currency):
    try:
        AmountField().run_validation(text)
        parse_amount(text, currency)
        accepted = True
    except (InvalidAmount, Exception):
        accepted = False
    assert bool(re.fullmatch(AMOUNT_PATTERNS[currency], text)) == accepted, (text, currency)


def test_what_the_server_refuses_for_a_missing_or_unknown_key_the_schema_refuses_too():
    """schemathesis' positive-data findings: an empty re-categorisation PATCH is refused, so the
    schema requires `category`; unknown preference events or channels are refused, so the schema is
    closed (additionalProperties: false) at both levels."""
    client = client_for(CustomerFactory())
    schema = _served_schema(client)
    components = schema["components"]["schemas"]
    patch_entry = schema["paths"]["/api/v1/accounts/{account_id}/transactions/{entry_id}"]["patch"]
    body_ref = patch_entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert patch_entry["requestBody"]["required"] is True
    assert components[body_ref.rsplit("/", 1)[1]]["required"] == ["category"]

    preferences = schema["paths"]["/api/v1/notification-preferences"]["patch"]
    body_ref = preferences["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = components[body_ref.rsplit("/", 1)[1]]
    assert body["additionalProperties"] is False
    channels_ref = body["properties"]["low_balance"]["$ref"]
    assert components[channels_ref.rsplit("/", 1)[1]]["additionalProperties"] is False
    for unknown in ({"no_such_event": {"sms": False}}, {"low_balance": {"pigeon": True}}):
        refused = client.patch("/api/v1/notification-preferences", unknown, format="json")
        assert refused.status_code == 400, (unknown, refused.content)

"""Every error an operation can answer is in the OpenAPI schema, with the one error shape as a typed body.

Generated clients (Swift, Kotlin, openapi-python-client) parse a response only when its status is
declared with a body; these tests hold the schema to what the server really answers.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.test import Client
from openapi_schema_validator import OAS30Validator
from rest_framework.test import APIClient

from bankcore.api.middleware import APP_VERSION_EXEMPT_PATHS
from bankcore.api.schema import BankAutoSchema, raises
from transactions.exceptions import InsufficientFunds
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    # The schema is the same for every test here; generated once (it takes about a second).
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-any-return]


def operations(schema: dict[str, Any]):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def error_codes(schema: dict[str, Any], response: dict[str, Any]) -> list[str]:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return body["properties"]["error"]["properties"]["code"]["enum"]  # type: ignore[no-any-return]


def test_every_error_status_of_every_operation_has_the_error_body_with_its_codes(schema):
    seen = 0
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                assert error_codes(schema, response), (method, path, status)
        # Shared by all: a malformed request, and a database outage (503 on every path).
        assert "invalid_request" in error_codes(schema, responses["400"]), (method, path)
        assert "unavailable" in error_codes(schema, responses["503"]), (method, path)
        assert ("426" in responses) == (path not in APP_VERSION_EXEMPT_PATHS), (method, path)
        # 401 not_authenticated wherever a token is required.
        security = operation.get("security") or []
        if security and {} not in security:
            assert "not_authenticated" in error_codes(schema, responses["401"]), (method, path)
        if "{" in path:
            assert "not_found" in error_codes(schema, responses["404"]), (method, path)
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), (method, path)
        writes = method != "get" and not path.startswith("/api/v1/auth/token") and "/auth/device/" not in path
        writes = writes and path != "/api/v1/auth/logout"
        assert ("maintenance" in error_codes(schema, responses["503"])) == writes, (method, path)
        seen += 1
    assert seen >= 50


def test_money_moving_posts_declare_their_business_errors_from_the_exception_classes(schema):
    transfers = schema["paths"]["/api/v1/transfers"]["post"]["responses"]
    assert set(error_codes(schema, transfers["422"])) == {
        "insufficient_funds",
        "account_frozen",
        "currency_mismatch",
        "same_account",
        "limit_exceeded",
        "idempotency_key_reused",
    }
    assert error_codes(schema, transfers["409"]) == ["idempotency_in_progress"]
    assert error_codes(schema, transfers["403"]) == ["step_up_required"]
    payments = schema["paths"]["/api/v1/payments"]["post"]["responses"]
    assert "insufficient_funds" in error_codes(schema, payments["422"])
    cancel = schema["paths"]["/api/v1/payments/{payment_id}"]["delete"]["responses"]
    assert error_codes(schema, cancel["422"]) == ["payment_not_cancellable"]
    orders = schema["paths"]["/api/v1/standing-orders"]["post"]["responses"]
    assert "limit_exceeded" in error_codes(schema, orders["422"])
    login = schema["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert error_codes(schema, login["401"]) == ["invalid_credentials", "mfa_required"]
    webhook = schema["paths"]["/api/v1/integrations/gateway/webhook"]["post"]["responses"]
    assert error_codes(schema, webhook["401"]) == ["invalid_signature"]
    # Every @idempotent view gets the header with the syntax the server checks.
    key = next(p for p in schema["paths"]["/api/v1/payments"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["required"] and key["schema"]["maxLength"] == 255


def test_raises_takes_status_and_code_from_the_exception_class():
    class View:
        @raises(InsufficientFunds)
        def post(self) -> None: ...

    auto = BankAutoSchema()
    auto.method = "POST"
    auto.view = View()  # type: ignore[assignment]
    assert auto.declared_errors() == (InsufficientFunds,)
    assert InsufficientFunds.status_code == 422 and InsufficientFunds.code == "insufficient_funds"


def _validator(schema: dict[str, Any], path: str, method: str, status: int) -> OAS30Validator:
    body = schema["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return OAS30Validator({**body, "components": schema["components"]})


def test_real_error_answers_match_their_declared_schema(schema):
    """The server's actual error bodies validate against what each operation declares (a 422
    `insufficient_funds` is what a generated client must parse as a typed error)."""
    customer = CustomerFactory()
    client = client_for(customer)
    source = open_account(customer, balance=1_000)
    destination = open_account(CustomerFactory(), balance=0)

    def transfer(amount: str, key: str, **extra: Any) -> Any:
        body = {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}
        return client.post("/api/v1/transfers", {**body, **extra}, format="json", HTTP_IDEMPOTENCY_KEY=key)

    one = f"/api/v1/transfers/{uuid.uuid4()}"
    too_large = Client().post(
        "/api/v1/transfers",
        data=b"{}",
        content_type="application/json",
        CONTENT_LENGTH=str(settings.API_MAX_BODY_BYTES + 1),
    )
    answers = [
        ("post", transfer("50.00", uuid.uuid4().hex), 422, "insufficient_funds"),
        ("post", transfer("1.00", "k1"), 201, None),
        ("post", transfer("2.00", "k1"), 422, "idempotency_key_reused"),
        ("post", transfer("1.00", uuid.uuid4().hex, currency="USD"), 422, "currency_mismatch"),
        ("post", client.post("/api/v1/transfers", {}, format="json"), 400, "invalid_request"),
        (
            "post",
            client.post("/api/v1/transfers", "x", content_type="text/plain", HTTP_IDEMPOTENCY_KEY="k2"),
            415,
            None,
        ),
        ("post", too_large, 413, "request_too_large"),
        ("get", APIClient().get("/api/v1/transfers"), 401, "not_authenticated"),
        ("get", client.get("/api/v1/transfers", HTTP_ACCEPT="image/png"), 406, "not_acceptable"),
        ("get-one", client.get(one), 404, "not_found"),
    ]
    for method, response, status, code in answers:
        assert response.status_code == status, (status, response.content)
        if status < 400:
            continue
        body = response.json()
        path = "/api/v1/transfers/{transfer_id}" if method == "get-one" else "/api/v1/transfers"
        errors = list(_validator(schema, path, method.removesuffix("-one"), status).iter_errors(body))
        assert not errors, (status, body, errors)
        assert code is None or body["error"]["code"] == code


def test_schema_served_is_yaml_with_the_typed_422(client):
    served = yaml.safe_load(client.get("/api/schema/").content)
    ref = served["paths"]["/api/v1/transfers"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert ref == {"$ref": "#/components/schemas/TransfersCreate422Error"}

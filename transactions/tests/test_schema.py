"""The OpenAPI schema describes the ledger's endpoints as the apps see them."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def test_schema_validates_and_documents_ledger_endpoints(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    validate(schema)
    paths = schema["paths"]
    for path in (
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}/transactions",
        "/api/v1/accounts/{account_id}/statement",
        "/api/v1/transfers",
        "/api/v1/limits",
        "/api/v1/beneficiaries/{beneficiary_id}",
        "/api/v1/standing-orders",
    ):
        assert path in paths, path
    post = paths["/api/v1/transfers"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in post["parameters"])
    assert {"201", "409", "422"} <= set(post["responses"])
    page = paths["/api/v1/transfers"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["$ref"].endswith("TransferPage")

"""A customer's security history lands in the hash-chained audit log, and tampering with it shows."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import new_device_key, totp_code
from bankcore.models import AuditEvent
from bankcore.testing import owner_cursor

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PASSWORD = "a sturdy passphrase 42"


@pytest.mark.django_db(transaction=True)
def test_security_journey_is_audited_in_an_unbroken_chain_and_an_edit_is_detected():
    client = APIClient(HTTP_USER_AGENT="BankApp/2.0 iOS", HTTP_X_REQUEST_ID="journey-1")
    client.post(
        "/api/v1/auth/register",
        {"email": "lin@example.com", "phone": "+4915112345678", "full_name": "Lin Wu", "password": PASSWORD},
    )
    user = User.objects.get(email="lin@example.com")
    assert client.post("/api/v1/auth/token", {"email": user.email, "password": "wrong one!!"}).status_code == 401
    tokens = client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    client.post("/api/v1/auth/totp")
    from accounts.models import TotpAuthenticator

    client.post("/api/v1/auth/totp/confirm", {"code": totp_code(TotpAuthenticator.objects.get(user=user))})
    _, public_key = new_device_key()
    device = client.post(
        "/api/v1/devices", {"name": "iPhone", "platform": "ios", "app_version": "2.0.0", "public_key": public_key}
    ).json()
    client.patch("/api/v1/me", {"full_name": "Lin Wu-Chen"})
    client.delete(f"/api/v1/devices/{device['id']}")
    client.credentials()
    client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})
    client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})  # reuse

    events = list(AuditEvent.objects.filter(target_id__in=[str(user.pk), device["id"]]).order_by("id"))
    assert [e.action for e in events] == [
        "user.registered",
        "auth.failed",
        "auth.login",
        "2fa.totp_enrolment_started",
        "2fa.totp_enabled",
        "device.registered",
        "user.profile_changed",
        "device.revoked",
        "auth.refresh_token_reuse",
    ]
    login = events[2]
    assert (login.actor_id, login.ip, login.user_agent, login.request_id) == (
        user.pk,
        "127.0.0.1",
        "BankApp/2.0 iOS",
        "journey-1",
    )
    call_command("verify_audit_log", stdout=open("/dev/null", "w"))  # noqa: SIM115

    with owner_cursor() as cursor:  # the owner's (a superuser's) powers: the app's role has no UPDATE here
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE bankcore_auditevent SET details = %s WHERE id = %s", ['{"method": "device_key"}', login.pk]
        )
    with pytest.raises(CommandError, match=f"#{login.pk}"):
        call_command("verify_audit_log", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_openapi_schema_describes_every_identity_endpoint():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    expected = {
        "/api/v1/auth/register": {"post": "201"},
        "/api/v1/auth/token": {"post": "200"},
        "/api/v1/auth/token/mfa": {"post": "200"},
        "/api/v1/auth/token/refresh": {"post": "200"},
        "/api/v1/auth/logout": {"post": "204"},
        "/api/v1/me": {"get": "200", "patch": "200"},
        "/api/v1/auth/totp": {"post": "201", "delete": "204"},
        "/api/v1/auth/totp/confirm": {"post": "200"},
        "/api/v1/devices": {"get": "200", "post": "201"},
        "/api/v1/devices/{device_id}": {"delete": "204"},
        "/api/v1/auth/device/challenge": {"post": "200"},
        "/api/v1/auth/device/token": {"post": "200"},
        "/api/v1/auth/step-up": {"post": "200"},
    }
    for path, operations in expected.items():
        for method, success in operations.items():
            assert success in paths[path][method]["responses"], (path, method)
    token_body = schema["components"]["schemas"]["TokenPairOutput"]["properties"]
    assert set(token_body) == {"access", "refresh"}
    assert paths["/api/v1/me"]["get"]["security"] == [{"jwtAuth": []}]
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"

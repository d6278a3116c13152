"""TOTP enrolment, confirmation with backup codes, and removal — through the API."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken

from accounts.models import TotpAuthenticator
from accounts.tests.factories import PASSWORD, UserFactory, authenticated_client, enrol_totp, totp_code
from bankcore.models import AuditEvent
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _code_for(secret_b32: str, step_offset: int = 0) -> str:
    import time

    padded = secret_b32 + "=" * (-len(secret_b32) % 8)
    totp = TOTP(base64.b32decode(padded), step=30, digits=6)
    totp.time = time.time() + step_offset * 30
    return f"{totp.token():06d}"


def test_enrol_confirm_then_login_needs_the_second_factor():
    user = UserFactory()
    client = authenticated_client(user)
    enrol = client.post("/api/v1/auth/totp")
    assert enrol.status_code == 201, enrol.content
    body = enrol.json()
    assert body["qr_svg"].lstrip().startswith("<")
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and parse_qs(uri.query)["secret"] == [body["secret"]]
    # Not required until confirmed.
    assert client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).status_code == 200

    wrong = client.post("/api/v1/auth/totp/confirm", {"code": _code_for(body["secret"], step_offset=5)})
    assert wrong.status_code == 400
    confirm = client.post("/api/v1/auth/totp/confirm", {"code": _code_for(body["secret"])})
    assert confirm.status_code == 200, confirm.content
    codes = confirm.json()["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(stored) == 10
    assert not stored & {c.replace("-", "") for c in codes}, "only digests of backup codes are stored"
    assert client.get("/api/v1/me").json()["totp_enabled"] is True

    login = client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD})
    assert login.json()["error"]["code"] == "mfa_required"
    mfa_token = login.json()["error"]["details"]["mfa_token"]
    assert client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": codes[3]}).status_code == 200
    assert StaticToken.objects.filter(device__user=user).count() == 9
    assert Notification.objects.filter(user=user, event="two_factor_changed").exists()
    assert AuditEvent.objects.filter(action="2fa.totp_enabled", target_id=str(user.pk)).exists()
    # A second enrolment while enabled is refused.
    assert client.post("/api/v1/auth/totp").status_code == 409


def test_totp_secret_is_encrypted_in_the_database():
    user = UserFactory()
    authenticator, _ = enrol_totp(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM accounts_totpauthenticator WHERE id = %s", [authenticator.pk])
        stored = cursor.fetchone()[0]
    assert authenticator.secret not in stored
    assert stored.startswith("enc1:")
    assert TotpAuthenticator.objects.get(pk=authenticator.pk).secret == authenticator.secret


def test_removing_totp_needs_a_current_code():
    user = UserFactory()
    authenticator, code = enrol_totp(user)
    client = authenticated_client(user)
    wrong = client.delete("/api/v1/auth/totp", {"code": f"{(int(code) + 500_000) % 1_000_000:06d}"})
    assert wrong.status_code == 401
    assert TotpAuthenticator.objects.filter(user=user).exists()
    assert client.delete("/api/v1/auth/totp", {"code": totp_code(authenticator)}).status_code == 204
    assert not TotpAuthenticator.objects.filter(user=user).exists()
    assert client.post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).status_code == 200
    assert AuditEvent.objects.filter(action="2fa.totp_disabled", target_id=str(user.pk)).exists()

"""The login flows end to end through the API: password, TOTP, backup code, device key, refresh, logout."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import DeviceChallenge, LoginSession
from accounts.tests.factories import (
    PASSWORD,
    DeviceFactory,
    UserFactory,
    enrol_totp,
    new_backup_code,
    sign,
    tokens_for,
    totp_code,
)
from bankcore.models import AuditEvent
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def login(client: APIClient, email: str, password: str = PASSWORD, **extra):
    return client.post("/api/v1/auth/token", {"email": email, "password": password, **extra})


def me(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/v1/me")


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_password_login_gives_tokens_that_open_me(api_client):
    user = UserFactory(email="ada@example.com")
    response = login(api_client, "ADA@example.com")
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert set(tokens) == {"access", "refresh"}
    assert me(tokens["access"]).json()["email"] == "ada@example.com"
    access = AccessToken(tokens["access"])
    assert 299 <= access["exp"] - access["iat"] <= 300  # both rounded down to whole seconds
    assert AuditEvent.objects.filter(action="auth.login", target_id=str(user.pk), details__method="password").exists()


def test_wrong_password_and_unknown_email_answer_the_same(api_client):
    UserFactory(email="ada@example.com")
    wrong = login(api_client, "ada@example.com", "not the password")
    unknown = login(api_client, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert error_code(wrong) == "invalid_credentials"
    assert AuditEvent.objects.filter(action="auth.failed", details__reason="unknown_email").exists()
    assert AuditEvent.objects.filter(action="auth.failed", details__reason="wrong_password").exists()


def test_password_then_totp_login(api_client):
    user = UserFactory()
    authenticator, _ = enrol_totp(user)
    first = login(api_client, user.email)
    assert first.status_code == 401
    assert error_code(first) == "mfa_required"
    mfa_token = first.json()["error"]["details"]["mfa_token"]
    second = api_client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": totp_code(authenticator)})
    assert second.status_code == 200, second.content
    assert me(second.json()["access"]).status_code == 200
    # The mfa_token works once.
    again = api_client.post(
        "/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": totp_code(authenticator, step_offset=1)}
    )
    assert again.status_code == 401
    assert LoginSession.objects.get(user=user).method == "password+totp"


def test_replayed_totp_code_is_refused(api_client):
    user = UserFactory()
    authenticator, code = enrol_totp(user)
    mfa_token = login(api_client, user.email).json()["error"]["details"]["mfa_token"]
    assert api_client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code}).status_code == 200
    mfa_token = login(api_client, user.email).json()["error"]["details"]["mfa_token"]
    replay = api_client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code})
    assert replay.status_code == 401
    assert error_code(replay) == "invalid_credentials"
    # An older code than the one accepted is refused as well.
    older = api_client.post(
        "/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": totp_code(authenticator, step_offset=-1)}
    )
    assert older.status_code == 401


def test_backup_code_logs_in_once(api_client):
    user = UserFactory()
    code = new_backup_code(user)
    mfa_token = login(api_client, user.email).json()["error"]["details"]["mfa_token"]
    assert api_client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code}).status_code == 200
    mfa_token = login(api_client, user.email).json()["error"]["details"]["mfa_token"]
    reused = api_client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code})
    assert reused.status_code == 401
    assert LoginSession.objects.filter(user=user, method="password+backup_code").count() == 1


def test_device_key_login_with_a_real_p256_key(api_client):
    device = DeviceFactory()
    challenge = api_client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)})
    assert challenge.status_code == 200, challenge.content
    body = challenge.json()
    assert set(body) == {"challenge", "expires_at"}
    signature = sign(device.private_key, body["challenge"])
    response = api_client.post(
        "/api/v1/auth/device/token",
        {"device_id": str(device.id), "challenge": body["challenge"], "signature": signature},
    )
    assert response.status_code == 200, response.content
    access = response.json()["access"]
    assert AccessToken(access)["device_id"] == str(device.id)
    assert me(access).status_code == 200
    # The same challenge and signature never work twice.
    replay = api_client.post(
        "/api/v1/auth/device/token",
        {"device_id": str(device.id), "challenge": body["challenge"], "signature": signature},
    )
    assert replay.status_code == 401
    device.user.refresh_from_db()
    assert device.user.failed_auth_attempts == 1


def test_device_login_refuses_wrong_key_expired_challenge_and_revoked_device(api_client):
    device = DeviceFactory()
    impostor = DeviceFactory()

    def attempt(signing_key, *, expire: bool = False):
        challenge = api_client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
        if expire:
            DeviceChallenge.objects.filter(challenge=challenge).update(expires_at=timezone.now() - timedelta(seconds=1))
        return api_client.post(
            "/api/v1/auth/device/token",
            {"device_id": str(device.id), "challenge": challenge, "signature": sign(signing_key, challenge)},
        )

    assert attempt(impostor.private_key).status_code == 401
    assert attempt(device.private_key, expire=True).status_code == 401
    device.revoked_at = timezone.now()
    device.save()
    signature = sign(device.private_key, "anything")
    revoked = api_client.post(
        "/api/v1/auth/device/token", {"device_id": str(device.id), "challenge": "anything", "signature": signature}
    )
    assert revoked.status_code == 401
    device.user.refresh_from_db()
    assert device.user.failed_auth_attempts == 3


def test_refresh_rotates_and_reuse_revokes_the_whole_login(api_client):
    user = UserFactory()
    first = login(api_client, user.email).json()
    second = api_client.post("/api/v1/auth/token/refresh", {"refresh": first["refresh"]})
    assert second.status_code == 200, second.content
    second = second.json()
    assert second["refresh"] != first["refresh"]
    third = api_client.post("/api/v1/auth/token/refresh", {"refresh": second["refresh"]}).json()
    assert me(third["access"]).status_code == 200

    # A thief replays the first (already rotated) refresh token.
    reuse = api_client.post("/api/v1/auth/token/refresh", {"refresh": first["refresh"]})
    assert reuse.status_code == 401
    # Every token descended from that login is dead now, access tokens included.
    assert api_client.post("/api/v1/auth/token/refresh", {"refresh": third["refresh"]}).status_code == 401
    assert me(third["access"]).status_code == 401
    assert me(second["access"]).status_code == 401
    assert LoginSession.objects.get(user=user).revoked_reason == "refresh_token_reuse"
    assert AuditEvent.objects.filter(action="auth.refresh_token_reuse", target_id=str(user.pk)).exists()


def test_reuse_in_one_login_leaves_other_logins_alone(api_client):
    user = UserFactory()
    phone = tokens_for(user)
    laptop = login(api_client, user.email).json()
    api_client.post("/api/v1/auth/token/refresh", {"refresh": laptop["refresh"]})
    api_client.post("/api/v1/auth/token/refresh", {"refresh": laptop["refresh"]})
    assert me(phone["access"]).status_code == 200


def test_logout_ends_the_session(api_client):
    user = UserFactory()
    tokens = login(api_client, user.email).json()
    response = api_client.post("/api/v1/auth/logout", {"refresh": tokens["refresh"]})
    assert response.status_code == 204
    assert me(tokens["access"]).status_code == 401
    assert api_client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}).status_code == 401
    assert AuditEvent.objects.filter(action="auth.logout", target_id=str(user.pk)).exists()


def _forge(payload: dict, key: str, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def test_forged_and_expired_access_tokens_are_refused(settings):
    user = UserFactory()
    good = tokens_for(user)["access"]
    claims = jwt.decode(good, options={"verify_signature": False})
    signing_key = settings.SIMPLE_JWT["SIGNING_KEY"]

    expired = _forge({**claims, "exp": int(time.time()) - 10}, signing_key)
    other_key = _forge(claims, "a-completely-different-signing-key-of-enough-length")
    header, _payload, signature = good.split(".")
    alg_none = jwt.encode(claims, None, algorithm="none")
    other_user = UserFactory()
    tampered_payload = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "user_id": str(other_user.pk)}).encode()
    ).decode()
    tampered = f"{header}.{tampered_payload}.{signature}"

    assert me(good).status_code == 200
    for token in (expired, other_key, alg_none, tampered):
        response = me(token)
        assert response.status_code == 401, token
        assert error_code(response) == "not_authenticated"


def test_password_login_from_an_unfamiliar_app_tells_the_customer(api_client):
    user = UserFactory()
    login(APIClient(HTTP_USER_AGENT="BankApp/1.0 iOS"), user.email)
    login(APIClient(HTTP_USER_AGENT="BankApp/1.0 iOS"), user.email)
    assert not Notification.objects.filter(user=user, event="new_device_login").exists()
    login(APIClient(HTTP_USER_AGENT="curl/8.0"), user.email)
    assert Notification.objects.filter(user=user, event="new_device_login").count() == 1

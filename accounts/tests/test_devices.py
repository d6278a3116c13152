"""Registering, listing and revoking devices; a customer only ever sees their own."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from accounts.models import Device, LoginSession
from accounts.tests.factories import DeviceFactory, UserFactory, authenticated_client, new_device_key, tokens_for
from bankcore.models import AuditEvent
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _spki(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_register_device_tells_the_customer_and_is_audited():
    user = UserFactory()
    _, public_key = new_device_key()
    client = authenticated_client(user)
    response = client.post(
        "/api/v1/devices",
        {
            "name": "iPhone 16",
            "platform": "ios",
            "app_version": "2.3.1",
            "public_key": public_key,
            "push_token": "apns",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "iPhone 16" and body["platform"] == "ios"
    device = Device.objects.get(pk=body["id"], user=user)
    assert device.push_token == "apns"
    assert Notification.objects.filter(user=user, event="new_device").count() == 1
    assert AuditEvent.objects.filter(action="device.registered", target_id=str(device.pk)).exists()
    listed = client.get("/api/v1/devices").json()
    assert [d["id"] for d in listed["results"]] == [str(device.pk)]


@pytest.mark.parametrize(
    "public_key",
    [
        "not base64!!",
        base64.b64encode(b"not der").decode(),
        _spki(ec.generate_private_key(ec.SECP384R1())),
        _spki(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
    ids=["not-base64", "not-der", "p384", "rsa"],
)
def test_register_device_refuses_anything_but_a_p256_key(public_key):
    user = UserFactory()
    response = authenticated_client(user).post(
        "/api/v1/devices", {"name": "x", "platform": "android", "app_version": "1.0.0", "public_key": public_key}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "public_key" in response.json()["error"]["details"]
    assert not Device.objects.filter(user=user).exists()


def test_customer_cannot_see_or_revoke_another_customers_device():
    mine = DeviceFactory()
    theirs = DeviceFactory()
    client = authenticated_client(mine.user)
    assert [d["id"] for d in client.get("/api/v1/devices").json()["results"]] == [str(mine.pk)]
    response = client.delete(f"/api/v1/devices/{theirs.pk}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_revoking_a_device_ends_its_sessions_only():
    device = DeviceFactory()
    user = device.user
    on_device = tokens_for(user, device=device)
    elsewhere = authenticated_client(user)
    assert elsewhere.delete(f"/api/v1/devices/{device.pk}").status_code == 204
    device.refresh_from_db()
    assert device.revoked_at is not None
    from rest_framework.test import APIClient

    revoked_client = APIClient()
    revoked_client.credentials(HTTP_AUTHORIZATION=f"Bearer {on_device['access']}")
    assert revoked_client.get("/api/v1/me").status_code == 401
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": on_device["refresh"]}).status_code == 401
    assert elsewhere.get("/api/v1/me").status_code == 200
    assert LoginSession.objects.get(device=device).revoked_reason == "device_revoked"
    assert elsewhere.get("/api/v1/devices").json()["results"] == []
    assert elsewhere.delete(f"/api/v1/devices/{device.pk}").status_code == 404
    assert AuditEvent.objects.filter(action="device.revoked", target_id=str(device.pk)).exists()


def test_password_login_naming_a_registered_device_ties_the_tokens_to_it():
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.tests.factories import PASSWORD

    device = DeviceFactory()
    stranger_device = DeviceFactory()
    client = APIClient()
    tokens = client.post(
        "/api/v1/auth/token", {"email": device.user.email, "password": PASSWORD, "device_id": str(device.pk)}
    ).json()
    assert AccessToken(tokens["access"])["device_id"] == str(device.pk)
    other = client.post(
        "/api/v1/auth/token",
        {"email": device.user.email, "password": PASSWORD, "device_id": str(stranger_device.pk)},
    ).json()
    assert "device_id" not in AccessToken(other["access"]).payload


def test_app_updates_its_push_token_and_version_but_never_its_key():
    device = DeviceFactory(push_token="old-token")
    original_key = device.public_key
    client = authenticated_client(device.user)
    response = client.patch(
        f"/api/v1/devices/{device.pk}",
        {"push_token": "fcm-new-token", "app_version": "1.5.0", "public_key": "ignored"},
    )
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert (device.push_token, device.app_version, device.public_key) == ("fcm-new-token", "1.5.0", original_key)
    assert AuditEvent.objects.filter(action="device.updated", target_id=str(device.pk)).exists()
    stranger = authenticated_client(UserFactory())
    assert stranger.patch(f"/api/v1/devices/{device.pk}", {"push_token": "hijack"}).status_code == 404
    device.refresh_from_db()
    assert device.push_token == "fcm-new-token"

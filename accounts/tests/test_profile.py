"""Registration, the customer's own profile (/me) and password changes."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import PASSWORD, UserFactory, authenticated_client, tokens_for
from bankcore.models import AuditEvent
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

VALID = {
    "email": "Grace.Hopper@Example.com",
    "phone": "+49 151 12345678",
    "full_name": "Grace Hopper",
    "password": "a sturdy passphrase 42",
}


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.Argon2PasswordHasher"])
def test_register_creates_the_customer_with_an_argon2_password():
    response = APIClient().post("/api/v1/auth/register", VALID)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "grace.hopper@example.com"
    assert body["phone"] == "+4915112345678"
    assert "password" not in body
    user = User.objects.get(pk=body["id"])
    assert identify_hasher(user.password).algorithm == "argon2"
    assert user.check_password(VALID["password"])
    assert AuditEvent.objects.filter(action="user.registered", target_id=str(user.pk)).exists()


def test_register_refuses_an_email_taken_in_any_case_with_a_field_error():
    UserFactory(email="grace.hopper@example.com")
    response = APIClient().post("/api/v1/auth/register", {**VALID, "email": "GRACE.HOPPER@example.com"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["details"]) == ["email"]
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "0151 1234"),
        ("phone", "+49 123"),
        ("email", "not-an-email"),
        ("password", "short"),
        ("password", "1234567890123"),
        ("password", "grace hopper"),
        ("full_name", ""),
    ],
)
def test_register_refuses_invalid_fields_with_per_field_details(field, value):
    response = APIClient().post("/api/v1/auth/register", {**VALID, field: value})
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert not User.objects.exists()


def test_me_shows_the_profile_and_patch_changes_only_writable_fields():
    user = UserFactory(phone="+4915112345678")
    client = authenticated_client(user)
    response = client.patch(
        "/api/v1/me",
        {
            "full_name": "Ada King",
            "national_id": "DE-1234-5678",
            "is_staff": True,
            "email_verified": True,
            "locked_until": None,
            "failed_auth_attempts": 0,
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["full_name"] == "Ada King"
    assert body["is_staff"] is False
    assert body["email"] == user.email
    assert body["email_verified"] is False
    assert body["national_id_masked"] == "••••5678"
    assert body["pending_contacts"] == {}
    assert "national_id" not in body
    user.refresh_from_db()
    assert (user.is_staff, user.email, user.national_id) == (False, user.email, "DE-1234-5678")
    event = AuditEvent.objects.get(action="user.profile_changed", target_id=str(user.pk))
    assert "DE-1234-5678" not in str(event.details)
    assert set(event.details["fields"]) == {"full_name", "national_id"}


def test_me_needs_authentication():
    response = APIClient().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_password_change_ends_every_other_session():
    user = UserFactory()
    other = tokens_for(user)
    client = authenticated_client(user)
    response = client.post(
        "/api/v1/auth/password", {"current_password": PASSWORD, "new_password": "an entirely new phrase 7"}
    )
    assert response.status_code == 204, response.content
    assert client.get("/api/v1/me").status_code == 200
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION=f"Bearer {other['access']}")
    assert stale.get("/api/v1/me").status_code == 401
    assert APIClient().post("/api/v1/auth/token/refresh", {"refresh": other["refresh"]}).status_code == 401
    user.refresh_from_db()
    assert user.check_password("an entirely new phrase 7")
    assert Notification.objects.filter(user=user, event="password_changed").exists()
    assert AuditEvent.objects.filter(action="user.password_changed", target_id=str(user.pk)).exists()


def test_password_change_with_a_wrong_current_password_changes_nothing():
    user = UserFactory()
    client = authenticated_client(user)
    response = client.post(
        "/api/v1/auth/password", {"current_password": "not it at all", "new_password": "an entirely new phrase 7"}
    )
    assert response.status_code == 401
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert user.failed_auth_attempts == 1

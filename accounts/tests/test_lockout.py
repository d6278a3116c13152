"""Five failed authentications in a row lock the account, in the database, whatever the factor."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services.lockout import lock_duration
from accounts.tests.factories import PASSWORD, DeviceFactory, UserFactory, enrol_totp, sign
from bankcore.models import AuditEvent
from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def login(email: str, password: str):
    return APIClient().post("/api/v1/auth/token", {"email": email, "password": password})


def test_sixth_wrong_password_is_refused_as_locked_and_the_right_one_too():
    user = UserFactory()
    for _ in range(5):
        assert login(user.email, "wrong password!").status_code == 401
    sixth = login(user.email, "wrong password!")
    assert sixth.status_code == 403
    assert sixth.json()["error"]["code"] == "account_locked"
    correct = login(user.email, PASSWORD)
    assert correct.status_code == 403
    assert correct.json()["error"]["code"] == "account_locked"
    user.refresh_from_db()
    assert user.locked_until > timezone.now() + timedelta(minutes=14)
    assert Notification.objects.filter(user=user, event="account_locked").count() == 1
    assert AuditEvent.objects.filter(action="auth.account_locked", target_id=str(user.pk)).count() == 1
    assert AuditEvent.objects.filter(action="auth.failed", target_id=str(user.pk)).count() == 5


@pytest.mark.redis
def test_lock_survives_a_redis_flush():
    user = UserFactory()
    for _ in range(5):
        login(user.email, "wrong password!")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    response = login(user.email, PASSWORD)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_locked"


def test_success_resets_the_consecutive_failure_count():
    user = UserFactory()
    for _ in range(4):
        login(user.email, "wrong password!")
    assert login(user.email, PASSWORD).status_code == 200
    for _ in range(4):
        login(user.email, "wrong password!")
    assert login(user.email, PASSWORD).status_code == 200
    user.refresh_from_db()
    assert user.failed_auth_attempts == 0


def test_wrong_codes_and_signatures_count_towards_the_same_lock():
    device = DeviceFactory()
    user = device.user
    _authenticator, code = enrol_totp(user)
    client = APIClient()
    login(user.email, "wrong password!")
    mfa_token = login(user.email, PASSWORD).json()["error"]["details"]["mfa_token"]
    for _ in range(2):
        wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
        assert client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": wrong}).status_code == 401
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    bad = client.post(
        "/api/v1/auth/device/token",
        {"device_id": str(device.id), "challenge": challenge, "signature": sign(device.private_key, "other")},
    )
    assert bad.status_code == 401
    # That was the 4th; the 5th locks, and even the right code is refused afterwards.
    assert client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": "123-456"}).status_code == 401
    refused = client.post("/api/v1/auth/token/mfa", {"mfa_token": mfa_token, "code": code})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_locked"


def test_lock_expires_and_grows_on_repeat():
    user = UserFactory()
    for _ in range(5):
        login(user.email, "wrong password!")
    user.refresh_from_db()
    first_lock = user.locked_until
    user.locked_until = timezone.now() - timedelta(seconds=1)
    user.save()
    assert login(user.email, PASSWORD).status_code == 200
    for _ in range(5):
        login(user.email, "wrong password!")
    user.refresh_from_db()
    assert user.lock_count == 2
    assert user.locked_until - timezone.now() > timedelta(minutes=29)
    assert first_lock - timezone.now() < timedelta(minutes=16)
    assert lock_duration(previous_locks=0) == timedelta(minutes=15)
    assert lock_duration(previous_locks=1) == timedelta(minutes=30)
    assert lock_duration(previous_locks=50) == timedelta(hours=24)

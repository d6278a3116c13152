"""The staff site's sign-in: one form, one answer, the API's database lockout and Redis throttles."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.admin.site import INVALID_LOGIN
from accounts.services.lockout import MAX_FAILED_ATTEMPTS
from accounts.tests.factories import PASSWORD
from bankcore.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]

EMAIL = "ops@bank.example"


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user(email=EMAIL, password=PASSWORD, full_name="Ops", is_staff=True)
    user.totp_device = TOTPDevice.objects.create(user=user, name="admin", confirmed=True)
    return user


def _code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _login(client: Client, *, password: str = PASSWORD, code: str, email: str = EMAIL):
    return client.post("/admin/login/", {"username": email, "password": password, "otp_token": code})


def _page(response) -> str:
    # The CSRF token is masked afresh on every render; everything else must match.
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def _rates(**rates):
    return {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"auth_ip": "1000/min", "auth_user": "1000/min", **rates},
    }


def test_staff_sign_in_with_email_password_and_code_on_one_form(client, staff):
    assert 'name="otp_token"' in client.get("/admin/login/").content.decode()
    response = _login(client, code=_code(staff.totp_device))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action="staff.admin_login", actor=staff).exists()


def test_wrong_password_and_wrong_code_get_the_same_answer(staff, redis_flushed):
    wrong_password = _login(Client(), password="not-the-password", code=_code(staff.totp_device))
    wrong_code = _login(Client(), code="000000")
    unknown_email = _login(Client(), email="nobody@bank.example", code="000000")
    assert wrong_password.status_code == wrong_code.status_code == unknown_email.status_code == 200
    assert INVALID_LOGIN in wrong_password.content.decode()
    assert _page(wrong_password) == _page(wrong_code)
    assert _page(unknown_email) == _page(wrong_code).replace(EMAIL, "nobody@bank.example")
    assert "otp_device" not in wrong_password.content.decode(), "no device list that shows the password was right"
    reasons = list(
        AuditEvent.objects.filter(action="auth.failed", target_id=str(staff.pk))
        .order_by("id")
        .values_list("details__reason", flat=True)
    )
    assert reasons == ["wrong_password", "wrong_code"]


def test_repeated_wrong_admin_logins_lock_the_account_and_refuse_the_right_ones(staff, api_client, redis_flushed):
    client = Client()
    for _ in range(MAX_FAILED_ATTEMPTS):
        assert _login(client, password="guess", code="123456").status_code == 200
    staff.refresh_from_db()
    assert staff.locked_until is not None and staff.locked_until > timezone.now()
    assert AuditEvent.objects.filter(action="auth.account_locked", target_id=str(staff.pk)).exists()

    refused = _login(client, code=_code(staff.totp_device))
    assert refused.status_code == 200 and INVALID_LOGIN in refused.content.decode()
    assert client.get("/admin/").status_code == 302, "the right password and code open nothing while locked"
    # One lockout for both doors: the API refuses the same account.
    api = api_client.post("/api/v1/auth/token", {"email": EMAIL, "password": PASSWORD})
    assert api.status_code == 403 and api.json()["error"]["code"] == "account_locked"


def test_admin_login_counts_towards_the_apis_lockout(staff, api_client, redis_flushed):
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        _login(Client(), password="guess", code="123456")
    api_client.post("/api/v1/auth/token", {"email": EMAIL, "password": "guess"})
    staff.refresh_from_db()
    assert staff.is_locked()


def test_admin_logins_from_one_ip_are_throttled_like_the_api(staff, redis_flushed):
    with override_settings(REST_FRAMEWORK=_rates(auth_ip="3/min")):
        client = Client(REMOTE_ADDR="203.0.113.7")
        for i in range(3):
            assert _login(client, email=f"u{i}@bank.example", code="000000").status_code == 200
        throttled = _login(client, code=_code(staff.totp_device))
        assert throttled.status_code == 429
        assert 0 < int(throttled["Retry-After"]) <= 60
        assert client.get("/admin/").status_code == 302, "a throttled attempt is not checked, even when right"
        staff.refresh_from_db()
        assert staff.failed_auth_attempts == 0, "nor counted against the account"
        # The same budget as the API's login from that address.
        api = Client(REMOTE_ADDR="203.0.113.7").post(
            "/api/v1/auth/token", {"email": EMAIL, "password": "x"}, content_type="application/json"
        )
        assert api.status_code == 429
        assert _login(Client(REMOTE_ADDR="203.0.113.8"), code=_code(staff.totp_device)).status_code == 302


def test_admin_logins_on_one_account_from_many_ips_are_throttled(staff, redis_flushed):
    with override_settings(REST_FRAMEWORK=_rates(auth_user="2/min")):
        for i in range(2):
            assert _login(Client(REMOTE_ADDR=f"198.51.100.{i}"), password="x", code="000000").status_code == 200
        sprayed = _login(Client(REMOTE_ADDR="198.51.100.99"), email=EMAIL.upper(), password="x", code="000000")
        assert sprayed.status_code == 429 and "Retry-After" in sprayed

"""Step-up tokens bind a second factor to one exact amount and payee, once, for 5 minutes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.exceptions import InvalidCredentials, StepUpRequired
from accounts.models import StepUpToken
from accounts.services.step_up import step_up_consume, step_up_issue
from accounts.tests.factories import (
    DeviceFactory,
    UserFactory,
    authenticated_client,
    enrol_totp,
    sign,
    step_up_token_for,
    totp_code,
)
from bankcore.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PAYEE_X = "DE89370400440532013000"
PAYEE_Y = "DE02120300000000202051"


def test_step_up_token_authorises_exactly_its_amount_and_payee():
    user = UserFactory()
    _, code = enrol_totp(user)
    token, expires_at = step_up_issue(
        user=user, purpose="transfer", amount="100.00", currency="EUR", payee=PAYEE_X, code=code
    )
    assert timedelta(minutes=4, seconds=50) < expires_at - timezone.now() <= timedelta(minutes=5)
    for amount, payee in [("100.01", PAYEE_X), ("100.00", PAYEE_Y), ("99.99", PAYEE_X)]:
        with pytest.raises(StepUpRequired) as refused:
            step_up_consume(user=user, token=token, purpose="transfer", amount=amount, currency="EUR", payee=payee)
        assert refused.value.details["amount"] == amount
        assert refused.value.details["canonical"] == f"bankcore-step-up:v1|transfer|{amount}|EUR|{payee}"
    with pytest.raises(StepUpRequired):
        step_up_consume(user=user, token=token, purpose="transfer", amount="100.00", currency="USD", payee=PAYEE_X)
    with pytest.raises(StepUpRequired):
        step_up_consume(user=user, token=token, purpose="beneficiary", amount="100.00", currency="EUR", payee=PAYEE_X)
    # Same values written differently still match: "100.0" and "de89 3704 ..." normalise.
    step_up_consume(
        user=user, token=token, purpose="transfer", amount="100.0", currency="eur", payee="de89 3704 0044 0532 0130 00"
    )


def test_step_up_token_is_single_use():
    user = UserFactory()
    token = step_up_token_for(user, amount="1500.00", currency="EUR", payee=PAYEE_X)
    step_up_consume(user=user, token=token, purpose="transfer", amount="1500.00", currency="EUR", payee=PAYEE_X)
    with pytest.raises(StepUpRequired):
        step_up_consume(user=user, token=token, purpose="transfer", amount="1500.00", currency="EUR", payee=PAYEE_X)


def test_step_up_token_expires_after_five_minutes():
    user = UserFactory()
    token = step_up_token_for(user, amount="1500.00", currency="EUR", payee=PAYEE_X)
    StepUpToken.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(StepUpRequired):
        step_up_consume(user=user, token=token, purpose="transfer", amount="1500.00", currency="EUR", payee=PAYEE_X)


def test_step_up_token_of_another_customer_is_refused():
    owner, other = UserFactory(), UserFactory()
    token = step_up_token_for(owner, amount="1500.00", currency="EUR", payee=PAYEE_X)
    with pytest.raises(StepUpRequired):
        step_up_consume(user=other, token=token, purpose="transfer", amount="1500.00", currency="EUR", payee=PAYEE_X)


def test_missing_or_garbage_step_up_token_says_what_must_be_signed():
    user = UserFactory()
    for token in (None, "", "not-a-token"):
        with pytest.raises(StepUpRequired) as refused:
            step_up_consume(user=user, token=token, purpose="transfer", amount="1500", currency="EUR", payee=PAYEE_X)
        assert refused.value.status_code == 403
        assert refused.value.code == "step_up_required"
        assert refused.value.details == {
            "purpose": "transfer",
            "amount": "1500.00",
            "currency": "EUR",
            "payee": PAYEE_X,
            "canonical": f"bankcore-step-up:v1|transfer|1500.00|EUR|{PAYEE_X}",
        }


def test_wrong_code_gives_no_step_up_token_and_counts_as_failed_attempt():
    user = UserFactory()
    _authenticator, code = enrol_totp(user)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidCredentials):
        step_up_issue(user=user, purpose="transfer", amount="100.00", currency="EUR", payee=PAYEE_X, code=wrong)
    user.refresh_from_db()
    assert user.failed_auth_attempts == 1
    assert not StepUpToken.objects.filter(user=user).exists()


def test_step_up_through_the_api_with_a_device_signature_over_the_operation():
    device = DeviceFactory()
    client = authenticated_client(device.user)
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    signed = f"bankcore-step-up:v1|transfer|2500.00|EUR|{PAYEE_X}|{challenge}"
    body = {
        "purpose": "transfer",
        "amount": "2500.00",
        "currency": "EUR",
        "payee": PAYEE_X,
        "device_id": str(device.id),
    }
    response = client.post(
        "/api/v1/auth/step-up", {**body, "challenge": challenge, "signature": sign(device.private_key, signed)}
    )
    assert response.status_code == 200, response.content
    token = response.json()["step_up_token"]
    step_up_consume(user=device.user, token=token, purpose="transfer", amount="2500", currency="EUR", payee=PAYEE_X)
    assert AuditEvent.objects.filter(action="auth.step_up_issued", target_id=str(device.user.pk)).exists()


def test_device_signature_over_other_values_gives_no_step_up_token():
    device = DeviceFactory()
    client = authenticated_client(device.user)
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    signed_for_less = f"bankcore-step-up:v1|transfer|25.00|EUR|{PAYEE_X}|{challenge}"
    response = client.post(
        "/api/v1/auth/step-up",
        {
            "purpose": "transfer",
            "amount": "2500.00",
            "currency": "EUR",
            "payee": PAYEE_X,
            "device_id": str(device.id),
            "challenge": challenge,
            "signature": sign(device.private_key, signed_for_less),
        },
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_step_up_with_totp_code_through_the_api():
    user = UserFactory()
    authenticator, code = enrol_totp(user)
    client = authenticated_client(user)
    body = {"purpose": "transfer", "amount": "1200.00", "currency": "EUR", "payee": PAYEE_X, "code": code}
    first = client.post("/api/v1/auth/step-up", body)
    assert first.status_code == 200, first.content
    assert set(first.json()) == {"step_up_token", "expires_at"}
    replay = client.post("/api/v1/auth/step-up", body)
    assert replay.status_code == 401
    bad_amount = client.post(
        "/api/v1/auth/step-up", {**body, "amount": "12.345", "code": totp_code(authenticator, step_offset=1)}
    )
    assert bad_amount.status_code == 400
    assert "amount" in bad_amount.json()["error"]["details"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_consumption_of_one_step_up_token_succeeds_once():
    user = UserFactory()
    token = step_up_token_for(user, amount="5000.00", currency="EUR", payee=PAYEE_X)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def consume() -> None:
        try:
            barrier.wait()
            step_up_consume(user=user, token=token, purpose="transfer", amount="5000.00", currency="EUR", payee=PAYEE_X)
            outcomes.append("ok")
        except StepUpRequired:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=consume) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 5


def test_step_up_refuses_an_amount_sent_as_a_json_number():
    user = UserFactory()
    authenticator, _ = enrol_totp(user)
    response = authenticated_client(user).post(
        "/api/v1/auth/step-up",
        {
            "purpose": "transfer",
            "amount": 1500.1,
            "currency": "EUR",
            "payee": PAYEE_X,
            "code": totp_code(authenticator),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "amount" in response.json()["error"]["details"]
    assert not StepUpToken.objects.filter(user=user).exists()


def _lock(user):
    from accounts.services.lockout import MAX_FAILED_ATTEMPTS, record_auth_failure

    for _ in range(MAX_FAILED_ATTEMPTS):
        record_auth_failure(user=user, factor="password", reason="wrong_password")
    user.refresh_from_db()
    assert user.is_locked()


def test_step_up_is_refused_while_the_account_is_locked_even_with_a_right_code():
    """A lock (someone guessing) stops every factor; a right code does not open it, nor is it spent."""
    from accounts.tests.factories import new_backup_code

    user = UserFactory()
    authenticator, _ = enrol_totp(user)
    backup = new_backup_code(user)
    client = authenticated_client(user)
    _lock(user)
    body = {"purpose": "transfer", "amount": "1200.00", "currency": "EUR", "payee": PAYEE_X}
    for code in (totp_code(authenticator), backup):
        response = client.post("/api/v1/auth/step-up", {**body, "code": code})
        assert response.status_code == 403 and response.json()["error"]["code"] == "account_locked"
    assert not StepUpToken.objects.filter(user=user).exists()
    assert not AuditEvent.objects.filter(action="auth.step_up_issued").exists()
    # When the lock ends, the backup code refused during it still works: it was not used up.
    type(user).objects.filter(pk=user.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    response = client.post("/api/v1/auth/step-up", {**body, "code": backup})
    assert response.status_code == 200, response.content


def test_step_up_with_a_device_signature_is_refused_while_the_account_is_locked():
    device = DeviceFactory()
    client = authenticated_client(device.user)
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    _lock(device.user)
    signed = f"bankcore-step-up:v1|transfer|2500.00|EUR|{PAYEE_X}|{challenge}"
    response = client.post(
        "/api/v1/auth/step-up",
        {
            "purpose": "transfer",
            "amount": "2500.00",
            "currency": "EUR",
            "payee": PAYEE_X,
            "device_id": str(device.id),
            "challenge": challenge,
            "signature": sign(device.private_key, signed),
        },
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "account_locked"
    assert not StepUpToken.objects.filter(user=device.user).exists()


def _device_step_up(client, device, challenge, amount="2500.00"):
    signed = f"bankcore-step-up:v1|transfer|{amount}|EUR|{PAYEE_X}|{challenge}"
    return client.post(
        "/api/v1/auth/step-up",
        {
            "purpose": "transfer",
            "amount": amount,
            "currency": "EUR",
            "payee": PAYEE_X,
            "device_id": str(device.id),
            "challenge": challenge,
            "signature": sign(device.private_key, signed),
        },
    )


def test_step_up_signed_by_a_revoked_device_is_refused_and_counted():
    """A challenge fetched before the device was revoked, signed correctly by its key: a lost
    phone's key must stop authorising payments the moment the customer revokes it."""
    from accounts.services.devices import device_revoke

    device = DeviceFactory()
    other = DeviceFactory(user=device.user, name="iPad")
    client = authenticated_client(device.user, device=other)
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    device_revoke(device=device, actor=device.user)

    response = _device_step_up(client, device, challenge)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"
    assert not StepUpToken.objects.filter(user=device.user).exists()
    device.user.refresh_from_db()
    assert device.user.failed_auth_attempts == 1
    # A new challenge is not even given to a revoked device.
    refused = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)})
    assert refused.status_code == 401


def test_a_device_challenge_signs_one_step_up_only():
    device = DeviceFactory()
    client = authenticated_client(device.user)
    challenge = client.post("/api/v1/auth/device/challenge", {"device_id": str(device.id)}).json()["challenge"]
    assert _device_step_up(client, device, challenge).status_code == 200
    # The same challenge again - replayed as it was, or signed afresh over another amount.
    for amount in ("2500.00", "3000.00"):
        response = _device_step_up(client, device, challenge, amount=amount)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"
    assert StepUpToken.objects.filter(user=device.user).count() == 1
    device.user.refresh_from_db()
    assert device.user.failed_auth_attempts == 2

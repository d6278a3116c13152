"""Expired authentication leftovers are purged; anything still usable is kept."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import DeviceChallenge, MfaChallenge, StepUpToken, TotpAuthenticator
from accounts.services.devices import device_challenge_issue
from accounts.tests.factories import DeviceFactory, UserFactory, enrol_totp, step_up_token_for

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_purge_deletes_only_what_can_never_be_used_again():
    device = DeviceFactory()
    stale, _ = device_challenge_issue(device_id=device.pk)
    fresh, _ = device_challenge_issue(device_id=device.pk)
    DeviceChallenge.objects.filter(challenge=stale).update(expires_at=timezone.now() - timedelta(days=2))
    MfaChallenge.objects.create(user=device.user, token_hash="a" * 64, expires_at=timezone.now() - timedelta(days=2))
    MfaChallenge.objects.create(user=device.user, token_hash="b" * 64, expires_at=timezone.now() + timedelta(minutes=5))
    step_up_token_for(device.user, amount="10.00", currency="EUR", payee="DE89370400440532013000")
    step_up_token_for(device.user, amount="20.00", currency="EUR", payee="DE89370400440532013000")
    StepUpToken.objects.filter(amount="10.00").update(expires_at=timezone.now() - timedelta(days=31))
    abandoned = UserFactory()
    TotpAuthenticator.objects.create(
        user=abandoned, name="app", secret="00" * 20, confirmed=False, created_at=timezone.now() - timedelta(days=2)
    )
    kept_user = UserFactory()
    enrol_totp(kept_user)

    out = io.StringIO()
    call_command("purge_auth_records", stdout=out)

    assert list(DeviceChallenge.objects.values_list("challenge", flat=True)) == [fresh]
    assert list(MfaChallenge.objects.values_list("token_hash", flat=True)) == ["b" * 64]
    assert list(StepUpToken.objects.values_list("amount", flat=True)) == ["20.00"]
    assert not TotpAuthenticator.objects.filter(user=abandoned).exists()
    assert TotpAuthenticator.objects.filter(user=device.user).exists()
    assert TotpAuthenticator.objects.filter(user=kept_user).exists()
    assert "device_challenges: 1 deleted" in out.getvalue()


def test_daily_purge_task_is_scheduled_and_flushes_expired_jwt_records():
    from django.conf import settings
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    from accounts.tasks import purge_auth_records

    user = UserFactory()
    OutstandingToken.objects.create(
        user=user,
        jti="expired-jti",
        token="x",
        created_at=timezone.now() - timedelta(days=60),
        expires_at=timezone.now() - timedelta(days=30),
    )
    counts = purge_auth_records.apply().get()
    assert set(counts) >= {"device_challenges", "mfa_challenges"}
    assert not OutstandingToken.objects.filter(jti="expired-jti").exists()
    entry = settings.CELERY_BEAT_SCHEDULE["purge-auth-records-daily"]
    assert entry["task"] == "accounts.tasks.purge_auth_records"

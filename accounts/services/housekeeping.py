"""Deleting authentication leftovers nobody can use any more."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import DeviceChallenge, MfaChallenge, StepUpToken, TotpAuthenticator

# Kept a while after expiry so support can see what happened in a recent sign-in.
GRACE = timedelta(days=1)
# Step-up tokens are evidence of a customer's approval: kept longer (the audit log keeps it for good).
STEP_UP_RETENTION = timedelta(days=30)


def purge_expired_auth_records(*, now: datetime | None = None) -> dict[str, int]:
    """Delete expired challenges, mfa tokens, old step-up tokens and abandoned TOTP enrolments.

    Idempotent; only rows that can never be used again. Returns counts per kind.
    """
    now = now or timezone.now()
    with transaction.atomic():
        return {
            "device_challenges": DeviceChallenge.objects.filter(expires_at__lt=now - GRACE).delete()[0],
            "mfa_challenges": MfaChallenge.objects.filter(expires_at__lt=now - GRACE).delete()[0],
            "step_up_tokens": StepUpToken.objects.filter(expires_at__lt=now - STEP_UP_RETENTION).delete()[0],
            "unconfirmed_totp": TotpAuthenticator.objects.filter(confirmed=False, created_at__lt=now - GRACE).delete()[
                0
            ],
        }

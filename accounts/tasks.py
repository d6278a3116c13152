"""Housekeeping for authentication records (queue: maintenance)."""

from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from accounts.services.housekeeping import purge_expired_auth_records


@shared_task
def purge_auth_records() -> dict[str, int]:
    """Daily: drop challenges, mfa tokens and JWT records that can never be used again."""
    counts = purge_expired_auth_records()
    # simplejwt's own cleanup of expired outstanding/blacklisted refresh tokens.
    call_command("flushexpiredtokens", verbosity=0)
    return counts

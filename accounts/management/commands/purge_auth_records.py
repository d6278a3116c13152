"""Delete expired device challenges, mfa tokens, old step-up tokens and abandoned TOTP enrolments."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.services.housekeeping import purge_expired_auth_records


class Command(BaseCommand):
    help = "Delete authentication records that can never be used again (safe to run any time)."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = purge_expired_auth_records()
        for kind, count in counts.items():
            self.stdout.write(f"{kind}: {count} deleted")
        self.stdout.write(self.style.SUCCESS("Done. Run `manage.py flushexpiredtokens` for expired JWT records."))

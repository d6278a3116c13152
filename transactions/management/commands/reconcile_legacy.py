"""`manage.py reconcile_legacy`: compare balances on the legacy core with bankcore's.

Prints every difference; exits 1 when there is any, or when the core cannot be reached (nothing
could be compared), 0 when both sides agree. What is compared: docs/legacy.md.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from integrations.legacy.errors import LegacyError
from transactions.services.legacy_reconciliation import legacy_reconcile


class Command(BaseCommand):
    help = "Compare the balances of linked legacy accounts, open legacy requests and the legacy clearing account."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            compared, differences = legacy_reconcile()
        except (LegacyError, ValueError) as exc:  # ValueError: LEGACY_CORE_ADDRESS not configured
            raise CommandError(f"The legacy core cannot be reached: {exc}") from None
        self.stdout.write(f"{compared} linked legacy accounts compared, {len(differences)} differences")
        for difference in differences:
            self.stdout.write(f"  {difference.describe()}")
        if differences:
            raise CommandError(f"{len(differences)} differences between the legacy core and bankcore.")
        self.stdout.write(self.style.SUCCESS("The legacy core and bankcore agree."))

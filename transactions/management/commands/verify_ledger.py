from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from transactions.services.verify import ledger_verify


class Command(BaseCommand):
    help = (
        "Prove the ledger invariants: every transaction balanced, every balance equal to the sum "
        "of its entries, each currency's total zero, no balance below -overdraft. Exit 1 on any violation."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_verify()
        for line in report.summary_lines():
            self.stdout.write(line)
        if report.ok:
            self.stdout.write(self.style.SUCCESS("ledger OK"))
            return
        for violation in report.violations:
            self.stderr.write(self.style.ERROR(f"VIOLATION: {violation}"))
        self.stderr.write(self.style.ERROR(f"ledger BROKEN: {len(report.violations)} violation(s)"))
        sys.exit(1)

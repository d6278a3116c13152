"""Disaster-recovery drill: restore the newest backup into a scratch database and verify it there."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bankcore.backups.services import dr_drill_run


class Command(BaseCommand):
    help = (
        "Restore the newest good backup into a new scratch database, run verify_ledger and verify_audit_log "
        "there, compare with the manifest, report RTO and RPO, record the drill; exit 1 on any failure."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backup", default="", help="Drill with this backup id instead of the newest good one.")
        parser.add_argument("--keep", action="store_true", help="Keep the scratch database afterwards.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = dr_drill_run(backup_id=options["backup"] or None, keep=options["keep"], say=self.stdout.write)
        if result.ok:
            self.stdout.write(self.style.SUCCESS(f"DR drill OK (drill #{result.drill.pk})"))
            return
        for problem in result.drill.problems:
            self.stderr.write(self.style.ERROR(f"PROBLEM: {problem}"))
        self.stderr.write(self.style.ERROR(f"DR drill FAILED (drill #{result.drill.pk})"))
        sys.exit(1)

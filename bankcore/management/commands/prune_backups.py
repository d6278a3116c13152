"""Delete the backups the retention policy does not keep (BACKUP_KEEP_HOURLY/DAILY/WEEKLY)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.backups.services import backups_prune


class Command(BaseCommand):
    help = (
        "Keep the newest good backup of each of the last BACKUP_KEEP_HOURLY hours, BACKUP_KEEP_DAILY days and "
        "BACKUP_KEEP_WEEKLY weeks (never less than the newest); delete the other good ones and stale "
        "incomplete ones. Invalid backups are reported, not deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say what would be deleted; delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = backups_prune(dry_run=options["dry_run"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        verb = "would delete" if options["dry_run"] else "deleted"
        for info in result.deleted:
            self.stdout.write(f"{verb} {info.backup_id} ({info.status})")
        for info in result.left:
            self.stderr.write(self.style.WARNING(f"left {info.backup_id}: invalid ({info.reason}); look at it"))
        self.stdout.write(self.style.SUCCESS(f"{len(result.kept)} kept, {len(result.deleted)} {verb}"))

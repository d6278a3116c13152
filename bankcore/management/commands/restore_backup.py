"""Restore a backup into a database, after verifying its signature, checksum and encryption."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.backups.crypto import BackupError
from bankcore.backups.postgres import Target
from bankcore.backups.services import backup_restore


class Command(BaseCommand):
    help = (
        "Restore backup ID into the database at --database-url. The manifest's signature, the SHA-256 and every "
        "encrypted segment are verified before the database is touched; the restore is one transaction; the "
        "result is compared with the manifest. The live database is refused unless maintenance mode is on and "
        "--force is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup_id", metavar="ID")
        parser.add_argument("--database-url", required=True, help="postgres:// URL of the database to restore into.")
        parser.add_argument(
            "--force", action="store_true", help="Allow the live database (with maintenance mode on only)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = Target.from_url(options["database_url"])
            result = backup_restore(
                backup_id=options["backup_id"], target=target, force=options["force"], say=self.stdout.write
            )
        except (BackupError, ImproperlyConfigured) as exc:
            raise CommandError(f"Restore refused or failed: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"Backup {result.backup_id} restored into {result.target}"))

"""Write an encrypted, checksummed backup of the bank's database to the backup store."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from bankcore.backups.crypto import BackupError
from bankcore.backups.services import backup_create


class Command(BaseCommand):
    help = (
        "Back up the database: pg_dump (custom format, compressed), encrypted with AES-256-GCM "
        "(BACKUP_ENCRYPTION_KEYS), with a signed manifest, to BACKUP_DIR or BACKUP_S3_BUCKET."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = backup_create()
        except (BackupError, ImproperlyConfigured) as exc:
            raise CommandError(f"Backup failed: {exc}") from None
        manifest = result.manifest
        self.stdout.write(f"Backup {result.backup_id} written to {result.location}")
        self.stdout.write(
            f"  {result.size:,} bytes in {result.seconds:.1f}s, SHA-256 {result.sha256}, "
            f"key {manifest['encryption']['key_id']}"
        )
        self.stdout.write(
            f"  ledger checksum {manifest['ledger_checksum']} (counts and checksums: {result.facts_seconds:.1f}s)"
        )
        for table, facts in sorted(manifest["tables"].items()):
            self.stdout.write(f"  {table}: {facts['rows']} rows")
        self.stdout.write(self.style.SUCCESS(f"Backup {result.backup_id} OK"))

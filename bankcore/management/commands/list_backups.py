"""List the backups in the backup store, newest first, each manifest's signature checked."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from bankcore.backups.services import backups_list
from bankcore.backups.storage import backup_store


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class Command(BaseCommand):
    help = "List backups (id, time, size, age, status: ok / incomplete / invalid) in BACKUP_DIR or BACKUP_S3_BUCKET."

    def handle(self, *args: Any, **options: Any) -> None:
        store = backup_store()
        try:
            backups = backups_list(store=store)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        now = timezone.now()
        self.stdout.write(f"{len(backups)} backup(s) in {store.location}")
        for info in backups:
            age = human_age((now - info.created_at).total_seconds())
            line = (
                f"{info.backup_id}  {info.created_at:%Y-%m-%d %H:%M:%S}Z  {human_size(info.size):>9}  "
                f"{age:>7}  {info.status}"
            )
            if info.reason and info.status != "ok":
                line += f" ({info.reason})"
            self.stdout.write(line)

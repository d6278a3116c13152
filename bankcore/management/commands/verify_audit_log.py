"""Walk the audit hash chain; exit 1 naming the first broken row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bankcore.audit import ChainBreak, verify_chain
from bankcore.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit log's hash chain from the first row to the newest."

    def handle(self, *args: Any, **options: Any) -> None:
        total = AuditEvent.objects.count()
        self.stdout.write(f"Verifying {total} audit events...")
        checked = 0
        for step in verify_chain():
            if isinstance(step, ChainBreak):
                raise CommandError(f"Audit chain broken at event #{step.event_id}: {step.reason}")
            checked = step
            self.stdout.write(f"  {checked}/{total} verified", ending="\r")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} events verified."))

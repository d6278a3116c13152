"""Walk the audit hash chain; exit 1 naming the first broken row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.audit import ChainBreak, verify_chain
from bankcore.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit log's hash chain from the first row to the newest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=5000,
            help="Rows read per query (memory per batch; the chain is checked across batches). Default 5000.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        total = AuditEvent.objects.count()
        self.stdout.write(f"Verifying {total} audit events...")
        checked = 0
        for step in verify_chain(batch_size=batch_size):
            if isinstance(step, ChainBreak):
                raise CommandError(f"Audit chain broken at event #{step.event_id}: {step.reason}")
            checked = step
            self.stdout.write(f"  {checked}/{total} verified", ending="\r")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} events verified."))

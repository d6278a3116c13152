"""Walk the audit hash chains and compare them with the latest checkpoint; exit 1 naming the first broken row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bankcore.audit import ChainBreak, verify_chain
from bankcore.audit_checkpoint import CheckpointInvalid, checkpoint_store, latest_checkpoint
from bankcore.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chains from the first row to the newest, and that no chain is shorter "
        "than, or differs from, the latest signed checkpoint (manage.py audit_checkpoint)."
    )

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
        store = checkpoint_store()
        try:
            checkpoint = latest_checkpoint(store=store)
        except CheckpointInvalid as exc:
            raise CommandError(str(exc)) from None
        if checkpoint is None:
            self.stderr.write(
                self.style.WARNING(
                    f"WARNING: no audit checkpoint in {store.location} yet: only the chains' own consistency is "
                    "checked, a deleted tail would go unseen (run manage.py audit_checkpoint)."
                )
            )
        else:
            self.stdout.write(
                f"Checkpoint {checkpoint.name} ({checkpoint.created_at:%Y-%m-%d %H:%M:%S} UTC, signature valid, "
                f"key {checkpoint.key_id}): {len(checkpoint.chains)} chains, {checkpoint.row_count} events."
            )
        total = AuditEvent.objects.count()
        self.stdout.write(f"Verifying {total} audit events...")
        checked = 0
        for step in verify_chain(batch_size=batch_size, checkpoint=checkpoint.chains if checkpoint else ()):
            if isinstance(step, ChainBreak):
                raise CommandError(f"Audit chain broken at event #{step.event_id}: {step.reason}")
            checked = step
            self.stdout.write(f"  {checked}/{total} verified", ending="\r")
        anchored = f"; every chain extends checkpoint {checkpoint.name}" if checkpoint else ""
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} events verified{anchored}."))

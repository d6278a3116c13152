"""Anchor the audit chains outside the database: write a new signed checkpoint of their heads."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bankcore.audit_checkpoint import CheckpointError, audit_checkpoint_write, checkpoint_store


class Command(BaseCommand):
    help = (
        "Write the heads of every audit chain, HMAC-signed with AUDIT_HMAC_KEY, to AUDIT_CHECKPOINT_DIR or the "
        "S3 bucket (also a beat task). Refuses, exit 1, when a chain no longer extends the last checkpoint."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        store = checkpoint_store()
        self.stdout.write(f"Checkpointing the audit chains to {store.location}...")
        checked = 0

        def progress(rows: int) -> None:
            nonlocal checked
            checked += rows
            self.stdout.write(f"  {checked} events since the last checkpoint checked", ending="\r")

        try:
            checkpoint = audit_checkpoint_write(store=store, progress=progress)
        except CheckpointError as exc:
            raise CommandError(f"No checkpoint written: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Checkpoint {checkpoint.name} written to {checkpoint.location}: {len(checkpoint.chains)} chains, "
                f"{checkpoint.row_count} events, signed with key {checkpoint.key_id}."
            )
        )

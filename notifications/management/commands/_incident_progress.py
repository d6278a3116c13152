"""Shared by the incident commands: follow a fan-out and draw a progress bar."""

from __future__ import annotations

import time
from typing import Any

from notifications.models import IncidentUpdate


def follow_fanout(command: Any, update_id: Any, *, timeout: float, interval: float = 0.5) -> bool:
    """Print a progress bar until the fan-out of `update_id` is done; False on timeout."""
    deadline = time.monotonic() + timeout
    width = 30
    while True:
        update = IncidentUpdate.objects.get(pk=update_id)
        total = max(update.recipients_total, update.recipients_done)
        done = update.recipients_done
        filled = int(width * (done / total if total else 1))
        finished = update.fanout_status == IncidentUpdate.FanoutStatus.DONE
        sent = update.deliveries.filter(status="sent").count()
        command.stdout.write(
            f"\r  fan-out [{'#' * filled}{'.' * (width - filled)}] {done}/{total} customers, {sent} messages sent",
            ending="",
        )
        command.stdout.flush()
        if finished:
            command.stdout.write("")
            return True
        if time.monotonic() > deadline:
            command.stdout.write("")
            return False
        time.sleep(interval)


def add_follow_arguments(parser: Any) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help="Return at once instead of showing the fan-out progress bar."
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to follow the fan-out (default 600).")

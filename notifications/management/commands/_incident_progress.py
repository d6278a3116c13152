"""Shared by the incident commands: follow a fan-out and draw a progress bar."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import Count, Q

from notifications.models import Delivery, IncidentUpdate

_PENDING = [Delivery.Status.QUEUED, Delivery.Status.FAILED, Delivery.Status.SENDING]


def follow_fanout(command: Any, update_id: Any, *, timeout: float, interval: float = 1.0) -> bool:
    """Draw a progress bar until every customer has rows and every message left the queue.

    Returns False on timeout (the fan-out goes on in the workers regardless).
    """
    deadline = time.monotonic() + timeout
    width = 30
    while True:
        update = IncidentUpdate.objects.get(pk=update_id)
        counts = update.deliveries.aggregate(
            total=Count("pk"),
            pending=Count("pk", filter=Q(status__in=_PENDING)),
            sent=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            dead=Count("pk", filter=Q(status=Delivery.Status.DEAD)),
        )
        customers = max(update.recipients_total, update.recipients_done)
        expected = max(counts["total"], customers * len(update.channels)) or 1
        finished = update.fanout_status == IncidentUpdate.FanoutStatus.DONE and counts["pending"] == 0
        handled = counts["sent"] + counts["dead"]
        filled = width if finished else int(width * min(1.0, handled / expected))
        command.stdout.write(
            f"\r  [{'#' * filled}{'.' * (width - filled)}] customers {update.recipients_done}/{customers}, "
            f"messages sent {counts['sent']}, dead {counts['dead']}, waiting {counts['pending']}",
            ending="",
        )
        command.stdout.flush()
        if finished or time.monotonic() > deadline:
            command.stdout.write("")
            return finished
        time.sleep(interval)


def add_follow_arguments(parser: Any) -> None:
    parser.add_argument(
        "--no-wait", action="store_true", help="Return at once instead of showing the fan-out progress bar."
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to follow the fan-out (default 600).")

"""Putting notification tasks on the broker, by task name.

Services enqueue through here and never import notifications.tasks (which imports the
services): the broker only needs the name, and notifications.tasks registers its tasks
under these same names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from bankcore.celery import app

logger = logging.getLogger(__name__)

DELIVER_TASK = "notifications.tasks.deliver"
DELIVER_MANY_TASK = "notifications.tasks.deliver_many"
FANOUT_TASK = "notifications.tasks.fanout_incident_update"
SWEEP_TASK = "notifications.tasks.sweep_notifications"


def _send(name: str, args: list[Any], **options: Any) -> None:
    # As the task's own apply_async would send it: these tasks keep no result.
    app.send_task(name, args=args, ignore_result=True, **options)


def enqueue_safely(ids: Sequence[UUID], due: datetime | None = None) -> None:
    """Enqueue after commit; a broker hiccup must not fail the caller (the sweep recovers)."""
    try:
        deliveries_enqueue(delivery_ids=ids, eta=due)
    except Exception:
        logger.exception("could not enqueue %d deliveries; the sweep will pick them up", len(ids))


def deliveries_enqueue(*, delivery_ids: Sequence[UUID], eta: datetime | None = None, chunk: int = 100) -> int:
    """Put delivery tasks on the notifications queue (one task per `chunk` rows). Returns tasks sent."""
    options: dict[str, Any] = {"queue": settings.NOTIFICATIONS_QUEUE}
    if eta is not None and eta > timezone.now():
        options["eta"] = eta
    ids = [str(i) for i in delivery_ids]
    if len(ids) == 1:
        _send(DELIVER_TASK, [ids[0]], **options)
        return 1
    tasks = 0
    for start in range(0, len(ids), chunk):
        _send(DELIVER_MANY_TASK, [ids[start : start + chunk]], **options)
        tasks += 1
    return tasks


def enqueue_fanout(update_id: UUID, countdown: float = 0) -> None:
    try:
        _send(FANOUT_TASK, [str(update_id)], queue=settings.NOTIFICATIONS_QUEUE, countdown=countdown or None)
    except Exception:
        logger.exception("could not enqueue fan-out %s; the sweep will resume it", update_id)

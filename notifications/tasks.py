"""Celery tasks (queue `notifications`): thin, take ids, call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from notifications import services
from notifications.services.enqueue import DELIVER_MANY_TASK, DELIVER_TASK, FANOUT_TASK, SWEEP_TASK


# Named by the constants the services enqueue them by (they never import this module).
@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver(delivery_id: str) -> str:
    return services.delivery_send(delivery_id=delivery_id)


@shared_task(name=DELIVER_MANY_TASK, ignore_result=True)
def deliver_many(delivery_ids: list[str]) -> int:
    return services.deliveries_send(delivery_ids=delivery_ids)


@shared_task(name=FANOUT_TASK, ignore_result=True)
def fanout_incident_update(update_id: str) -> int:
    return services.incident_fanout_run(update_id=update_id).recipients


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_notifications() -> dict[str, int]:
    result = services.notifications_sweep()
    return {
        "requeued": result.requeued,
        "resent": result.resent,
        "given_up": result.given_up,
        "fanouts_resumed": result.fanouts_resumed,
    }


_metrics_started = False


def _start_metrics_server(**_: Any) -> None:
    """Expose the worker's counters (sent/failed/dead) when a port is configured (threads pool)."""
    global _metrics_started
    port = settings.NOTIFICATIONS_WORKER_METRICS_PORT
    if port and not _metrics_started:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")
        _metrics_started = True


worker_ready.connect(_start_metrics_server)

"""Prometheus metrics for notifications, in the default registry so /metrics exports them.

Counters count in the process that sends (the Celery worker: set
NOTIFICATIONS_WORKER_METRICS_PORT to expose its registry). Queue age and fan-out
progress are read from the database at scrape time, so every process reports the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.utils import timezone
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

SENT = Counter("bankcore_notifications_sent", "Messages accepted by the provider.", ["channel"])
FAILED = Counter("bankcore_notifications_failed", "Send attempts that failed and will be retried.", ["channel"])
DEAD = Counter("bankcore_notifications_dead", "Messages given up (dead letters).", ["channel"])
UNKNOWN_OUTCOME = Counter(
    "bankcore_notifications_unknown_outcome",
    "Sends whose worker died mid-call, by what the sweep did: resent (same idempotency key) or dead.",
    ["channel", "action"],
)
FANOUT_RECIPIENTS = Counter("bankcore_notifications_fanout_recipients", "Customers reached by incident fan-outs.")


class QueueCollector(Collector):
    def collect(self) -> Iterator[Any]:
        from django.db.models import Min

        from notifications.models import Delivery, IncidentUpdate

        age = GaugeMetricFamily(
            "bankcore_notifications_oldest_queued_age_seconds", "Age of the oldest message waiting to be sent."
        )
        progress = GaugeMetricFamily(
            "bankcore_notifications_fanout_progress_ratio",
            "Share of customers reached by each running incident fan-out.",
            labels=["incident_update"],
        )
        try:
            now = timezone.now()
            oldest = Delivery.objects.filter(status=Delivery.Status.QUEUED, next_attempt_at__lte=now).aggregate(
                oldest=Min("next_attempt_at")
            )["oldest"]
            age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
            running = IncidentUpdate.objects.filter(fanout_status=IncidentUpdate.FanoutStatus.RUNNING)
            for update in running.only("id", "recipients_done", "recipients_total")[:50]:
                progress.add_metric([str(update.id)], update.progress)
        except Exception:  # noqa: BLE001 - metrics must never take the scrape down (DB down, not migrated)
            logger.warning("notifications metrics: database unavailable")
        yield age
        yield progress

    def describe(self) -> list[Any]:
        return []  # no DB access at registration


_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(QueueCollector())
        _registered = True

"""Reads: the inbox and the public service status."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from bankcore.maintenance import maintenance_active
from notifications.models import Incident, MaintenanceWindow, Notification, Service
from notifications.services import STATUS_CACHE_KEY

logger = logging.getLogger(__name__)


def inbox(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    rows = Notification.objects.filter(user=user)
    return rows.filter(read_at__isnull=True) if unread_only else rows


def unread_count(*, user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


_STATE_BY_SEVERITY = {"critical": "major_outage", "major": "partial_outage", "minor": "degraded"}
_STATE_ORDER = ["operational", "maintenance", "degraded", "partial_outage", "major_outage"]


def service_status() -> dict[str, Any]:
    """What the app shows as a banner. Cached NOTIFICATIONS_STATUS_CACHE_SECONDS (cleared on change)."""
    try:
        cached = cache.get(STATUS_CACHE_KEY)
    except Exception:  # noqa: BLE001 - status must answer even with the cache down
        cached = None
    if cached is not None:
        return cached
    status = _build_status()
    try:
        cache.set(STATUS_CACHE_KEY, status, settings.NOTIFICATIONS_STATUS_CACHE_SECONDS)
    except Exception:  # noqa: BLE001 - answered uncached rather than not at all
        logger.warning("status cache unavailable")
    return status


def _labels(services: list[str]) -> list[str]:
    return [s for s in services if s in Service.values]


def _build_status() -> dict[str, Any]:
    now = timezone.now()
    incidents = list(
        Incident.objects.filter(resolved_at__isnull=True).order_by("-started_at").prefetch_related("updates")[:20]
    )
    windows = list(MaintenanceWindow.objects.filter(ends_at__gt=now).order_by("starts_at")[:20])
    state = "operational"
    for incident in incidents:
        candidate = _STATE_BY_SEVERITY[incident.severity]
        if _STATE_ORDER.index(candidate) > _STATE_ORDER.index(state):
            state = candidate
    # Maintenance mode (the API is read-only) counts even if its window is gone from the list.
    if state == "operational" and (any(w.starts_at <= now for w in windows) or maintenance_active()):
        state = "maintenance"
    return {
        "state": state,
        "updated_at": now.isoformat(),
        "incidents": [
            {
                "id": str(incident.id),
                "title": incident.title,
                "message": incident.message,
                "severity": incident.severity,
                "services": _labels(incident.services),
                "started_at": incident.started_at.isoformat(),
                "updates": [
                    {"kind": u.kind, "message": u.message, "created_at": u.created_at.isoformat()}
                    for u in incident.updates.all()
                ],
            }
            for incident in incidents
        ],
        "maintenance": [
            {
                "id": str(w.id),
                "title": w.title,
                "message": w.message,
                "services": _labels(w.services),
                "starts_at": w.starts_at.isoformat(),
                "ends_at": w.ends_at.isoformat(),
                "in_progress": w.starts_at <= now,
                "writes_paused": w.read_only,
                "end_unknown": w.end_unknown,
            }
            for w in windows
        ],
        "alternatives": {
            "support_phone": settings.SUPPORT_PHONE,
            "branch_hours": settings.BRANCH_HOURS,
        },
    }

"""Planned downtime: shown on /api/v1/status, optionally announced to the affected customers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from bankcore.audit import audit_record
from notifications.events import DEFAULT_CHANNELS, Event
from notifications.exceptions import InvalidNotificationRequest
from notifications.models import IncidentUpdate, MaintenanceWindow, Service
from notifications.services.enqueue import enqueue_fanout
from notifications.services.incidents import incident_audience
from notifications.services.status import status_cache_clear


def maintenance_schedule(
    *,
    title: str,
    message: str,
    starts_at: datetime,
    ends_at: datetime,
    services: Iterable[str],
    actor: Any = None,
    announce: bool = False,
) -> MaintenanceWindow:
    """Show planned downtime on /api/v1/status (atomic, audited); with `announce`, also
    tell the affected customers (everyone unless every service is mapped to an audience)
    by e-mail and push, honouring their maintenance_scheduled preferences, through the
    same resumable, exactly-once-per-customer fan-out as incidents (`window.announcements`)."""
    services = list(dict.fromkeys(services))
    errors: dict[str, list[str]] = {}
    if ends_at <= starts_at:
        errors["ends_at"] = ["Must be after starts_at."]
    if any(s not in Service.values for s in services):
        errors["services"] = [f"One or more of {', '.join(Service.values)}."]
    if not title.strip():
        errors["title"] = ["Required."]
    if announce and not message.strip():
        errors["message"] = ["Required to announce the window."]
    if errors:
        raise InvalidNotificationRequest("The maintenance window is invalid.", details=errors)
    with transaction.atomic():
        window = MaintenanceWindow.objects.create(
            title=title.strip(), message=message.strip(), starts_at=starts_at, ends_at=ends_at, services=services
        )
        details: dict[str, Any] = {"services": services}
        if announce:
            update = IncidentUpdate.objects.create(
                maintenance=window,
                kind=IncidentUpdate.Kind.PLANNED,
                message=window.message,
                channels=list(DEFAULT_CHANNELS[Event.MAINTENANCE_SCHEDULED]),
                recipients_total=incident_audience(services).count(),
            )
            transaction.on_commit(partial(enqueue_fanout, update.pk))
            details["announcement"] = str(update.pk)
        audit_record(action="maintenance.scheduled", actor=actor, target=window, details=details)
        transaction.on_commit(status_cache_clear)
    return window


# Without an expected end, a read-only window is listed this long (or until switched off):
# ends_at must be some time, and customers are told no end (window.end_unknown).
READ_ONLY_WINDOW_BOUND = timedelta(days=1)
READ_ONLY_TITLE = "Read-only maintenance"


def maintenance_mode_changed(*, state: Any, previous_active: bool, actor: Any = None, **_: Any) -> None:
    """Receiver of bankcore.signals.maintenance_changed, inside the switch's transaction.

    On: a read-only maintenance window, in progress from now (so /api/v1/status says
    `maintenance`), announced to every active customer through the incident fan-out
    (e-mail and push, per their maintenance preferences), once per switch-on; switching on
    again while on updates the window's message and end without a second announcement.
    Off: the read-only windows end now, so the banner clears.
    """
    now = timezone.now()
    open_windows = MaintenanceWindow.objects.select_for_update().filter(read_only=True, ends_at__gt=now)
    if not state.active:
        open_windows.update(ends_at=now)
        transaction.on_commit(status_cache_clear)
        return
    ends_at = state.until or now + READ_ONLY_WINDOW_BOUND
    window = open_windows.order_by("-starts_at").first() if previous_active else None
    if window is not None:
        window.message = state.message
        window.ends_at = ends_at
        window.end_unknown = state.until is None
        window.save(update_fields=["message", "ends_at", "end_unknown"])
        transaction.on_commit(status_cache_clear)
        return
    open_windows.update(ends_at=now)  # a leftover of an earlier switch-on (never two banners)
    window = maintenance_schedule(
        title=READ_ONLY_TITLE,
        message=state.message,
        starts_at=state.started_at or now,
        ends_at=ends_at,
        services=[Service.APP],
        actor=actor,
        announce=True,
    )
    window.read_only = True
    window.end_unknown = state.until is None
    window.save(update_fields=["read_only", "end_unknown"])

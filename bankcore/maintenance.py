"""Maintenance mode: the bank's read-only switch for planned work.

    maintenance_on(message=..., until=..., actor=...)   # writes answer 503, settlement pauses
    maintenance_off(actor=...)
    maintenance_active() -> bool                          # cheap: memoised per process

While it is on, the API answers requests that change anything with 503 `maintenance` and
`Retry-After` (bankcore.api.maintenance.MaintenanceMiddleware), reads keep working, the
settlement tasks do nothing (the sweep picks them up afterwards), `/api/v1/status` says
`state: "maintenance"` and customers are told (notifications, through the
`bankcore.signals.maintenance_changed` signal).

The state is one database row (MaintenanceMode), so every process of the bank (web, workers,
beat, operator commands) sees the same switch with nothing else to run. Each process memoises
it for MAINTENANCE_CACHE_SECONDS: a request costs no query, and a switch reaches every process
within that time (the process that switched sees it at once).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from bankcore.api.exceptions import BusinessRuleViolation
from bankcore.audit import audit_record
from bankcore.models import MaintenanceMode
from bankcore.signals import maintenance_changed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaintenanceState:
    active: bool
    message: str = ""
    until: datetime | None = None
    started_at: datetime | None = None
    actor_label: str = ""


OFF = MaintenanceState(active=False)


class MaintenanceInvalid(BusinessRuleViolation):
    code = "maintenance_invalid"
    default_message = "The maintenance request is invalid."


_memo_lock = threading.Lock()
_memo: tuple[float, MaintenanceState] | None = None  # (monotonic expiry, state)


def _read_state() -> MaintenanceState:
    # Always the primary: the switch must never lag behind on a replica.
    row = MaintenanceMode.objects.using("default").filter(pk=1).first()
    if row is None:  # no row yet (a flushed database): never switched on
        return OFF
    return MaintenanceState(
        active=row.active,
        message=row.message,
        until=row.until,
        started_at=row.started_at,
        actor_label=row.actor_label,
    )


def maintenance_state(*, fresh: bool = False) -> MaintenanceState:
    """The switch as this process knows it (at most MAINTENANCE_CACHE_SECONDS old), or read
    now with `fresh`. If the database cannot be read, the last known state (else off): the
    request that asked will meet the same outage on its own and answer 503 unavailable."""
    global _memo
    now = time.monotonic()
    memo = _memo
    if not fresh and memo is not None and memo[0] > now:
        return memo[1]
    try:
        state = _read_state()
    except DatabaseError:
        logger.warning("maintenance mode: could not read the switch; using the last known state")
        return memo[1] if memo is not None else OFF
    with _memo_lock:
        _memo = (now + settings.MAINTENANCE_CACHE_SECONDS, state)
    return state


def maintenance_active(*, fresh: bool = False) -> bool:
    """Whether the bank is in maintenance (read-only) mode. See maintenance_state."""
    return maintenance_state(fresh=fresh).active


def maintenance_cache_clear() -> None:
    """Forget this process's memo: the next check reads the database."""
    global _memo
    with _memo_lock:
        _memo = None


def retry_after_seconds(state: MaintenanceState | None = None) -> int:
    """Seconds a client should wait: until the expected end, else MAINTENANCE_RETRY_AFTER_SECONDS
    (also when the expected end has passed: the work overran and nobody knows by how much)."""
    state = state or maintenance_state()
    if state.until is not None:
        remaining = (state.until - timezone.now()).total_seconds()
        if remaining > 0:
            return max(1, math.ceil(remaining))
    return int(settings.MAINTENANCE_RETRY_AFTER_SECONDS)


def _actor_label(actor: Any) -> str:
    return str(getattr(actor, "email", "") or (actor if isinstance(actor, str) else "") or "")[:255]


def maintenance_on(*, message: str, until: datetime | None = None, actor: Any = None) -> MaintenanceState:
    """Switch maintenance (read-only) mode on, or update its message and expected end.

    Atomic and audited (`maintenance.on`): the row, the audit event and whatever the
    `maintenance_changed` receivers write (the status banner, the customers' announcement)
    commit together. `until` must lie in the future. Locks the switch row, so two operators
    switching at once are serialised.
    """
    message = message.strip()
    errors: dict[str, list[str]] = {}
    if not message:
        errors["message"] = ["Required: customers are told what is happening."]
    if until is not None and timezone.is_naive(until):
        errors["until"] = ["Must carry a time zone."]
    elif until is not None and until <= timezone.now():
        errors["until"] = ["Must be in the future."]
    if errors:
        raise MaintenanceInvalid(details=errors)
    now = timezone.now()
    with transaction.atomic(using="default"):
        row, _ = MaintenanceMode.objects.using("default").select_for_update().get_or_create(pk=1)
        was_active = row.active
        row.active = True
        row.message = message
        row.until = until
        row.started_at = row.started_at if was_active and row.started_at else now
        row.actor_label = _actor_label(actor)
        row.updated_at = now
        row.save()
        state = _state_of(row)
        audit_record(
            action="maintenance.on",
            actor=actor,
            target=row,
            details={"message": message, "until": until.isoformat() if until else None, "was_active": was_active},
        )
        maintenance_changed.send(sender=MaintenanceMode, state=state, previous_active=was_active, actor=actor)
        transaction.on_commit(maintenance_cache_clear, using="default")
    maintenance_cache_clear()
    logger.warning("maintenance mode on: %s (until %s)", message, until)
    return state


def maintenance_off(*, actor: Any = None) -> MaintenanceState:
    """Switch maintenance mode off: writes are accepted again and settlement resumes.

    Atomic and audited (`maintenance.off`); receivers of `maintenance_changed` clear the
    banner in the same transaction. Switching off when it is off changes nothing and
    records nothing.
    """
    now = timezone.now()
    with transaction.atomic(using="default"):
        row = MaintenanceMode.objects.using("default").select_for_update().filter(pk=1).first()
        if row is None or not row.active:
            return OFF
        started_at = row.started_at
        row.active = False
        row.until = None
        row.started_at = None
        row.actor_label = _actor_label(actor)
        row.updated_at = now
        row.save()
        state = _state_of(row)
        audit_record(
            action="maintenance.off",
            actor=actor,
            target=row,
            details={"started_at": started_at.isoformat() if started_at else None},
        )
        maintenance_changed.send(sender=MaintenanceMode, state=state, previous_active=True, actor=actor)
        transaction.on_commit(maintenance_cache_clear, using="default")
    maintenance_cache_clear()
    logger.warning("maintenance mode off")
    return state


def _state_of(row: MaintenanceMode) -> MaintenanceState:
    return MaintenanceState(
        active=row.active, message=row.message, until=row.until, started_at=row.started_at, actor_label=row.actor_label
    )

"""Which channels a customer's messages go by: event defaults, their choices, quiet hours."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction

from notifications.events import DEFAULT_CHANNELS, INCIDENT_EVENTS, MARKETING_EVENTS, SECURITY_EVENTS, Event
from notifications.exceptions import InvalidNotificationRequest
from notifications.models import NotificationPreference, QuietHours
from notifications.services.delivery import CHANNELS

INBOX_CHANNEL = "in_app"
PREFERENCE_EVENTS: tuple[Event, ...] = tuple(e for e in Event if e not in INCIDENT_EVENTS)


def channels_for(*, user: Any, event: Event) -> list[str]:
    """Outbound channels for `event`: defaults, changed by the user's choices.

    Security alerts and outage messages ignore preferences.
    """
    return channels_for_many(pairs=[(user.pk, event)])[(user.pk, event)]


def channels_for_many(*, pairs: Iterable[tuple[Any, Event]]) -> dict[tuple[Any, Event], list[str]]:
    """`channels_for` of many (user id, event) pairs, with one query for all their choices."""
    wanted = set(pairs)
    asked = {(user_id, event) for user_id, event in wanted if event not in SECURITY_EVENTS | INCIDENT_EVENTS}
    chosen: dict[tuple[Any, str], dict[str, bool]] = {}
    if asked:
        rows = NotificationPreference.objects.filter(
            user_id__in={user_id for user_id, _ in asked}, event__in={event.value for _, event in asked}
        ).values_list("user_id", "event", "channel", "enabled")
        for user_id, event_name, channel, enabled in rows:
            chosen.setdefault((user_id, event_name), {})[channel] = enabled
    result: dict[tuple[Any, Event], list[str]] = {}
    for user_id, event in wanted:
        defaults = set(DEFAULT_CHANNELS.get(event, ()))
        if (user_id, event) in asked:
            mine = chosen.get((user_id, event.value), {})
            result[(user_id, event)] = [c for c in CHANNELS if mine.get(c, c in defaults)]
        else:
            result[(user_id, event)] = [c for c in CHANNELS if c in defaults]
    return result


def due_time(*, user: Any, event: Event, now: datetime) -> datetime:
    """Now, except marketing-class messages during the user's quiet hours: their end."""
    return due_times(pairs=[(user.pk, event)], now=now)[(user.pk, event)]


def due_times(*, pairs: Iterable[tuple[Any, Event]], now: datetime) -> dict[tuple[Any, Event], datetime]:
    """`due_time` of many (user id, event) pairs: one query, and only if a marketing message is among them."""
    wanted = set(pairs)
    quiet_users = {user_id for user_id, event in wanted if event in MARKETING_EVENTS}
    quiet = {q.user_id: q for q in QuietHours.objects.filter(user_id__in=quiet_users)} if quiet_users else {}
    result: dict[tuple[Any, Event], datetime] = {}
    for user_id, event in wanted:
        hours = quiet.get(user_id) if event in MARKETING_EVENTS else None
        result[(user_id, event)] = (quiet_hours_end(quiet=hours, now=now) or now) if hours is not None else now
    return result


def quiet_hours_end(*, quiet: QuietHours, now: datetime) -> datetime | None:
    """When the quiet period containing `now` ends, or None if `now` is not quiet."""
    try:
        tz = ZoneInfo(quiet.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    t = local.time()
    start, end = quiet.start, quiet.end
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if not inside:
        return None
    end_at = datetime.combine(local.date(), end, tzinfo=tz)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at


def preferences_get(*, user: Any) -> dict[str, Any]:
    """`{event: {channel: bool}}` for every event, plus `quiet_hours` (or null)."""
    chosen: dict[tuple[str, str], bool] = {
        (event, channel): enabled
        for event, channel, enabled in NotificationPreference.objects.filter(user=user).values_list(
            "event", "channel", "enabled"
        )
    }
    result: dict[str, Any] = {}
    for event in PREFERENCE_EVENTS:
        defaults = DEFAULT_CHANNELS.get(event, ())
        locked = event in SECURITY_EVENTS
        result[event.value] = {INBOX_CHANNEL: True} | {
            channel: channel in defaults if locked else chosen.get((event.value, channel), channel in defaults)
            for channel in CHANNELS
        }
    quiet = QuietHours.objects.filter(user=user).first()
    result["quiet_hours"] = (
        None
        if quiet is None
        else {"start": quiet.start.strftime("%H:%M"), "end": quiet.end.strftime("%H:%M"), "timezone": quiet.timezone}
    )
    return result


def preferences_update(*, user: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `{event: {channel: bool}, "quiet_hours": {...}|null}` all-or-nothing.

    Security alerts cannot be turned off (nor the in-app inbox); any invalid part
    raises 400 with per-field details and changes nothing.
    """
    errors: dict[str, Any] = {}
    rows: list[tuple[str, str, bool]] = []
    quiet: dict[str, Any] | bool | None = False  # False: not given
    if not isinstance(changes, dict):
        raise InvalidNotificationRequest(
            "The request is invalid.", details={"non_field_errors": ["Expected an object."]}
        )
    known = {e.value for e in PREFERENCE_EVENTS}
    for name, value in changes.items():
        if name == "quiet_hours":
            quiet, problem = _parse_quiet_hours(value)
            if problem:
                errors[name] = [problem]
            continue
        if name not in known:
            is_event = name in {e.value for e in Event}
            errors[name] = ["Outage messages cannot be turned off." if is_event else "Unknown event."]
            continue
        if not isinstance(value, dict) or not value:
            errors[name] = ["Expected an object of channel: true/false."]
            continue
        for channel, enabled in value.items():
            if channel not in (*CHANNELS, INBOX_CHANNEL):
                errors.setdefault(name, []).append(f"Unknown channel {channel!r}.")
            elif not isinstance(enabled, bool):
                errors.setdefault(name, []).append(f"{channel}: must be true or false.")
            elif channel == INBOX_CHANNEL:
                if not enabled:
                    errors.setdefault(name, []).append("The in-app inbox cannot be turned off.")
            elif Event(name) in SECURITY_EVENTS:
                if not enabled:
                    errors.setdefault(name, []).append("Security alerts cannot be turned off.")
            else:
                rows.append((name, channel, enabled))
    if errors:
        raise InvalidNotificationRequest("The request is invalid.", details=errors)
    with transaction.atomic():
        for event, channel, enabled in rows:
            NotificationPreference.objects.update_or_create(
                user=user, event=event, channel=channel, defaults={"enabled": enabled}
            )
        if quiet is None:
            QuietHours.objects.filter(user=user).delete()
        elif isinstance(quiet, dict):
            QuietHours.objects.update_or_create(user=user, defaults=quiet)
    return preferences_get(user=user)


def _parse_quiet_hours(value: Any) -> tuple[dict[str, Any] | None, str]:
    if value is None:
        return None, ""
    if not isinstance(value, dict):
        return None, "Expected {start: 'HH:MM', end: 'HH:MM', timezone?} or null."
    try:
        start = time.fromisoformat(str(value["start"]))
        end = time.fromisoformat(str(value["end"]))
    except (KeyError, ValueError):
        return None, "start and end must be times like '22:00'."
    tz = str(value.get("timezone") or "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None, f"Unknown time zone {tz!r}."
    if start == end:
        return None, "start and end must differ."
    return {"start": start, "end": end, "timezone": tz}, ""

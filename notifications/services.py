"""The one entry point the rest of bankcore uses to tell people things, and the
machinery behind it (delivery, retries, preferences, inbox, incidents).

    notify(user=..., event=Event.TRANSFER_SENT, context={...})

Call it inside the business transaction: the inbox row and one delivery row per
channel exist if and only if that transaction commits. Delivery tasks are enqueued
on commit; a periodic sweep re-enqueues anything a crash left behind.
"""

from __future__ import annotations

import logging
import secrets
import time as monotonic_clock
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from bankcore.audit import audit_record
from bankcore.ids import uuid7
from notifications import metrics
from notifications.events import (
    DEFAULT_CHANNELS,
    INCIDENT_EVENTS,
    MARKETING_EVENTS,
    SECURITY_EVENTS,
    Event,
)
from notifications.exceptions import (
    IncidentAlreadyResolved,
    IncidentNotFound,
    InvalidNotificationRequest,
    NotificationNotFound,
)
from notifications.models import (
    Channel,
    Delivery,
    Incident,
    IncidentUpdate,
    MaintenanceWindow,
    Notification,
    NotificationPreference,
    QuietHours,
    Service,
)
from notifications.providers import PermanentProviderError, TransientProviderError, provider_for
from notifications.push_tokens import users_with_push
from notifications.rendering import Rendered, render_event, safe_context, sms_segments

logger = logging.getLogger(__name__)
_random = secrets.SystemRandom()

CHANNELS: tuple[str, ...] = tuple(Channel.values)
STATUS_CACHE_KEY = "notifications:status:v1"


# --- notify ---------------------------------------------------------------------------
def notify(
    *, user: Any, event: Event | str, context: dict[str, Any] | None = None, key: str | None = None
) -> list[Notification]:
    """Record `event` for `user`: an inbox row plus one delivery row per chosen channel.

    Atomic with the caller's transaction (its own one outside any). Channels come from the
    event's defaults and the user's preferences; security alerts always go out on every
    channel. `key` (optional) names the business event, e.g. a transfer id: the same
    (event, key, user, channel) is recorded, and so sent, at most once (the inbox row is
    written per call). Returns the inbox rows.
    """
    event = Event(event)
    shown = safe_context(context or {})
    channels = channels_for(user=user, event=event)
    rendered = render_event(event.value, shown, channels=channels)
    now = timezone.now()
    # No savepoint of our own: inside the caller's transaction an error here fails that
    # transaction anyway, and two fewer round trips matter on every transfer.
    with transaction.atomic(savepoint=False):
        inbox = Notification.objects.create(
            user=user, event=event.value, title=rendered.title, body=rendered.body, context=shown
        )
        event_key = f"{event.value}:{key or inbox.id}"
        due = _due_time(user=user, event=event, now=now)
        rows = [
            row
            for channel in channels
            if (
                row := _delivery_row(
                    user=user, event=event.value, channel=channel, rendered=rendered, key=event_key, due=due, now=now
                )
            )
            is not None
        ]
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        ids = [row.id for row in rows]
        if ids:
            _publish_on_commit(ids, due)
    return [inbox]


def send_contact_code(*, user: Any, channel: str, address: str, code: str, key: str) -> None:
    """Send the code that proves `address` (a new e-mail or phone of `user`, not yet on the
    record) on `channel` ("email" or "sms"), once per `key`.

    No inbox row: the code must reach only that address, not whoever holds a session.
    Atomic with the caller's transaction; sent after COMMIT like every delivery.
    """
    event = Event.CONTACT_VERIFICATION
    rendered = render_event(event.value, {"code": code}, channels=[channel])
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        row = _delivery_row(
            user=user,
            event=event.value,
            channel=channel,
            rendered=rendered,
            key=f"{event.value}:{key}",
            due=now,
            now=now,
            recipient=address,
        )
        if row is None:
            raise InvalidNotificationRequest(f"A contact code cannot go by {channel}.")
        Delivery.objects.bulk_create([row], ignore_conflicts=True)
        _publish_on_commit([row.id], now)


class _PublishAfterCommit:
    """One on-commit publish for every notify() of a transaction (a transfer notifies two
    customers: one broker round trip, not two)."""

    def __init__(self, ids: list[UUID]) -> None:
        self.ids = ids

    def __call__(self) -> None:
        _enqueue_safely(self.ids)


def _publish_on_commit(ids: list[UUID], due: datetime) -> None:
    if due > timezone.now():  # held back (quiet hours): its own task with an ETA
        transaction.on_commit(partial(_enqueue_safely, ids, due))
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        # Join the publish already registered in this transaction. Ids from a savepoint that
        # later rolls back are published too and found missing by the worker: harmless.
        for _savepoints, callback, *_ in connection.run_on_commit:
            if isinstance(callback, _PublishAfterCommit):
                callback.ids.extend(ids)
                return
    transaction.on_commit(_PublishAfterCommit(list(ids)))


def _delivery_row(
    *,
    user: Any,
    event: str,
    channel: str,
    rendered: Rendered,
    key: str,
    due: datetime,
    now: datetime,
    incident_update: IncidentUpdate | None = None,
    recipient: str = "",
) -> Delivery | None:
    """The outbox row for one channel, addressed now: to `recipient` if given, else to the
    user's alert contact (the notification e-mail / phone if set, else the login one)."""
    if channel == Channel.EMAIL:
        recipient = recipient or user.notification_email or user.email
        if not recipient:
            return None
        subject, body, html, details = rendered.title, rendered.body, rendered.html, {}
    elif channel == Channel.SMS:
        recipient = recipient or user.notification_phone or user.phone
        if not recipient:
            return None
        subject, body, html = "", rendered.sms, ""
        details = {"segments": sms_segments(rendered.sms)}
    else:
        recipient, subject, body, html, details = "", rendered.title, rendered.push_body, "", {}
    return Delivery(
        id=uuid7(),
        delivery_key=f"{key}:{user.pk}:{channel}",
        user_id=user.pk,
        event=event,
        channel=channel,
        recipient=recipient,
        subject=subject,
        body=body,
        html_body=html,
        details=details,
        next_attempt_at=due,
        created_at=now,
        updated_at=now,
        incident_update=incident_update,
    )


def channels_for(*, user: Any, event: Event) -> list[str]:
    """Outbound channels for `event`: defaults, changed by the user's choices.

    Security alerts and outage messages ignore preferences.
    """
    defaults = set(DEFAULT_CHANNELS.get(event, ()))
    if event in SECURITY_EVENTS or event in INCIDENT_EVENTS:
        return [c for c in CHANNELS if c in defaults]
    chosen = dict(NotificationPreference.objects.filter(user=user, event=event.value).values_list("channel", "enabled"))
    return [c for c in CHANNELS if chosen.get(c, c in defaults)]


def _due_time(*, user: Any, event: Event, now: datetime) -> datetime:
    """Now, except marketing-class messages during the user's quiet hours: their end."""
    if event not in MARKETING_EVENTS:
        return now
    quiet = QuietHours.objects.filter(user=user).first()
    if quiet is None:
        return now
    return quiet_hours_end(quiet=quiet, now=now) or now


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


# --- delivery -------------------------------------------------------------------------
def _enqueue_safely(ids: Sequence[UUID], due: datetime | None = None) -> None:
    """Enqueue after commit; a broker hiccup must not fail the caller (the sweep recovers)."""
    try:
        deliveries_enqueue(delivery_ids=ids, eta=due)
    except Exception:
        logger.exception("could not enqueue %d deliveries; the sweep will pick them up", len(ids))


def deliveries_enqueue(*, delivery_ids: Sequence[UUID], eta: datetime | None = None, chunk: int = 100) -> int:
    """Put delivery tasks on the notifications queue (one task per `chunk` rows). Returns tasks sent."""
    from notifications.tasks import deliver, deliver_many

    options: dict[str, Any] = {"queue": settings.NOTIFICATIONS_QUEUE}
    if eta is not None and eta > timezone.now():
        options["eta"] = eta
    ids = [str(i) for i in delivery_ids]
    if len(ids) == 1:
        deliver.apply_async(args=[ids[0]], **options)
        return 1
    tasks = 0
    for start in range(0, len(ids), chunk):
        deliver_many.apply_async(args=[ids[start : start + chunk]], **options)
        tasks += 1
    return tasks


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times U(0.5, 1)."""
    exponential = settings.NOTIFICATIONS_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    ceiling = min(settings.NOTIFICATIONS_RETRY_MAX_SECONDS, exponential)
    return ceiling * _random.uniform(0.5, 1.0)


def delivery_send(*, delivery_id: UUID | str) -> str:
    """Send one delivery if it is due; returns the outcome (sent/failed/dead/skipped).

    The row is claimed by one conditional UPDATE (queued/failed -> sending), so a task
    that runs twice, or two workers, send it once. A worker lost mid-send leaves the row
    `sending`; when its lease runs out the sweep either re-sends it with the same
    idempotency key (channels in NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME: the provider or
    device dedupes, so exactly once) or dead-letters it as outcome unknown (e-mail by
    default: at most once). The outcome is recorded only by the claim that sent it.
    """
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED], next_attempt_at__lte=now
    ).update(
        status=Delivery.Status.SENDING,
        attempts=F("attempts") + 1,
        lease_until=now + timedelta(seconds=settings.NOTIFICATIONS_SEND_LEASE_SECONDS),
        updated_at=now,
    )
    if not claimed:
        return "skipped"
    delivery = Delivery.objects.get(pk=delivery_id)
    try:
        message_id = provider_for(delivery.channel).send(delivery)
    except PermanentProviderError as exc:
        return _finish(delivery, Delivery.Status.DEAD, error=str(exc))
    except TransientProviderError as exc:
        return _fail(delivery, str(exc))
    except Exception as exc:
        logger.exception("provider crashed for delivery %s", delivery.pk)
        return _fail(delivery, f"unexpected error: {exc!r}")
    return _finish(delivery, Delivery.Status.SENT, message_id=message_id)


def deliveries_send(*, delivery_ids: Sequence[UUID | str], budget_seconds: float = 60.0) -> int:
    """Send a chunk of deliveries one by one; returns how many were sent.

    Stops after `budget_seconds` (slow or timing-out providers) and enqueues the rest as
    a new task, so a chunk never runs into the worker's time limit mid-send.
    """
    deadline = monotonic_clock.monotonic() + budget_seconds
    sent = 0
    for position, delivery_id in enumerate(delivery_ids):
        if monotonic_clock.monotonic() > deadline:
            _enqueue_safely([UUID(str(i)) for i in delivery_ids[position:]])
            break
        sent += delivery_send(delivery_id=delivery_id) == Delivery.Status.SENT
    return sent


def _fail(delivery: Delivery, error: str) -> str:
    if delivery.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        return _finish(delivery, Delivery.Status.DEAD, error=f"gave up after {delivery.attempts} attempts: {error}")
    due = timezone.now() + timedelta(seconds=retry_delay(delivery.attempts))
    outcome = _finish(delivery, Delivery.Status.FAILED, error=error, next_attempt_at=due)
    _enqueue_safely([delivery.pk], due)
    return outcome


def _finish(
    delivery: Delivery,
    status: str,
    *,
    error: str = "",
    message_id: str = "",
    next_attempt_at: datetime | None = None,
) -> str:
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "updated_at": now, "lease_until": None, "details": delivery.details}
    if error:
        changes["last_error"] = error[:2000]
    if status == Delivery.Status.SENT:
        changes.update(sent_at=now, provider_message_id=message_id[:200])
    if next_attempt_at is not None:
        changes["next_attempt_at"] = next_attempt_at
    # `attempts` identifies this claim: a worker that outlived its lease (the sweep already
    # handed the row to another send) must not overwrite that send's outcome.
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING, attempts=delivery.attempts).update(
        **changes
    )
    counters: dict[str, Any] = {Delivery.Status.SENT: metrics.SENT, Delivery.Status.FAILED: metrics.FAILED}
    counter = counters.get(status, metrics.DEAD)
    counter.labels(channel=delivery.channel).inc()
    return str(status)


def delivery_resend(*, delivery_id: UUID | str, actor: Any = None) -> Delivery:
    """Put a dead (or failed) delivery back in the queue with fresh attempts (staff action, audited)."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status not in (Delivery.Status.DEAD, Delivery.Status.FAILED):
            raise InvalidNotificationRequest(
                "Only dead or failed deliveries can be resent.", details={"status": [delivery.status]}
            )
        delivery.status = Delivery.Status.QUEUED
        delivery.attempts = 0
        delivery.next_attempt_at = delivery.updated_at = timezone.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
        audit_record(action="notifications.delivery_resent", actor=actor, target=delivery)
        transaction.on_commit(partial(_enqueue_safely, [delivery.pk]))
    return delivery


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    given_up: int
    fanouts_resumed: int
    resent: int = 0  # in-doubt sends handed back for a resend with the same idempotency key


def notifications_sweep(*, stuck_after: float | None = None, batch: int = 10_000) -> SweepResult:
    """Recover from crashes (run by beat every minute; idempotent, safe to run concurrently).

    - queued/failed rows overdue by `stuck_after` seconds are enqueued again (the claim
      in `delivery_send` makes a duplicate task harmless);
    - rows left `sending` past their lease (worker died mid-send, outcome unknown) are
      re-sent with the same idempotency key on channels where the provider dedupes
      (NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME, SMS and push by default), and become dead
      letters on the others (e-mail by default, at most once) or after max attempts;
    - incident fan-outs with no progress for `stuck_after` seconds are resumed.
    """
    stuck_after = settings.NOTIFICATIONS_STUCK_AFTER_SECONDS if stuck_after is None else stuck_after
    now = timezone.now()
    resent = _resend_unknown_outcomes(now=now, batch=batch)
    given_up = 0
    for channel in CHANNELS:
        dead = Delivery.objects.filter(status=Delivery.Status.SENDING, lease_until__lt=now, channel=channel).update(
            status=Delivery.Status.DEAD,
            lease_until=None,
            updated_at=now,
            last_error=UNKNOWN_OUTCOME_DEAD,
        )
        if dead:
            metrics.UNKNOWN_OUTCOME.labels(channel=channel, action="dead").inc(dead)
            metrics.DEAD.labels(channel=channel).inc(dead)
        given_up += dead
    if given_up:
        logger.warning("notifications sweep: %d in-doubt deliveries dead-lettered", given_up)
    # `updated_at` is bumped on each re-enqueue, so a long backlog that is merely waiting
    # in the broker is re-enqueued at most once per `stuck_after`, not on every sweep.
    cutoff = now - timedelta(seconds=stuck_after)
    overdue = (
        Delivery.objects.filter(
            status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED],
            next_attempt_at__lte=cutoff,
            updated_at__lte=cutoff,
        )
        .exclude(pk__in=resent)
        .order_by("next_attempt_at")
    )
    ids = list(overdue.values_list("pk", flat=True)[:batch])
    if ids:
        Delivery.objects.filter(pk__in=ids, status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED]).update(
            updated_at=now
        )
        deliveries_enqueue(delivery_ids=ids)
    stalled = list(
        IncidentUpdate.objects.filter(
            fanout_status=IncidentUpdate.FanoutStatus.RUNNING,
            fanout_heartbeat_at__lte=now - timedelta(seconds=stuck_after),
        ).values_list("pk", flat=True)
    )
    for update_id in stalled:
        _enqueue_fanout(update_id)
    return SweepResult(requeued=len(ids), given_up=given_up, fanouts_resumed=len(stalled), resent=len(resent))


UNKNOWN_OUTCOME_DEAD = (
    "worker lost while sending; outcome unknown, not resent automatically (this channel has no "
    "idempotency: at most once). Resend from the admin if the customer did not receive it."
)
UNKNOWN_OUTCOME_RESENT = (
    "worker lost while sending; outcome unknown, re-sent with the same idempotency key (the provider dedupes)"
)


def _resend_unknown_outcomes(*, now: datetime, batch: int) -> list[UUID]:
    """Hand in-doubt sends on idempotent channels back to the queue, due now (see the sweep).

    Rows are locked with SKIP LOCKED, so concurrent sweeps split the work; the resend
    reuses the row, hence its delivery key, Idempotency-Key and message key.
    """
    channels = [c for c, on in settings.NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME.items() if on]
    if not channels:
        return []
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                status=Delivery.Status.SENDING,
                lease_until__lt=now,
                channel__in=channels,
                attempts__lt=settings.NOTIFICATIONS_MAX_ATTEMPTS,
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", "channel")[:batch]
        )
        ids = [pk for pk, _ in rows]
        if ids:
            Delivery.objects.filter(pk__in=ids).update(
                status=Delivery.Status.FAILED,
                lease_until=None,
                next_attempt_at=now,
                updated_at=now,
                unknown_outcome_resends=F("unknown_outcome_resends") + 1,
                last_error=UNKNOWN_OUTCOME_RESENT,
            )
    if ids:
        logger.warning("notifications sweep: %d in-doubt deliveries re-sent with their idempotency key", len(ids))
        for channel, count in Counter(channel for _, channel in rows).items():
            metrics.UNKNOWN_OUTCOME.labels(channel=channel, action="resent").inc(count)
        _enqueue_safely(ids)
    return ids


# --- inbox ------------------------------------------------------------------------------
def notification_mark_read(*, user: Any, notification_id: UUID | str) -> Notification:
    """Mark one of `user`'s inbox rows read (idempotent). Another customer's id: not found."""
    notification = Notification.objects.filter(pk=notification_id, user=user).first()
    if notification is None:
        raise NotificationNotFound()
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=timezone.now())
    return notification


def notifications_mark_all_read(*, user: Any) -> int:
    """Mark every unread inbox row of `user` read; returns how many changed."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# --- preferences ------------------------------------------------------------------------
INBOX_CHANNEL = "in_app"
PREFERENCE_EVENTS: tuple[Event, ...] = tuple(e for e in Event if e not in INCIDENT_EVENTS)


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


# --- incidents --------------------------------------------------------------------------
# Channels of outage messages by severity (plus the status banner in the app for all).
INCIDENT_CHANNELS: dict[str, tuple[str, ...]] = {
    Incident.Severity.MINOR: (Channel.EMAIL,),
    Incident.Severity.MAJOR: (Channel.EMAIL, Channel.SMS),
    Incident.Severity.CRITICAL: (Channel.EMAIL, Channel.SMS),
}


def incident_audience(services: Iterable[str] = ()) -> Any:
    """Customers an outage message goes to: active customers (staff excluded).

    When every affected service is mapped in NOTIFICATIONS_SERVICE_AUDIENCES (service ->
    dotted path of a callable returning a queryset of user ids, e.g. the customers with
    legacy accounts), only those customers; otherwise everyone.
    """
    customers = get_user_model().objects.filter(is_active=True, is_staff=False)
    mapping: dict[str, str] = settings.NOTIFICATIONS_SERVICE_AUDIENCES
    services = list(services)
    if not services or any(service not in mapping for service in services):
        return customers
    affected = Q()
    for service in services:
        affected |= Q(pk__in=import_string(mapping[service])())
    return customers.filter(affected)


def incident_declare(
    *, title: str, message: str, severity: str, services: Iterable[str], actor: Any = None
) -> Incident:
    """Open an incident, show it on /api/v1/status and fan the message out to customers.

    Atomic: the incident, its first update and the audit row commit together; the
    fan-out starts on commit (and the sweep restarts it if that enqueue is lost).
    """
    services = list(dict.fromkeys(services))
    errors: dict[str, list[str]] = {}
    if severity not in Incident.Severity.values:
        errors["severity"] = [f"One of {', '.join(Incident.Severity.values)}."]
    unknown = [s for s in services if s not in Service.values]
    if unknown or not services:
        errors["services"] = [f"One or more of {', '.join(Service.values)}."]
    if not message.strip():
        errors["message"] = ["Required."]
    if errors:
        raise InvalidNotificationRequest("The incident is invalid.", details=errors)
    title = title.strip() or f"{', '.join(services).replace('_', ' ').capitalize()} disruption"
    with transaction.atomic():
        incident = Incident.objects.create(
            title=title[:200],
            message=message.strip(),
            severity=severity,
            services=services,
            declared_by=str(getattr(actor, "email", "") or actor or ""),
        )
        update = _post_update(incident=incident, kind=IncidentUpdate.Kind.DECLARED, message=message.strip())
        audit_record(
            action="incident.declared",
            actor=actor,
            target=incident,
            details={"severity": severity, "services": services, "update": str(update.pk)},
        )
    return incident


def incident_post_update(*, incident_id: UUID | str, message: str, actor: Any = None) -> IncidentUpdate:
    """Post a status update on an active incident and fan it out (one message per customer)."""
    if not message.strip():
        raise InvalidNotificationRequest("The update is invalid.", details={"message": ["Required."]})
    with transaction.atomic():
        incident = _locked_incident(incident_id)
        if incident.resolved_at is not None:
            raise IncidentAlreadyResolved()
        incident.message = message.strip()
        incident.save(update_fields=["message"])
        update = _post_update(incident=incident, kind=IncidentUpdate.Kind.UPDATED, message=incident.message)
        audit_record(action="incident.updated", actor=actor, target=incident, details={"update": str(update.pk)})
    return update


def incident_resolve(*, incident_id: UUID | str, message: str = "", actor: Any = None) -> IncidentUpdate:
    """Close an incident and send the short all-clear on the same channels."""
    with transaction.atomic():
        incident = _locked_incident(incident_id)
        if incident.resolved_at is not None:
            raise IncidentAlreadyResolved()
        incident.resolved_at = timezone.now()
        if message.strip():
            incident.message = message.strip()
        incident.save(update_fields=["resolved_at", "message"])
        update = _post_update(incident=incident, kind=IncidentUpdate.Kind.RESOLVED, message=message.strip())
        audit_record(action="incident.resolved", actor=actor, target=incident, details={"update": str(update.pk)})
    return update


def _locked_incident(incident_id: UUID | str) -> Incident:
    try:
        return Incident.objects.select_for_update().get(pk=incident_id)
    except (Incident.DoesNotExist, ValueError) as exc:
        raise IncidentNotFound() from exc


def _post_update(*, incident: Incident, kind: str, message: str) -> IncidentUpdate:
    update = IncidentUpdate.objects.create(
        incident=incident,
        kind=kind,
        message=message,
        channels=list(INCIDENT_CHANNELS[incident.severity]),
        recipients_total=incident_audience(incident.services).count(),
    )
    transaction.on_commit(partial(_enqueue_fanout, update.pk))
    transaction.on_commit(status_cache_clear)
    return update


def _fanout_subject(update: IncidentUpdate) -> tuple[Event, dict[str, Any], list[str]]:
    """What an update announces: its event, template context and affected services."""
    window, incident = update.maintenance, update.incident
    if window is not None:
        return (
            Event.MAINTENANCE_SCHEDULED,
            {
                "maintenance_title": window.title,
                "message": update.message,
                "starts_at": f"{window.starts_at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M} UTC",
                "ends_at": f"{window.ends_at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M} UTC",
            },
            list(window.services),
        )
    if incident is None:  # the check constraint makes every update one or the other
        raise ValueError(f"update {update.pk} has neither an incident nor a maintenance window")
    context = {
        "incident_title": incident.title,
        "message": update.message,
        "services": [Service(s).label for s in incident.services if s in Service.values],
    }
    return _KIND_EVENT[IncidentUpdate.Kind(update.kind)], context, list(incident.services)


def _channels_by_customer(*, event: Event, channels: Sequence[str], customer_ids: list[Any]) -> dict[Any, list[str]]:
    """Per customer of a batch: the update's channels, minus what preferences turn off.

    Outage messages ignore preferences. Others (maintenance) honour each customer's
    choices (one query per batch) and go by push only to customers with a device that
    can receive it (no dead letter per customer without the app).
    """
    if event in INCIDENT_EVENTS:
        return {pk: list(channels) for pk in customer_ids}
    chosen = {
        (user_id, channel): enabled
        for user_id, channel, enabled in NotificationPreference.objects.filter(
            user_id__in=customer_ids, event=event.value
        ).values_list("user_id", "channel", "enabled")
    }
    with_push = users_with_push(user_ids=customer_ids) if Channel.PUSH in channels else set()
    defaults = set(DEFAULT_CHANNELS.get(event, ()))
    return {
        pk: [c for c in channels if chosen.get((pk, c), c in defaults) and (c != Channel.PUSH or pk in with_push)]
        for pk in customer_ids
    }


def _enqueue_fanout(update_id: UUID, countdown: float = 0) -> None:
    from notifications.tasks import fanout_incident_update

    try:
        fanout_incident_update.apply_async(
            args=[str(update_id)], queue=settings.NOTIFICATIONS_QUEUE, countdown=countdown or None
        )
    except Exception:
        logger.exception("could not enqueue fan-out %s; the sweep will resume it", update_id)


_KIND_EVENT = {
    IncidentUpdate.Kind.DECLARED: Event.INCIDENT_DECLARED,
    IncidentUpdate.Kind.UPDATED: Event.INCIDENT_UPDATED,
    IncidentUpdate.Kind.RESOLVED: Event.INCIDENT_RESOLVED,
}


@dataclass(frozen=True)
class FanoutStep:
    recipients: int
    messages: int
    done: bool


def incident_fanout_step(*, update_id: UUID | str, batch_size: int | None = None, enqueue: bool = True) -> FanoutStep:
    """Write the delivery rows for the next batch of customers and enqueue them.

    Resumable and exactly-once per (update, customer, channel): the update row is locked,
    its keyset cursor says who already has rows, and the rows and the new cursor commit
    together; the unique delivery key refuses a second copy even so. Memory is one batch.
    """
    batch_size = batch_size or settings.NOTIFICATIONS_FANOUT_BATCH_SIZE
    with transaction.atomic():
        update = (
            IncidentUpdate.objects.select_for_update(of=("self",))
            .select_related("incident", "maintenance")
            .get(pk=update_id)
        )
        if update.fanout_status == IncidentUpdate.FanoutStatus.DONE:
            return FanoutStep(0, 0, True)
        event, context, affected = _fanout_subject(update)
        rendered = render_event(event.value, safe_context(context))
        customers = incident_audience(affected).order_by("pk")
        if update.fanout_cursor is not None:
            customers = customers.filter(pk__gt=update.fanout_cursor)
        batch = [
            _Recipient(*row)
            for row in customers.values_list("pk", "email", "phone", "notification_email", "notification_phone")[
                :batch_size
            ]
        ]
        channels_of = _channels_by_customer(event=event, channels=update.channels, customer_ids=[c.pk for c in batch])
        now = timezone.now()
        key = f"incident:{update.pk}" if update.incident_id else f"maintenance:{update.pk}"
        rows = [
            row
            for customer in batch
            for channel in channels_of[customer.pk]
            if (
                row := _delivery_row(
                    user=customer,
                    event=event.value,
                    channel=channel,
                    rendered=rendered,
                    key=key,
                    due=now,
                    now=now,
                    incident_update=update,
                )
            )
            is not None
        ]
        Delivery.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        done = len(batch) < batch_size
        if batch:
            update.fanout_cursor = batch[-1].pk
        update.recipients_done = F("recipients_done") + len(batch)
        update.fanout_heartbeat_at = now
        if done:
            update.fanout_status = IncidentUpdate.FanoutStatus.DONE
            update.fanout_finished_at = now
        update.save(
            update_fields=[
                "fanout_cursor",
                "recipients_done",
                "fanout_heartbeat_at",
                "fanout_status",
                "fanout_finished_at",
            ]
        )
        if enqueue and rows:
            transaction.on_commit(partial(_enqueue_safely, [row.id for row in rows]))
    metrics.FANOUT_RECIPIENTS.inc(len(batch))
    return FanoutStep(recipients=len(batch), messages=len(rows), done=done)


class _Recipient(NamedTuple):
    pk: UUID
    email: str
    phone: str
    notification_email: str
    notification_phone: str


def incident_fanout_run(*, update_id: UUID | str) -> FanoutStep:
    """One step, then schedule the next at the configured send rate (what the Celery task runs)."""
    step = incident_fanout_step(update_id=update_id)
    if not step.done:
        rate = settings.NOTIFICATIONS_FANOUT_RATE
        _enqueue_fanout(UUID(str(update_id)), countdown=step.messages / rate if rate > 0 else 0)
    return step


# --- maintenance and status ---------------------------------------------------------------
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
            transaction.on_commit(partial(_enqueue_fanout, update.pk))
            details["announcement"] = str(update.pk)
        audit_record(action="maintenance.scheduled", actor=actor, target=window, details=details)
        transaction.on_commit(status_cache_clear)
    return window


def status_cache_clear() -> None:
    try:
        cache.delete(STATUS_CACHE_KEY)
    except Exception:  # noqa: BLE001 - a cache outage only delays the banner by the TTL
        logger.warning("could not clear the status cache")

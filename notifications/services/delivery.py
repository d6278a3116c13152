"""The outbox: delivery rows, sending them through the providers, retries and resends.

A row is sent at most once per claim (`delivery_send`); crashes are recovered by
notifications.services.sweep.
"""

from __future__ import annotations

import json
import logging
import secrets
import time as monotonic_clock
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bankcore.audit import audit_record
from bankcore.ids import uuid7
from notifications import metrics
from notifications.exceptions import InvalidNotificationRequest
from notifications.models import Channel, Delivery, IncidentUpdate
from notifications.providers import PermanentProviderError, TransientProviderError, provider_for
from notifications.rendering import Rendered, sms_segments
from notifications.services.enqueue import enqueue_safely

logger = logging.getLogger(__name__)
_random = secrets.SystemRandom()

CHANNELS: tuple[str, ...] = tuple(Channel.values)


def delivery_row(
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
    delivery = _claim(str(delivery_id), None)
    if delivery is None:
        return "skipped"
    outcome = _attempt(provider_for(delivery.channel), delivery)
    _record([outcome])
    return str(outcome.status)


def deliveries_send(*, delivery_ids: Sequence[UUID | str], budget_seconds: float = 60.0) -> int:
    """Send a chunk of deliveries one by one; returns how many were sent.

    Each row is claimed, sent and its outcome recorded as by `delivery_send`, so a worker
    lost mid-chunk leaves only the row in flight in doubt; a row's outcome is written in
    the statement that claims the next row (one round trip per row). What the sends share
    is read once per chunk: the rows, and one provider per channel prepared for all of its
    rows (push: every recipient's device tokens in one query).

    Stops after `budget_seconds` (slow or timing-out providers) and enqueues the rest as
    a new task, so a chunk never runs into the worker's time limit mid-send.
    """
    deadline = monotonic_clock.monotonic() + budget_seconds
    ids = [str(i) for i in delivery_ids]
    rows = {
        str(row.pk): row
        for row in Delivery.objects.filter(pk__in=ids, status__in=[Delivery.Status.QUEUED, Delivery.Status.FAILED])
    }
    providers: dict[str, Any] = {}
    for channel in {row.channel for row in rows.values()}:
        providers[channel] = provider_for(channel)
        prepare = getattr(providers[channel], "prepare", None)
        if prepare is not None:  # e.g. push: every user's device tokens in one query
            prepare(user_ids=list({row.user_id for row in rows.values() if row.channel == channel}))
    sent = 0
    pending: list[_Outcome] = []  # the last send's outcome, written with the next claim
    for position, delivery_id in enumerate(ids):
        if monotonic_clock.monotonic() > deadline:
            enqueue_safely([UUID(i) for i in ids[position:]])
            break
        delivery, pending = _claim(delivery_id, rows.get(delivery_id), record=pending), []
        if delivery is None:
            continue
        outcome = _attempt(providers.get(delivery.channel) or provider_for(delivery.channel), delivery)
        sent += outcome.status == Delivery.Status.SENT
        pending = [outcome]
    _record(pending)
    return sent


def _claim(delivery_id: str, row: Delivery | None, *, record: list[_Outcome] | None = None) -> Delivery | None:
    """Claim one due delivery (queued/failed -> sending), first recording `record` in the same
    statement. Returns the claimed delivery, None if it was not due or already claimed.

    `row`: the delivery as read before the claim, if it was; the claim returns what may have
    changed since (attempts, details): the rest of a row never changes after it is written.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.NOTIFICATIONS_SEND_LEASE_SECONDS)
    sql = _CLAIM_SQL
    params: list[Any] = [lease, now, delivery_id, now]
    if record:
        # Both UPDATEs run, on different rows, whatever the claim finds.
        sql = f"WITH recorded AS ({_RECORD_SQL} RETURNING d.id) {_CLAIM_SQL}"
        params = _record_params(record, now) + params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed = cursor.fetchone()
    if record:
        _recorded(record)
    if claimed is None:
        return None
    if row is None:
        return Delivery.objects.get(pk=delivery_id)
    row.status, row.lease_until, row.updated_at = Delivery.Status.SENDING, lease, now
    # jsonb arrives as text: Django's backend leaves decoding to JSONField, as here.
    row.attempts, row.details = claimed[0], json.loads(claimed[1]) if isinstance(claimed[1], str) else claimed[1]
    return row


_CLAIM_SQL = f"""
    UPDATE {Delivery._meta.db_table}
    SET status = '{Delivery.Status.SENDING}', attempts = attempts + 1, lease_until = %s, updated_at = %s
    WHERE id = %s AND status IN ('{Delivery.Status.QUEUED}', '{Delivery.Status.FAILED}') AND next_attempt_at <= %s
    RETURNING attempts, details
"""  # noqa: S608 - no input in the text: the table name and status constants


@dataclass
class _Outcome:
    delivery: Delivery
    status: str
    error: str = ""
    message_id: str = ""
    next_attempt_at: datetime | None = None


def _attempt(provider: Any, delivery: Delivery) -> _Outcome:
    """One send of a claimed row through `provider`, and what it came to."""
    try:
        message_id = provider.send(delivery)
    except PermanentProviderError as exc:
        return _Outcome(delivery, Delivery.Status.DEAD, error=str(exc))
    except TransientProviderError as exc:
        return _failure(delivery, str(exc))
    except Exception as exc:
        logger.exception("provider crashed for delivery %s", delivery.pk)
        return _failure(delivery, f"unexpected error: {exc!r}")
    return _Outcome(delivery, Delivery.Status.SENT, message_id=message_id)


def _failure(delivery: Delivery, error: str) -> _Outcome:
    if delivery.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        return _Outcome(delivery, Delivery.Status.DEAD, error=f"gave up after {delivery.attempts} attempts: {error}")
    due = timezone.now() + timedelta(seconds=retry_delay(delivery.attempts))
    return _Outcome(delivery, Delivery.Status.FAILED, error=error, next_attempt_at=due)


def _finish(
    delivery: Delivery,
    status: str,
    *,
    error: str = "",
    message_id: str = "",
    next_attempt_at: datetime | None = None,
) -> str:
    """Record one outcome of `delivery`'s current claim (see `_record`)."""
    _record([_Outcome(delivery, status, error=error, message_id=message_id, next_attempt_at=next_attempt_at)])
    return str(status)


def _record(outcomes: list[_Outcome]) -> None:
    """Write outcomes, each only if its row is still held by the claim that sent it, in one
    statement; then count them and enqueue the retries (each with its own backoff).

    `attempts` identifies a claim: a worker that outlived its lease (the sweep already
    handed the row to another send) must not overwrite that send's outcome. One UPDATE
    joined to the outcomes as a JSON recordset: an ORM `update()` per row cost more than
    the send itself, and cannot ride along with the next row's claim.
    """
    if not outcomes:
        return
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, _record_params(outcomes, timezone.now()))
    _recorded(outcomes)


def _record_params(outcomes: list[_Outcome], now: datetime) -> list[Any]:
    values = [
        {
            "id": str(outcome.delivery.pk),
            "attempts": outcome.delivery.attempts,
            "status": str(outcome.status),
            "details": outcome.delivery.details,
            "error": outcome.error[:2000],
            "message_id": outcome.message_id[:200] if outcome.status == Delivery.Status.SENT else None,
            "next_attempt_at": outcome.next_attempt_at.isoformat() if outcome.next_attempt_at else None,
        }
        for outcome in outcomes
    ]
    return [now, now, json.dumps(values)]


def _recorded(outcomes: list[_Outcome]) -> None:
    """After outcomes are written: count them, and enqueue each retry with its own backoff."""
    for outcome in outcomes:
        counter = _COUNTERS.get(outcome.status, metrics.DEAD)
        counter.labels(channel=outcome.delivery.channel).inc()
        if outcome.status == Delivery.Status.FAILED:
            enqueue_safely([outcome.delivery.pk], outcome.next_attempt_at)


_COUNTERS: dict[str, Any] = {Delivery.Status.SENT: metrics.SENT, Delivery.Status.FAILED: metrics.FAILED}
_RECORD_SQL = f"""
    UPDATE {Delivery._meta.db_table} AS d SET
        status = o.status, updated_at = %s, lease_until = NULL, details = o.details,
        last_error = CASE WHEN o.error = '' THEN d.last_error ELSE o.error END,
        sent_at = CASE WHEN o.message_id IS NULL THEN d.sent_at ELSE %s END,
        provider_message_id = COALESCE(o.message_id, d.provider_message_id),
        next_attempt_at = COALESCE(o.next_attempt_at, d.next_attempt_at)
    FROM jsonb_to_recordset(%s::jsonb) AS o(
        id uuid, attempts integer, status text, details jsonb, error text, message_id text, next_attempt_at timestamptz
    )
    WHERE d.id = o.id AND d.status = '{Delivery.Status.SENDING}' AND d.attempts = o.attempts
"""  # noqa: S608 - no input in the text: the table name and a status constant


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
        transaction.on_commit(partial(enqueue_safely, [delivery.pk]))
    return delivery

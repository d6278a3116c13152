"""The outbox: delivery rows, sending them through the providers, retries and resends.

A row is sent at most once per claim (`delivery_send`); crashes are recovered by
notifications.services.sweep.
"""

from __future__ import annotations

import logging
import secrets
import time as monotonic_clock
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
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
            enqueue_safely([UUID(str(i)) for i in delivery_ids[position:]])
            break
        sent += delivery_send(delivery_id=delivery_id) == Delivery.Status.SENT
    return sent


def _fail(delivery: Delivery, error: str) -> str:
    if delivery.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        return _finish(delivery, Delivery.Status.DEAD, error=f"gave up after {delivery.attempts} attempts: {error}")
    due = timezone.now() + timedelta(seconds=retry_delay(delivery.attempts))
    outcome = _finish(delivery, Delivery.Status.FAILED, error=error, next_attempt_at=due)
    enqueue_safely([delivery.pk], due)
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
        transaction.on_commit(partial(enqueue_safely, [delivery.pk]))
    return delivery

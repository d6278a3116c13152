"""notify() and send_contact_code(): messages recorded in the caller's transaction, sent after COMMIT."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from bankcore.ids import uuid7
from notifications.events import Event
from notifications.exceptions import InvalidNotificationRequest
from notifications.models import Delivery, Notification
from notifications.rendering import render_event, safe_context
from notifications.services.delivery import delivery_row
from notifications.services.enqueue import enqueue_safely
from notifications.services.preferences import channels_for_many, due_times


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
    return _record([(user, Event(event), context or {}, key)])


@dataclass(frozen=True)
class Alert:
    """One message for `notify_many`: what `notify(user=..., event=..., context=..., key=...)` takes,
    with the user by id."""

    user_id: Any
    event: Event | str
    context: dict[str, Any]
    key: str | None = None


def notify_many(*, alerts: Sequence[Alert]) -> list[Notification]:
    """`notify` for every alert, in order, as one batch: the same inbox and delivery rows, with
    a few statements for all of them (users, preferences, one INSERT of inbox rows, one of
    delivery rows) and one broker publish after COMMIT for every delivery due now.

    Atomic with the caller's transaction (its own one outside any). Alerts of users that no
    longer exist are dropped. Returns the inbox rows.
    """
    wanted = {str(alert.user_id) for alert in alerts}
    users = {str(user.pk): user for user in get_user_model().objects.filter(pk__in=wanted).only(*_CONTACT_FIELDS)}
    return _record(
        [
            (users[str(alert.user_id)], Event(alert.event), alert.context, alert.key)
            for alert in alerts
            if str(alert.user_id) in users
        ]
    )


# What delivery_row addresses a message with: a batch loads no more of each user.
_CONTACT_FIELDS = ("id", "email", "phone", "notification_email", "notification_phone")


def _record(items: list[tuple[Any, Event, dict[str, Any], str | None]]) -> list[Notification]:
    """The inbox rows and delivery rows of `items` [(user, event, context, key)], one INSERT each."""
    if not items:
        return []
    pairs = [(user.pk, event) for user, event, _, _ in items]
    chosen = channels_for_many(pairs=pairs)
    now = timezone.now()
    dues = due_times(pairs=pairs, now=now)
    inbox: list[Notification] = []
    deliveries: list[tuple[Delivery, datetime]] = []
    for user, event, context, key in items:
        shown = safe_context(context)
        channels = chosen[(user.pk, event)]
        # One rendering per message, shared by its channels (each takes its part of it).
        rendered = render_event(event.value, shown, channels=channels)
        row = Notification(
            id=uuid7(), user=user, event=event.value, title=rendered.title, body=rendered.body, context=shown
        )
        inbox.append(row)
        event_key = f"{event.value}:{key or row.id}"
        due = dues[(user.pk, event)]
        for channel in channels:
            delivery = delivery_row(
                user=user, event=event.value, channel=channel, rendered=rendered, key=event_key, due=due, now=now
            )
            if delivery is not None:
                deliveries.append((delivery, due))
    # No savepoint of our own: inside the caller's transaction an error here fails that
    # transaction anyway, and two fewer round trips matter on every transfer.
    with transaction.atomic(savepoint=False):
        Notification.objects.bulk_create(inbox)
        Delivery.objects.bulk_create([delivery for delivery, _ in deliveries], ignore_conflicts=True)
        by_due: dict[datetime, list[UUID]] = {}
        # Grouped by channel, so a delivery task's chunk is mostly one provider's.
        for delivery, due in sorted(deliveries, key=lambda pair: pair[0].channel):
            by_due.setdefault(due, []).append(delivery.id)
        for due, ids in by_due.items():
            _publish_on_commit(ids, due)
    return inbox


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
        row = delivery_row(
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
        enqueue_safely(self.ids)


def _publish_on_commit(ids: list[UUID], due: datetime) -> None:
    if due > timezone.now():  # held back (quiet hours): its own task with an ETA
        transaction.on_commit(partial(enqueue_safely, ids, due))
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

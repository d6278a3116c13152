"""notify() and send_contact_code(): messages recorded in the caller's transaction, sent after COMMIT."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from notifications.events import Event
from notifications.exceptions import InvalidNotificationRequest
from notifications.models import Delivery, Notification
from notifications.rendering import render_event, safe_context
from notifications.services.delivery import delivery_row
from notifications.services.enqueue import enqueue_safely
from notifications.services.preferences import channels_for, due_time


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
        due = due_time(user=user, event=event, now=now)
        rows = [
            row
            for channel in channels
            if (
                row := delivery_row(
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

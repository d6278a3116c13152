"""The one entry point the rest of bankcore uses to tell people things.

    notify(user=..., event=Event.TRANSFER_SENT, context={...})

Call it inside the business transaction: the notification exists if and only if
that transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from notifications.events import Event
from notifications.models import Notification


def notify(*, user: Any, event: Event | str, context: dict[str, Any] | None = None) -> list[Notification]:
    """Record `event` for `user`. Atomic with the caller's transaction."""
    event = Event(event)
    context = context or {}
    title = str(context.get("title") or event.value.replace("_", " ").capitalize())
    body = str(context.get("body") or "")
    with transaction.atomic():
        inbox = Notification.objects.create(user=user, event=event.value, title=title, body=body, context=context)
    return [inbox]

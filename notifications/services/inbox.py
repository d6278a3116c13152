"""The in-app inbox: marking messages read."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.utils import timezone

from notifications.exceptions import NotificationNotFound
from notifications.models import Notification


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

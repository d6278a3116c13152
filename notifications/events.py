"""Event names other apps pass to `notifications.services.notify`. The stable vocabulary."""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    TRANSFER_SENT = "transfer_sent"
    TRANSFER_RECEIVED = "transfer_received"
    LARGE_TRANSACTION = "large_transaction"
    LOW_BALANCE = "low_balance"
    STANDING_ORDER_FAILED = "standing_order_failed"
    NEW_DEVICE = "new_device"
    NEW_DEVICE_LOGIN = "new_device_login"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    TWO_FACTOR_CHANGED = "two_factor_changed"
    ACCOUNT_LOCKED = "account_locked"
    INCIDENT_DECLARED = "incident_declared"
    INCIDENT_UPDATED = "incident_updated"
    INCIDENT_RESOLVED = "incident_resolved"
    MAINTENANCE_SCHEDULED = "maintenance_scheduled"


# Security alerts: always delivered, preferences cannot turn them off.
SECURITY_EVENTS = frozenset(
    {Event.NEW_DEVICE, Event.NEW_DEVICE_LOGIN, Event.PASSWORD_CHANGED, Event.TWO_FACTOR_CHANGED, Event.ACCOUNT_LOCKED}
)

"""Event names other apps pass to `notifications.services.notify`. The stable vocabulary.

Names may be added, never renamed: stored rows and mobile apps refer to them.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    TRANSFER_SENT = "transfer_sent"
    TRANSFER_RECEIVED = "transfer_received"
    LARGE_TRANSACTION = "large_transaction"
    LOW_BALANCE = "low_balance"
    STANDING_ORDER_FAILED = "standing_order_failed"
    STANDING_ORDER_CREATED = "standing_order_created"
    STANDING_ORDER_SKIPPED = "standing_order_skipped"
    CONTACT_CHANGE_REQUESTED = "contact_change_requested"
    CONTACT_CHANGED = "contact_changed"
    # The code that proves a new e-mail or phone: sent only to that contact, never to the inbox.
    CONTACT_VERIFICATION = "contact_verification"
    NEW_DEVICE = "new_device"
    NEW_DEVICE_LOGIN = "new_device_login"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    TWO_FACTOR_CHANGED = "two_factor_changed"
    ACCOUNT_LOCKED = "account_locked"
    INCIDENT_DECLARED = "incident_declared"
    INCIDENT_UPDATED = "incident_updated"
    INCIDENT_RESOLVED = "incident_resolved"
    MAINTENANCE_SCHEDULED = "maintenance_scheduled"
    PRODUCT_NEWS = "product_news"
    PAYMENT_SETTLED = "payment_settled"
    PAYMENT_REJECTED = "payment_rejected"
    PAYMENT_RECEIVED = "payment_received"
    SUPPORT_REPLY = "support_reply"


# Security alerts: always delivered, preferences cannot turn them off.
SECURITY_EVENTS = frozenset(
    {
        Event.NEW_DEVICE,
        Event.NEW_DEVICE_LOGIN,
        Event.PASSWORD_CHANGED,
        Event.TWO_FACTOR_CHANGED,
        Event.ACCOUNT_LOCKED,
        Event.STANDING_ORDER_CREATED,
        Event.CONTACT_CHANGE_REQUESTED,
        Event.CONTACT_CHANGED,
    }
)

# Marketing-class messages: the only ones quiet hours hold back.
MARKETING_EVENTS = frozenset({Event.PRODUCT_NEWS})

# Service messages about outages: sent by the incident fan-out, channels chosen by severity.
INCIDENT_EVENTS = frozenset({Event.INCIDENT_DECLARED, Event.INCIDENT_UPDATED, Event.INCIDENT_RESOLVED})

_ALL = ("email", "sms", "push")

# Channels (besides the in-app inbox, which every event gets) used when the user chose nothing.
DEFAULT_CHANNELS: dict[Event, tuple[str, ...]] = {
    Event.TRANSFER_SENT: ("push",),
    Event.TRANSFER_RECEIVED: ("push",),
    Event.LARGE_TRANSACTION: ("push", "sms", "email"),
    Event.LOW_BALANCE: ("push", "email"),
    Event.STANDING_ORDER_FAILED: ("push", "email"),
    Event.STANDING_ORDER_CREATED: _ALL,
    Event.STANDING_ORDER_SKIPPED: ("push", "email"),
    Event.CONTACT_CHANGE_REQUESTED: _ALL,
    Event.CONTACT_CHANGED: _ALL,
    Event.CONTACT_VERIFICATION: (),
    Event.NEW_DEVICE: _ALL,
    Event.NEW_DEVICE_LOGIN: _ALL,
    Event.PASSWORD_CHANGED: _ALL,
    Event.TWO_FACTOR_CHANGED: _ALL,
    Event.ACCOUNT_LOCKED: _ALL,
    Event.INCIDENT_DECLARED: ("email", "sms"),
    Event.INCIDENT_UPDATED: ("email", "sms"),
    Event.INCIDENT_RESOLVED: ("email", "sms"),
    Event.MAINTENANCE_SCHEDULED: ("email", "push"),
    Event.PRODUCT_NEWS: ("email", "push"),
    Event.PAYMENT_SETTLED: ("push",),
    Event.PAYMENT_REJECTED: ("push", "email"),
    Event.PAYMENT_RECEIVED: ("push",),
    Event.SUPPORT_REPLY: ("push",),
}

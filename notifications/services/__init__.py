"""The one entry point the rest of bankcore uses to tell people things, and the
machinery behind it (delivery, retries, preferences, inbox, incidents).

    notify(user=..., event=Event.TRANSFER_SENT, context={...})

Call it inside the business transaction: the inbox row and one delivery row per
channel exist if and only if that transaction commits. Delivery tasks are enqueued
on commit; a periodic sweep re-enqueues anything a crash left behind.

Other apps import only the names below (and notifications.events); the modules behind
them, one per concern, are notifications' own:

    messages      notify(), notify_many() (a batch of alerts), send_contact_code()
    preferences   channels per event, quiet hours, the customer's settings
    delivery      the outbox rows, sending, retries, staff resends
    enqueue       putting tasks on the broker by name (services never import tasks)
    sweep         recovery from crashes (beat)
    inbox         read marks
    incidents     outage messages and their resumable fan-out
    maintenance   planned downtime
    status        the status banner's cache
"""

from notifications.services.delivery import CHANNELS, deliveries_send, delivery_resend, delivery_send, retry_delay
from notifications.services.enqueue import deliveries_enqueue
from notifications.services.inbox import notification_mark_read, notifications_mark_all_read
from notifications.services.incidents import (
    INCIDENT_CHANNELS,
    FanoutStep,
    incident_audience,
    incident_declare,
    incident_fanout_run,
    incident_fanout_step,
    incident_post_update,
    incident_resolve,
)
from notifications.services.maintenance import maintenance_schedule
from notifications.services.messages import Alert, notify, notify_many, send_contact_code
from notifications.services.preferences import (
    INBOX_CHANNEL,
    PREFERENCE_EVENTS,
    channels_for,
    preferences_get,
    preferences_update,
    quiet_hours_end,
)
from notifications.services.status import STATUS_CACHE_KEY, status_cache_clear
from notifications.services.sweep import (
    UNKNOWN_OUTCOME_DEAD,
    UNKNOWN_OUTCOME_RESENT,
    SweepResult,
    notifications_sweep,
)

__all__ = [
    "CHANNELS",
    "INBOX_CHANNEL",
    "INCIDENT_CHANNELS",
    "PREFERENCE_EVENTS",
    "STATUS_CACHE_KEY",
    "UNKNOWN_OUTCOME_DEAD",
    "UNKNOWN_OUTCOME_RESENT",
    "Alert",
    "FanoutStep",
    "SweepResult",
    "channels_for",
    "deliveries_enqueue",
    "deliveries_send",
    "delivery_resend",
    "delivery_send",
    "incident_audience",
    "incident_declare",
    "incident_fanout_run",
    "incident_fanout_step",
    "incident_post_update",
    "incident_resolve",
    "maintenance_schedule",
    "notification_mark_read",
    "notifications_mark_all_read",
    "notifications_sweep",
    "notify",
    "notify_many",
    "preferences_get",
    "preferences_update",
    "quiet_hours_end",
    "retry_delay",
    "send_contact_code",
    "status_cache_clear",
]

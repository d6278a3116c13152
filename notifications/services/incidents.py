"""Incidents: declare, update and resolve an outage, and fan each message out to customers.

The fan-out is resumable and exactly-once per (update, customer, channel); maintenance
announcements (notifications.services.maintenance) go through it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from bankcore.audit import audit_record
from notifications import metrics
from notifications.events import DEFAULT_CHANNELS, INCIDENT_EVENTS, Event
from notifications.exceptions import IncidentAlreadyResolved, IncidentNotFound, InvalidNotificationRequest
from notifications.models import Channel, Delivery, Incident, IncidentUpdate, NotificationPreference, Service
from notifications.push_tokens import users_with_push
from notifications.rendering import render_event, safe_context
from notifications.services.delivery import delivery_row
from notifications.services.enqueue import enqueue_fanout, enqueue_safely
from notifications.services.status import status_cache_clear

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
    transaction.on_commit(partial(enqueue_fanout, update.pk))
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
                # A read-only window opened without an expected end names none.
                "ends_at": ""
                if window.end_unknown
                else f"{window.ends_at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M} UTC",
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
                row := delivery_row(
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
            transaction.on_commit(partial(enqueue_safely, [row.id for row in rows]))
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
        enqueue_fanout(UUID(str(update_id)), countdown=step.messages / rate if rate > 0 else 0)
    return step

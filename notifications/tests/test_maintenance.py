"""Planned maintenance: `manage.py schedule_maintenance` shows the window on /api/v1/status
and announces it through the same resumable fan-out as incidents, by e-mail and push as
each customer's maintenance preferences allow."""

from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.tests.factories import DeviceFactory, UserFactory
from bankcore.models import AuditEvent
from notifications import services
from notifications.models import Delivery, IncidentUpdate, MaintenanceWindow, NotificationPreference

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]

NOBODY = "nobody-listens-here"


def _window_ahead(days: int = 7, minutes: int = 30) -> tuple[str, str, str]:
    """A window a week ahead (relative to now, so the test never expires): start and end as
    the command takes them, and the day as the announcement prints it."""
    start = (timezone.now() + timedelta(days=days)).replace(hour=2, minute=0, second=0, microsecond=0)
    end = start + timedelta(minutes=minutes)
    return start.isoformat(), end.isoformat(), start.strftime("%Y-%m-%d")


def test_schedule_maintenance_announces_it_by_email_and_push_as_preferences_allow(
    providers, notifications_worker, api_client
):
    customers = [UserFactory(email=f"m{i}@example.com") for i in range(12)]
    for customer in customers[:4]:
        DeviceFactory(user=customer, push_token=f"tok-{customer.email}")
    quiet = customers[5]  # does not want maintenance e-mails
    NotificationPreference.objects.create(user=quiet, event="maintenance_scheduled", channel="email", enabled=False)
    no_push = customers[0]  # has the app, but turned maintenance push off
    NotificationPreference.objects.create(user=no_push, event="maintenance_scheduled", channel="push", enabled=False)
    UserFactory(email="staff@bank.example", is_staff=True)
    out, err = io.StringIO(), io.StringIO()
    start, end, day = _window_ahead()

    call_command(
        "schedule_maintenance",
        "--start",
        start,
        "--end",
        end,
        "--service",
        "payments",
        "--title",
        "Core upgrade",
        "--message",
        "Card payments pause for 30 minutes.",
        stdout=out,
        stderr=err,
    )

    window = MaintenanceWindow.objects.get(pk=out.getvalue().splitlines()[0])
    assert (window.title, window.services) == ("Core upgrade", ["payments"])
    assert "announcing it to 12 customers by email, push" in err.getvalue()
    assert "customers 12/12, messages sent 14, dead 0, waiting 0" in out.getvalue()
    mails = Counter(m["To"] for m in providers.smtp.messages)
    assert set(mails) == {c.email for c in customers} - {quiet.email} and set(mails.values()) == {1}
    sample = providers.smtp.messages[0]
    assert sample["Subject"] == "Planned maintenance: Core upgrade"
    assert (
        f"From {day} 02:00 UTC until {day} 02:30 UTC: Card payments pause for 30 minutes."
        in sample.get_body(("plain",)).get_content()
    )
    pushed = Counter(r.json["message"]["token"] for r in providers.push.received())
    assert pushed == {f"tok-{c.email}": 1 for c in customers[1:4]}  # no device, no push row either
    assert not Delivery.objects.filter(status="dead").exists()
    assert AuditEvent.objects.filter(action="maintenance.scheduled", target_id=str(window.pk)).exists()
    services.status_cache_clear()
    [shown] = api_client.get("/api/v1/status").json()["maintenance"]
    assert shown["title"] == "Core upgrade" and shown["in_progress"] is False


def test_maintenance_announcement_is_resumable_and_exactly_once_per_customer(settings):
    settings.NOTIFICATIONS_QUEUE = NOBODY  # this test drives the steps itself
    for i in range(25):
        UserFactory(email=f"again{i}@example.com")
    window = services.maintenance_schedule(
        title="DB move",
        message="Short pause.",
        starts_at=timezone.now() + timedelta(days=1),
        ends_at=timezone.now() + timedelta(days=1, hours=1),
        services=[],
        announce=True,
    )
    update = window.announcements.get()
    steps = []
    while not steps or not steps[-1].done:
        steps.append(services.incident_fanout_step(update_id=update.pk, batch_size=10, enqueue=False))
    # a stale task re-running the whole fan-out from the start changes nothing
    IncidentUpdate.objects.filter(pk=update.pk).update(fanout_status="running", fanout_cursor=None)
    again = services.incident_fanout_step(update_id=update.pk, batch_size=100, enqueue=False)

    assert [s.recipients for s in steps] == [10, 10, 5]
    assert again.messages == 25 and Delivery.objects.filter(incident_update=update).count() == 25
    assert set(Delivery.objects.values_list("event", "channel")) == {("maintenance_scheduled", "email")}


def test_schedule_maintenance_refuses_a_window_that_ends_before_it_starts_and_records_nothing():
    start, _, _ = _window_ahead()
    before_start = (timezone.datetime.fromisoformat(start) - timedelta(hours=1)).isoformat()
    with pytest.raises(CommandError, match="Must be after starts_at"):
        call_command(
            "schedule_maintenance",
            *("--start", start, "--end", before_start),
            *("--title", "Backwards", "--message", "x", "--no-wait"),
        )
    with pytest.raises(CommandError, match="Not a date and time"):
        call_command(
            "schedule_maintenance",
            *("--start", "sunday", "--end", start, "--title", "t", "--message", "x"),
        )
    assert not MaintenanceWindow.objects.exists() and not IncidentUpdate.objects.exists()


def test_schedule_maintenance_without_announcing_only_shows_it_on_status(settings):
    settings.NOTIFICATIONS_QUEUE = NOBODY
    UserFactory()
    out = io.StringIO()
    start, end, _ = _window_ahead(minutes=120)

    call_command(
        "schedule_maintenance",
        *("--start", start, "--end", end),
        *("--title", "Quiet", "--message", "m", "--no-announce"),
        stdout=out,
        stderr=io.StringIO(),
    )

    assert MaintenanceWindow.objects.filter(pk=out.getvalue().strip()).exists()
    assert not IncidentUpdate.objects.exists() and not Delivery.objects.exists()

"""Staff screens (dead letters, resend, declaring an incident) and the Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from prometheus_client import REGISTRY

from accounts.tests.factories import UserFactory
from bankcore.models import AuditEvent
from notifications import services
from notifications.events import Event
from notifications.models import Delivery, Incident, MaintenanceWindow
from notifications.tests.servers import Answer

# A day a week from now: a fixed date would expire (windows that have ended are not shown).
WEEK_AHEAD = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%d")

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser(
        email="ops@bank.example", password="pw-123456789", full_name="Ops"
    )
    device = TOTPDevice.objects.create(user=staff, name="admin", confirmed=True)
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"
    client.post(
        "/admin/login/",
        {
            "username": "ops@bank.example",
            "password": "pw-123456789",
            "otp_device": device.persistent_id,
            "otp_token": code,
        },
    )
    assert client.get("/admin/").status_code == 200
    return client


def _dead_sms(providers, user):
    providers.sms.script.append(Answer(400, {"error": "invalid number"}))
    services.notify(user=user, event=Event.ACCOUNT_LOCKED, context={})
    row = Delivery.objects.get(user=user, channel="sms")
    assert services.delivery_send(delivery_id=row.pk) == "dead"
    return row


def test_dead_letters_are_listed_and_resend_action_queues_and_audits(providers, staff_client, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"
    user = UserFactory()
    row = _dead_sms(providers, user)

    listing = staff_client.get("/admin/notifications/deadletter/")
    assert listing.status_code == 200 and user.phone in listing.content.decode()

    response = staff_client.post(
        "/admin/notifications/deadletter/", {"action": "resend", "_selected_action": [str(row.pk)]}
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("queued", 0)
    assert AuditEvent.objects.filter(action="notifications.delivery_resent", target_id=str(row.pk)).exists()
    assert services.delivery_send(delivery_id=row.pk) == "sent"
    assert len(providers.sms.received()) == 1


def test_staff_declare_an_incident_in_the_admin_through_the_service(staff_client):
    response = staff_client.post(
        "/admin/notifications/incident/add/",
        {"title": "App down", "severity": "critical", "services": ["app", "login"], "message": "The app is down."},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get()
    assert incident.services == ["app", "login"]
    assert incident.updates.get().channels == ["email", "sms"]
    assert AuditEvent.objects.filter(action="incident.declared", target_id=str(incident.pk)).exists()
    page = staff_client.get(f"/admin/notifications/incident/{incident.pk}/change/")
    assert page.status_code == 200 and "customers" in page.content.decode()


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counters_count_sent_failed_and_dead_per_channel(providers, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"
    user = UserFactory()
    before = {k: _sample(f"bankcore_notifications_{k}_total", channel="sms") for k in ("sent", "failed", "dead")}
    providers.sms.script.append(Answer(502, {}))
    with transaction.atomic():
        services.notify(user=user, event=Event.NEW_DEVICE, context={})
    row = Delivery.objects.get(user=user, channel="sms")

    assert services.delivery_send(delivery_id=row.pk) == "failed"
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    assert services.delivery_send(delivery_id=row.pk) == "sent"
    _dead_sms(providers, UserFactory())

    after = {k: _sample(f"bankcore_notifications_{k}_total", channel="sms") for k in ("sent", "failed", "dead")}
    assert {k: after[k] - before[k] for k in after} == {"sent": 1, "failed": 1, "dead": 1}


def test_metrics_endpoint_exports_queue_age_and_fanout_progress(client, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"
    UserFactory()
    services.incident_declare(title="t", message="m", severity="minor", services=["cards"])

    text = client.get("/metrics").content.decode()

    assert "bankcore_notifications_sent_total" in text
    assert "bankcore_notifications_oldest_queued_age_seconds" in text
    assert "bankcore_notifications_fanout_progress_ratio{incident_update=" in text


def test_staff_post_an_update_from_the_incident_page(staff_client):
    incident = services.incident_declare(title="t", message="first", severity="minor", services=["cards"])

    declared = incident.updates.get()
    form = {  # what the browser posts: the new message plus the read-only updates inline
        "update_message": "Cards work again for most.",
        "updates-TOTAL_FORMS": "1",
        "updates-INITIAL_FORMS": "1",
        "updates-MIN_NUM_FORMS": "0",
        "updates-MAX_NUM_FORMS": "1000",
        "updates-0-id": str(declared.pk),
        "updates-0-incident": str(incident.pk),
    }

    response = staff_client.post(f"/admin/notifications/incident/{incident.pk}/change/", form)

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.message == "Cards work again for most."
    assert list(incident.updates.values_list("kind", flat=True)) == ["declared", "updated"]


def test_updating_a_resolved_incident_is_refused():
    from notifications.exceptions import IncidentAlreadyResolved

    incident = services.incident_declare(title="t", message="m", severity="minor", services=["cards"])
    services.incident_resolve(incident_id=incident.pk)
    with pytest.raises(IncidentAlreadyResolved):
        services.incident_post_update(incident_id=incident.pk, message="late")
    assert incident.updates.count() == 2


def test_staff_schedule_and_announce_maintenance_in_the_admin_through_the_service(staff_client, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # only the recorded announcement matters here
    UserFactory()
    form = {
        "title": "Core upgrade",
        "message": "Sunday 02:00-02:30.",
        "services": ["payments"],
        "starts_at_0": WEEK_AHEAD,
        "starts_at_1": "02:00:00",
        "ends_at_0": WEEK_AHEAD,
        "ends_at_1": "02:30:00",
    }

    announced = staff_client.post("/admin/notifications/maintenancewindow/add/", {**form, "announce": "on"})
    silent = staff_client.post("/admin/notifications/maintenancewindow/add/", {**form, "title": "Quiet"})

    assert announced.status_code == silent.status_code == 302, announced.content.decode()[:2000]
    window = MaintenanceWindow.objects.get(title="Core upgrade")
    update = window.announcements.get()
    assert (update.kind, update.channels, update.recipients_total) == ("planned", ["email", "push"], 1)
    assert not MaintenanceWindow.objects.get(title="Quiet").announcements.exists()
    listing = staff_client.get("/admin/notifications/maintenancewindow/").content.decode()
    assert "0/1 (running)" in listing


def test_admin_shows_form_errors_for_a_window_ending_before_it_starts(staff_client):
    form = {
        "title": "Backwards",
        "message": "x",
        "starts_at_0": WEEK_AHEAD,
        "starts_at_1": "03:00:00",
        "ends_at_0": WEEK_AHEAD,
        "ends_at_1": "02:00:00",
        "announce": "on",
    }
    response = staff_client.post("/admin/notifications/maintenancewindow/add/", form)
    assert response.status_code == 200
    assert "Must be after the start." in response.content.decode()
    assert not MaintenanceWindow.objects.filter(title="Backwards").exists()


def test_admin_refuses_an_update_to_a_resolved_incident_with_a_form_error(staff_client):
    incident = services.incident_declare(title="t", message="first", severity="minor", services=["cards"])
    services.incident_resolve(incident_id=incident.pk)
    response = staff_client.post(
        f"/admin/notifications/incident/{incident.pk}/change/", {"update_message": "Too late."}
    )
    assert response.status_code == 200
    assert "This incident is resolved" in response.content.decode()
    assert incident.updates.count() == 2  # declared + resolved, nothing more

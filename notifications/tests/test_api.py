"""Inbox, preferences and status endpoints as the mobile apps use them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory, authenticated_client
from notifications import services
from notifications.events import Event
from notifications.models import Incident, MaintenanceWindow, Notification, NotificationPreference

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _inbox(user, n):
    return [
        services.notify(user=user, event=Event.TRANSFER_RECEIVED, context={"amount": f"{i}.00"})[0] for i in range(n)
    ]


def test_inbox_pages_newest_first_with_unread_count():
    user = UserFactory()
    rows = _inbox(user, 5)
    client = authenticated_client(user)

    first = client.get("/api/v1/notifications?limit=3").json()
    second = client.get(f"/api/v1/notifications?limit=3&cursor={first['next']}").json()

    assert [n["id"] for n in first["results"] + second["results"]] == [str(r.id) for r in reversed(rows)]
    assert second["next"] is None
    assert first["unread"] == 5
    assert set(first["results"][0]) == {"id", "event", "title", "body", "created_at", "read_at"}
    assert first["results"][0]["body"] == "You received 4.00."


def test_inbox_shows_only_my_notifications():
    me, other = UserFactory(), UserFactory()
    _inbox(other, 2)
    body = authenticated_client(me).get("/api/v1/notifications").json()
    assert body == {"results": [], "next": None, "unread": 0}


def test_mark_one_read_then_all_read():
    user = UserFactory()
    rows = _inbox(user, 3)
    client = authenticated_client(user)

    response = client.post(f"/api/v1/notifications/{rows[0].id}/read")
    assert response.status_code == 204
    assert client.get("/api/v1/notifications").json()["unread"] == 2
    assert client.get("/api/v1/notifications?unread=true").json()["results"][-1]["id"] == str(rows[1].id)

    assert client.post("/api/v1/notifications/read-all").status_code == 204
    assert client.get("/api/v1/notifications").json()["unread"] == 0
    assert not Notification.objects.filter(user=user, read_at__isnull=True).exists()


def test_another_customers_notification_answers_404_and_stays_unread():
    me, other = UserFactory(), UserFactory()
    [theirs] = _inbox(other, 1)

    response = authenticated_client(me).post(f"/api/v1/notifications/{theirs.id}/read")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_inbox_needs_authentication(api_client):
    assert api_client.get("/api/v1/notifications").status_code == 401


def test_preferences_show_defaults_and_security_alerts_locked_on():
    user = UserFactory()
    body = authenticated_client(user).get("/api/v1/notification-preferences").json()
    assert body["transfer_sent"] == {"in_app": True, "email": False, "sms": False, "push": True}
    assert body["password_changed"] == {"in_app": True, "email": True, "sms": True, "push": True}
    assert body["quiet_hours"] is None


def test_patch_preferences_changes_channels_and_quiet_hours():
    user = UserFactory()
    client = authenticated_client(user)

    response = client.patch(
        "/api/v1/notification-preferences",
        {
            "low_balance": {"sms": True, "email": False},
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
        },
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["low_balance"] == {"in_app": True, "email": False, "sms": True, "push": True}
    assert response.json()["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    services.notify(user=user, event=Event.LOW_BALANCE, context={})
    assert sorted(user.deliveries.values_list("channel", flat=True)) == ["push", "sms"]


def test_turning_off_a_security_alert_is_refused_and_changes_nothing():
    user = UserFactory()
    response = authenticated_client(user).patch(
        "/api/v1/notification-preferences",
        {
            "low_balance": {"sms": True},
            "account_locked": {"email": False},
            "nonsense": {"sms": True},
            "transfer_sent": {"fax": True},
            "quiet_hours": {"start": "25:00", "end": "07:00"},
        },
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["details"]) == {"account_locked", "nonsense", "transfer_sent", "quiet_hours"}
    assert not NotificationPreference.objects.filter(user=user).exists()


def test_status_is_public_and_shows_active_incidents_maintenance_and_alternatives(api_client, settings):
    settings.SUPPORT_PHONE = "+49 800 000 0000"
    assert api_client.get("/api/v1/status").json()["state"] == "operational"

    incident = services.incident_declare(
        title="Card payments down",
        message="Card payments fail; transfers work.",
        severity="major",
        services=["payments"],
    )
    services.maintenance_schedule(
        title="Core upgrade",
        message="Sunday night",
        services=["transfers"],
        starts_at=timezone.now() + timedelta(days=1),
        ends_at=timezone.now() + timedelta(days=1, hours=2),
    )
    services.status_cache_clear()  # on_commit does this in production; tests run inside one transaction

    body = api_client.get("/api/v1/status").json()

    assert body["state"] == "partial_outage"
    [shown] = body["incidents"]
    assert shown["id"] == str(incident.id)
    assert shown["message"] == "Card payments fail; transfers work."
    assert shown["services"] == ["payments"] and shown["severity"] == "major"
    assert shown["updates"][0]["kind"] == "declared"
    assert body["maintenance"][0]["title"] == "Core upgrade" and body["maintenance"][0]["in_progress"] is False
    assert body["alternatives"] == {"support_phone": "+49 800 000 0000", "branch_hours": settings.BRANCH_HOURS}


def test_status_is_served_from_cache_for_a_few_seconds(api_client, django_assert_max_num_queries):
    services.status_cache_clear()
    api_client.get("/api/v1/status")
    Incident.objects.create(title="x", message="y", severity="critical", services=["login"])

    with django_assert_max_num_queries(0):
        cached = api_client.get("/api/v1/status").json()
    assert cached["state"] == "operational"

    services.status_cache_clear()
    assert api_client.get("/api/v1/status").json()["state"] == "major_outage"


def test_status_reports_maintenance_in_progress(api_client):
    MaintenanceWindow.objects.create(
        title="Now",
        message="m",
        services=["app"],
        starts_at=timezone.now() - timedelta(minutes=5),
        ends_at=timezone.now() + timedelta(minutes=5),
    )
    services.status_cache_clear()
    assert api_client.get("/api/v1/status").json()["state"] == "maintenance"


def test_openapi_schema_describes_the_notification_endpoints(api_client):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    paths = schema["paths"]
    for path in [
        "/api/v1/notifications",
        "/api/v1/notifications/{notification_id}/read",
        "/api/v1/notifications/read-all",
        "/api/v1/notification-preferences",
        "/api/v1/status",
    ]:
        assert path in paths, path
    page = schema["components"]["schemas"]["NotificationPageOut"]
    assert {"results", "next", "unread"} <= set(page["properties"])
    preferences = schema["components"]["schemas"]["NotificationPreferences"]["properties"]
    assert {"transfer_sent", "account_locked", "quiet_hours"} <= set(preferences)
    status_op = paths["/api/v1/status"]["get"]
    assert status_op.get("security", schema.get("security")) in (None, [], [{}])  # no auth
    assert paths["/api/v1/notifications"]["get"]["security"] not in (None, [], [{}])

"""notify(): channels by event, preferences and security overrides, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import transaction

from accounts.tests.factories import UserFactory
from notifications import services
from notifications.events import Event
from notifications.models import Delivery, NotificationPreference, QuietHours

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _channels(user, event):
    return sorted(Delivery.objects.filter(user=user, event=event).values_list("channel", flat=True))


def test_notify_keeps_the_callers_signature_and_returns_the_inbox_row():
    user = UserFactory()
    [inbox] = services.notify(user=user, event=Event.TRANSFER_SENT, context={"amount": "5.00", "currency": "EUR"})
    assert inbox.user == user and inbox.event == "transfer_sent"
    assert inbox.body == "You sent 5.00 EUR."
    assert _channels(user, "transfer_sent") == ["push"]


def test_preferences_add_and_remove_channels():
    user = UserFactory()
    NotificationPreference.objects.create(user=user, event="low_balance", channel="email", enabled=False)
    NotificationPreference.objects.create(user=user, event="low_balance", channel="sms", enabled=True)

    services.notify(user=user, event=Event.LOW_BALANCE, context={})

    assert _channels(user, "low_balance") == ["push", "sms"]


def test_security_alerts_ignore_opt_outs():
    user = UserFactory()
    NotificationPreference.objects.create(user=user, event="password_changed", channel="email", enabled=False)

    services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})

    assert _channels(user, "password_changed") == ["email", "push", "sms"]


def test_customer_without_phone_gets_no_sms_row():
    user = UserFactory(phone="")
    services.notify(user=user, event=Event.ACCOUNT_LOCKED, context={})
    assert _channels(user, "account_locked") == ["email", "push"]


def test_notify_inside_a_rolled_back_transaction_leaves_nothing():
    user = UserFactory()
    with pytest.raises(ValueError), transaction.atomic():
        services.notify(user=user, event=Event.NEW_DEVICE, context={})
        raise ValueError
    assert not Delivery.objects.filter(user=user).exists()
    assert not user.notifications.exists()


def test_quiet_hours_hold_back_marketing_only():
    user = UserFactory()
    QuietHours.objects.create(user=user, start=time(22, 0), end=time(7, 0), timezone="Europe/Berlin")
    quiet = QuietHours.objects.get(user=user)
    late_evening = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 in Berlin (CEST)
    assert services.quiet_hours_end(quiet=quiet, now=late_evening) == datetime(2026, 6, 2, 5, 0, tzinfo=UTC)
    assert services.quiet_hours_end(quiet=quiet, now=datetime(2026, 6, 1, 10, 0, tzinfo=UTC)) is None

    # Quiet now: a window around the current time (it may wrap midnight, as 22:00-07:00 does).
    # A fixed 00:00-23:59 would not be quiet in the last minute of the day.
    now = datetime.now(UTC)
    around_now = {"start": (now - timedelta(hours=1)).time(), "end": (now + timedelta(hours=1)).time()}
    QuietHours.objects.filter(user=user).update(**around_now, timezone="UTC")
    services.notify(user=user, event=Event.PRODUCT_NEWS, context={"message": "New savings account"})
    services.notify(user=user, event=Event.ACCOUNT_LOCKED, context={})

    marketing = Delivery.objects.filter(user=user, event="product_news")
    security = Delivery.objects.filter(user=user, event="account_locked")
    assert marketing.exists() and all(d.next_attempt_at > d.created_at for d in marketing)
    assert all(d.next_attempt_at == d.created_at for d in security)


def test_unknown_event_is_refused():
    with pytest.raises(ValueError):
        services.notify(user=UserFactory(), event="not_an_event", context={})


@pytest.mark.redis
def test_notifications_of_one_transaction_are_published_to_the_broker_once(
    django_capture_on_commit_callbacks, settings
):
    from bankcore.celery import app

    queue = f"notify-publish-test-{UserFactory._meta.model.objects.count()}-{id(settings)}"
    settings.NOTIFICATIONS_QUEUE = queue
    sender, recipient = UserFactory(), UserFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.notify(user=sender, event=Event.TRANSFER_SENT, context={"amount": "5.00"})
        services.notify(user=recipient, event=Event.TRANSFER_RECEIVED, context={"amount": "5.00"})

    assert len(callbacks) == 1
    with app.connection_for_write() as conn:
        waiting = conn.default_channel.queue_declare(queue, passive=True).message_count
        conn.default_channel.queue_purge(queue)
    assert waiting == 1  # one deliver_many task carrying both customers' push deliveries


def test_notify_many_records_what_one_notify_per_alert_would_in_a_few_statements(django_assert_max_num_queries):
    from uuid import uuid4

    opted, plain, quiet = UserFactory(phone="+4915100000301"), UserFactory(), UserFactory()
    services.preferences_update(user=opted, changes={"transfer_sent": {"push": False, "sms": True}})
    now = datetime.now(UTC)
    QuietHours.objects.create(
        user=quiet, start=(now - timedelta(hours=1)).time(), end=(now + timedelta(hours=1)).time(), timezone="UTC"
    )
    alerts = [
        *[
            services.Alert(
                user_id=user.pk,
                event=Event.TRANSFER_SENT,
                context={"amount": f"{n}.00", "currency": "EUR"},
                key=f"t{n}",
            )
            for n in range(10)
            for user in (opted, plain)
        ],
        services.Alert(user_id=opted.pk, event=Event.NEW_DEVICE, context={}, key="d1"),  # security: every channel
        services.Alert(user_id=quiet.pk, event=Event.PRODUCT_NEWS, context={"message": "Savings"}, key="n1"),
        services.Alert(user_id=uuid4(), event=Event.TRANSFER_SENT, context={}, key="gone"),  # no such user
    ]

    # users, preferences, quiet hours, inbox rows, delivery rows - whatever the number of alerts
    with django_assert_max_num_queries(5):
        inbox = services.notify_many(alerts=alerts)

    assert len(inbox) == 22 and [row.body for row in inbox[:2]] == ["You sent 0.00 EUR."] * 2
    assert _channels(opted, "transfer_sent") == ["sms"] * 10
    assert _channels(plain, "transfer_sent") == ["push"] * 10
    assert _channels(opted, "new_device") == ["email", "push", "sms"]
    [news_email, news_push] = Delivery.objects.filter(user=quiet, event="product_news").order_by("channel")
    assert news_email.next_attempt_at > news_email.created_at and news_push.next_attempt_at > news_push.created_at
    assert Delivery.objects.filter(delivery_key="transfer_sent:t3:" + f"{plain.pk}:push").exists()

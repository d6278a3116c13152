"""Delivery through real protocols: SMTP to a local server, SMS and FCM-shaped push to
local HTTP servers, by a real Celery worker; retries, dead letters, at-most-once."""

from __future__ import annotations

import threading

import pytest
from django.db import transaction

from accounts.tests.factories import DeviceFactory, UserFactory
from notifications import services
from notifications.events import Event
from notifications.models import Delivery, Notification
from notifications.tests.conftest import wait_for
from notifications.tests.servers import Answer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]


def _statuses(user, event):
    return dict(Delivery.objects.filter(user=user, event=event).values_list("channel", "status"))


def test_security_alert_reaches_smtp_sms_and_push_servers(providers, notifications_worker):
    user = UserFactory(email="ada@example.com", phone="+4915112345678")
    device = DeviceFactory(user=user, push_token="tok-ada-1")

    with transaction.atomic():
        services.notify(user=user, event=Event.NEW_DEVICE_LOGIN, context={"ip": "203.0.113.9"})

    wait_for(lambda: set(_statuses(user, "new_device_login").values()) == {"sent"})
    [mail] = providers.smtp.to("ada@example.com")
    assert mail["Subject"] == "Login from a new device"
    assert mail.get_body(("plain",)).get_content().startswith("Someone logged in to your account")
    assert "<h1" in mail.get_body(("html",)).get_content()
    [sms] = providers.sms.received()
    assert sms.path == "/messages"
    assert sms.json["to"] == "+4915112345678" and "new device" in sms.json["text"]
    assert sms.headers["Authorization"] == "Bearer sms-test-token"
    [push] = providers.push.received()
    assert push.path == "/v1/projects/bankcore/messages:send"
    assert push.json["message"]["token"] == "tok-ada-1"
    assert push.json["message"]["notification"]["title"] == "Login from a new device"
    sms_row = Delivery.objects.get(user=user, channel="sms")
    assert sms_row.provider_message_id.startswith("sms-")
    assert sms_row.details["segments"] == 1
    push_row = Delivery.objects.get(user=user, channel="push")
    assert list(push_row.details["push_sent"]) == [str(device.pk)], push_row.details  # reached that device


def test_committed_event_delivers_exactly_once_per_channel_and_rolled_back_sends_nothing(
    providers, notifications_worker
):
    kept = UserFactory(email="kept@example.com")
    dropped = UserFactory(email="dropped@example.com")

    with transaction.atomic():
        services.notify(user=kept, event=Event.LARGE_TRANSACTION, context={"amount": "5000.00", "currency": "EUR"})
    with pytest.raises(RuntimeError), transaction.atomic():
        services.notify(user=dropped, event=Event.LARGE_TRANSACTION, context={"amount": "9.00", "currency": "EUR"})
        raise RuntimeError("the transfer failed after notify")

    wait_for(lambda: set(_statuses(kept, "large_transaction").values()) == {"sent", "dead"})
    # e-mail and SMS sent; push dead because the customer has no device
    assert _statuses(kept, "large_transaction") == {"email": "sent", "sms": "sent", "push": "dead"}
    assert Delivery.objects.filter(user=kept).count() == 3
    assert not Delivery.objects.filter(user=dropped).exists()
    assert not Notification.objects.filter(user=dropped).exists()
    assert len(providers.smtp.to("kept@example.com")) == 1
    assert providers.smtp.to("dropped@example.com") == []
    assert [r.json["to"] for r in providers.sms.received()] == [kept.phone]


def test_provider_500_then_200_is_retried_and_sent_once(providers, notifications_worker):
    user = UserFactory()
    providers.sms.script.extend([Answer(500, {"error": "busy"})])

    with transaction.atomic():
        services.notify(user=user, event=Event.ACCOUNT_LOCKED, context={})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="sent").first())
    assert row.attempts == 2
    assert "500" in row.last_error
    assert len(providers.sms.rejected) == 1
    assert len(providers.sms.received()) == 1


def test_provider_timeout_is_recorded_and_retried(providers, notifications_worker):
    user = UserFactory()
    providers.sms.script.extend([Answer(201, {"id": "too-late"}, delay=1.5)])

    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="sent").first(), timeout=30)
    assert row.attempts == 2
    assert "timeout" in row.last_error.lower()
    # The gateway had accepted the timed-out request: the retry carries the same
    # Idempotency-Key, gets the first message's id back and nothing is sent twice.
    assert row.provider_message_id == "too-late"
    assert len(providers.sms.received()) == 1 and len(providers.sms.replayed) == 1


def test_invalid_number_goes_straight_to_dead_letter(providers, notifications_worker):
    user = UserFactory()
    providers.sms.script.extend([Answer(400, {"error": "invalid 'to' number"})])

    with transaction.atomic():
        services.notify(user=user, event=Event.TWO_FACTOR_CHANGED, context={})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="dead").first())
    assert row.attempts == 1
    assert "400" in row.last_error


def test_provider_down_every_time_ends_dead_after_max_attempts(providers, notifications_worker):
    user = UserFactory()
    providers.sms.script.extend([Answer(503, {})] * 10)

    with transaction.atomic():
        services.notify(user=user, event=Event.NEW_DEVICE, context={})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="dead").first(), timeout=30)
    assert row.attempts == 4  # NOTIFICATIONS_MAX_ATTEMPTS in the worker
    assert row.last_error.startswith("gave up after 4 attempts")
    assert providers.sms.received() == []


def test_invalid_push_token_deactivates_that_device_and_keeps_the_others(providers, notifications_worker):
    user = UserFactory()
    stale = DeviceFactory(user=user, push_token="tok-stale")
    good = DeviceFactory(user=user, push_token="tok-good")
    providers.push.invalid_tokens.add("tok-stale")

    with transaction.atomic():
        services.notify(user=user, event=Event.TRANSFER_RECEIVED, context={"amount": "10.00", "currency": "EUR"})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="push", status="sent").first())
    stale.refresh_from_db()
    good.refresh_from_db()
    assert stale.push_token == ""
    assert good.push_token == "tok-good"
    assert row.details["push_invalid"] == [str(stale.pk)]
    assert [r.json["message"]["token"] for r in providers.push.received()] == ["tok-good"]


def test_same_delivery_task_run_twice_concurrently_sends_once(providers, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # the four threads below are the only senders
    user = UserFactory(email="twice@example.com")
    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}, key="pw-1")
    row = Delivery.objects.get(user=user, channel="email")

    barrier = threading.Barrier(4)
    outcomes = []

    def run():
        from django.db import connection

        barrier.wait()
        try:
            outcomes.append(services.delivery_send(delivery_id=row.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["sent", "skipped", "skipped", "skipped"]
    assert len(providers.smtp.to("twice@example.com")) == 1


def test_same_event_key_is_recorded_once_per_channel(providers):
    user = UserFactory()
    with transaction.atomic():
        services.notify(user=user, event=Event.LARGE_TRANSACTION, context={}, key="transfer-42")
    with transaction.atomic():
        services.notify(user=user, event=Event.LARGE_TRANSACTION, context={}, key="transfer-42")

    assert Delivery.objects.filter(user=user).count() == 3


def test_dead_letter_resend_from_admin_service_delivers(providers, notifications_worker):
    user = UserFactory()
    providers.sms.script.extend([Answer(400, {"error": "number barred"})])
    with transaction.atomic():
        services.notify(user=user, event=Event.ACCOUNT_LOCKED, context={})
    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="dead").first())

    services.delivery_resend(delivery_id=row.pk, actor="staff@example.com")

    row = wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").first())
    assert row.attempts == 1
    assert len(providers.sms.received()) == 1


def test_sweep_enqueues_rows_whose_enqueue_was_lost(providers, notifications_worker, settings):
    user = UserFactory(email="lost@example.com")
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # the commit-time enqueue goes nowhere
    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})
    settings.NOTIFICATIONS_QUEUE = providers_queue()
    assert set(_statuses(user, "password_changed").values()) == {"queued"}

    result = services.notifications_sweep(stuck_after=0)

    assert result.requeued == 3
    wait_for(lambda: Delivery.objects.filter(user=user, channel="email", status="sent").exists())
    assert len(providers.smtp.to("lost@example.com")) == 1


def test_sweep_dead_letters_sends_whose_worker_vanished(providers, kill_worker_mid_send):
    user = UserFactory()
    kill_worker_mid_send("email", lambda: services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}))

    result = services.notifications_sweep(stuck_after=3600)

    assert result.given_up == 1
    row = Delivery.objects.get(user=user, channel="email")
    assert row.status == "dead" and "outcome unknown" in row.last_error


def test_a_provider_raising_an_unexpected_exception_is_retried_not_lost(providers, make_worker, settings, tmp_path):
    queue = f"{providers_queue()}-crashing"
    settings.NOTIFICATIONS_QUEUE = queue
    marker = tmp_path / "crashed"
    user = UserFactory(phone="+4915100000077")
    crashing = make_worker(
        queue,
        NOTIFICATIONS_SMS_PROVIDER="notifications.tests.providers.CrashingOnceSmsProvider",
        CRASHING_PROVIDER_MARKER=str(marker),
    )

    with crashing:
        with transaction.atomic():
            services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})
        row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="sent").first(), timeout=30)

    assert marker.exists()  # the first attempt did crash
    assert row.attempts == 2 and "unexpected error: RuntimeError" in row.last_error
    assert [r.json["to"] for r in providers.sms.received()] == ["+4915100000077"]


def providers_queue():
    from notifications.tests.conftest import QUEUE

    return QUEUE


def test_push_retry_after_partial_failure_only_sends_to_devices_not_yet_reached(providers, notifications_worker):
    user = UserFactory()
    first = DeviceFactory(user=user, push_token="tok-first")
    second = DeviceFactory(user=user, push_token="tok-second")
    assert str(first.pk) < str(second.pk)
    providers.push.script.extend([Answer(200, {"name": "projects/bankcore/messages/a"}), Answer(503, {})])

    with transaction.atomic():
        services.notify(user=user, event=Event.TRANSFER_SENT, context={"amount": "1.00", "currency": "EUR"})

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="push", status="sent").first())
    assert row.attempts == 2
    assert [r.json["message"]["token"] for r in providers.push.received()] == ["tok-first", "tok-second"]
    assert set(row.details["push_sent"]) == {str(first.pk), str(second.pk)}


def test_sweep_requeues_a_waiting_row_once_per_window_not_every_run(providers, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"
    user = UserFactory()
    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})
    old = timezone.now() - timedelta(minutes=10)
    Delivery.objects.filter(user=user).update(next_attempt_at=old, updated_at=old)

    assert services.notifications_sweep(stuck_after=60).requeued == 3
    assert services.notifications_sweep(stuck_after=60).requeued == 0


def test_the_sweep_runs_on_beat_every_minute():
    from django.conf import settings

    from bankcore.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["notifications-sweep"]
    assert entry["task"] == "notifications.tasks.sweep_notifications"
    assert entry["schedule"].total_seconds() == 60
    assert "notifications.tasks.sweep_notifications" in app.tasks


def test_smtp_refused_recipient_is_dead_and_temporary_refusal_is_retried(providers, settings):
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"  # this test sends in-process
    refused, greylisted = UserFactory(email="nobody@example.com"), UserFactory(email="grey@example.com")
    providers.smtp.rcpt_answers.update(
        {"nobody@example.com": "550 5.1.1 no such mailbox", "grey@example.com": "451 4.7.1 try again later"}
    )
    with transaction.atomic():
        services.notify(user=refused, event=Event.PASSWORD_CHANGED, context={})
        services.notify(user=greylisted, event=Event.PASSWORD_CHANGED, context={})
    dead = Delivery.objects.get(user=refused, channel="email")
    retried = Delivery.objects.get(user=greylisted, channel="email")

    assert services.delivery_send(delivery_id=dead.pk) == "dead"
    assert services.delivery_send(delivery_id=retried.pk) == "failed"
    retried.refresh_from_db()
    assert retried.status == "failed" and "451" in retried.last_error

    providers.smtp.rcpt_answers.clear()
    Delivery.objects.filter(pk=retried.pk).update(next_attempt_at=retried.created_at)
    assert services.delivery_send(delivery_id=retried.pk) == "sent"
    assert [m["To"] for m in providers.smtp.messages] == ["grey@example.com"]


def test_a_chunk_over_its_time_budget_hands_the_rest_to_a_new_task(providers, settings):
    from bankcore.celery import app

    queue = "notifications-budget-test"
    settings.NOTIFICATIONS_QUEUE = queue
    users = [UserFactory() for _ in range(3)]
    with transaction.atomic():
        for user in users:
            services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})
    ids = list(Delivery.objects.filter(channel="sms").order_by("pk").values_list("pk", flat=True))
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)

    sent = services.deliveries_send(delivery_ids=[str(i) for i in ids], budget_seconds=-1)

    with app.connection_for_write() as conn:
        waiting = conn.default_channel.queue_declare(queue, passive=True).message_count
        conn.default_channel.queue_purge(queue)
    assert sent == 0 and waiting == 1
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"queued"}

"""A worker that dies mid-send leaves the outcome unknown: did the provider get it?

SMS and push are re-sent by the sweep with the same idempotency / message key (the SMS
gateway answers the first message's id and does not send it again; the phone replaces the
push it shows), so they arrive exactly once. E-mail (SMTP has no idempotency) is
dead-lettered unless configured otherwise, and every copy carries the row's Message-ID.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client import REGISTRY

from accounts.tests.factories import DeviceFactory, UserFactory
from notifications import services
from notifications.events import Event
from notifications.models import Delivery
from notifications.providers import (
    email_message_id,
    push_message_key,
)
from notifications.services.delivery import _finish
from notifications.tests.conftest import QUEUE, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]

NOBODY = "nobody-listens-here"


def _record(settings, user, event):
    """Record `event` without any worker sending it yet."""
    settings.NOTIFICATIONS_QUEUE = NOBODY
    with transaction.atomic():
        services.notify(user=user, event=event, context={})
    settings.NOTIFICATIONS_QUEUE = QUEUE


def _unknown(channel: str, action: str) -> float:
    labels = {"channel": channel, "action": action}
    return REGISTRY.get_sample_value("bankcore_notifications_unknown_outcome_total", labels) or 0.0


def _worker_died_mid_send(row: Delivery) -> None:
    """The state a SIGKILLed worker leaves (the tests with `kill_worker_mid_send` get it from a
    real kill): the row claimed (`sending`), its lease run out. For the cases a kill cannot
    time: before the request left, or after many attempts."""
    Delivery.objects.filter(pk=row.pk).update(
        status="sending", attempts=F("attempts") + 1, lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_in_doubt_sms_the_gateway_got_is_resent_with_the_same_key_and_not_sent_twice(
    providers, notifications_worker, kill_worker_mid_send
):
    user = UserFactory(phone="+4915100000001")
    # The gateway accepted the SMS; the worker was killed before the answer came.
    kill_worker_mid_send("sms", lambda: services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}))
    row = Delivery.objects.get(user=user, channel="sms")
    assert (row.status, row.attempts) == ("sending", 1)
    counted = _unknown("sms", "resent")

    result = services.notifications_sweep(stuck_after=3600)

    assert (result.resent, result.given_up) == (1, 0)
    assert _unknown("sms", "resent") - counted == 1
    row = wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").first())
    assert row.provider_message_id == "sms-at-kill"  # the gateway answered with the first message
    assert row.attempts == 2 and row.unknown_outcome_resends == 1
    assert "re-sent with the same idempotency key" in row.last_error
    assert [r.json["to"] for r in providers.sms.received()] == ["+4915100000001"]
    [replay] = providers.sms.replayed
    assert replay.headers["Idempotency-Key"] == row.delivery_key


def test_in_doubt_sms_the_gateway_never_got_is_sent_once_on_resend(providers, notifications_worker, settings):
    user = UserFactory(phone="+4915100000002")
    _record(settings, user, Event.PASSWORD_CHANGED)
    row = Delivery.objects.get(user=user, channel="sms")
    _worker_died_mid_send(row)  # died before the request left

    assert services.notifications_sweep(stuck_after=3600).resent == 1

    row = wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").first())
    assert row.unknown_outcome_resends == 1
    assert [r.json["to"] for r in providers.sms.received()] == ["+4915100000002"]
    assert providers.sms.replayed == []


def test_in_doubt_push_is_resent_with_the_same_message_key_and_the_phone_shows_it_once(
    providers, notifications_worker, kill_worker_mid_send
):
    user = UserFactory()
    DeviceFactory(user=user, push_token="tok-doubt")
    # FCM got it; the worker was killed before the answer came.
    kill_worker_mid_send("push", lambda: services.notify(user=user, event=Event.TRANSFER_SENT, context={}))
    row = Delivery.objects.get(user=user, channel="push")

    assert services.notifications_sweep(stuck_after=3600).resent == 1

    row = wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").first())
    assert row.unknown_outcome_resends == 1
    first, second = (r.json["message"] for r in providers.push.received())  # FCM itself does not dedupe
    keys = {
        (
            m["data"]["message_key"],
            m["android"]["notification"]["tag"],
            m["android"]["collapse_key"],
            m["apns"]["headers"]["apns-collapse-id"],
            m["webpush"]["headers"]["Topic"],
        )
        for m in (first, second)
    }
    assert len(keys) == 1 and len(set(next(iter(keys)))) == 1  # one stable key in every slot
    assert len(next(iter(keys))[0]) == 32
    assert list(providers.push.shown) == [("tok-doubt", first["android"]["notification"]["tag"])]


def test_push_message_keys_differ_per_delivery(providers, settings):
    for user in (UserFactory(), UserFactory()):
        _record(settings, user, Event.TRANSFER_SENT)

    keys = {push_message_key(row) for row in Delivery.objects.filter(channel="push")}

    assert len(keys) == 2


def test_in_doubt_email_is_dead_lettered_by_default_and_resent_with_the_same_message_id_when_enabled(
    providers, notifications_worker, settings, kill_worker_mid_send
):
    kept, resent = UserFactory(email="doubt-dead@example.com"), UserFactory(email="doubt-resent@example.com")
    # The SMTP server kept the message; the worker was killed before it answered DATA.
    kill_worker_mid_send("email", lambda: services.notify(user=kept, event=Event.PASSWORD_CHANGED, context={}))
    dead_row = Delivery.objects.get(user=kept, channel="email")
    assert len(providers.smtp.to("doubt-dead@example.com")) == 1
    counted = _unknown("email", "dead")

    result = services.notifications_sweep(stuck_after=3600)

    dead_row.refresh_from_db()
    assert (result.resent, result.given_up) == (0, 1)
    assert _unknown("email", "dead") - counted == 1
    assert dead_row.status == "dead" and "outcome unknown" in dead_row.last_error
    assert dead_row.unknown_outcome_resends == 0

    settings.NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME = {"email": True, "sms": True, "push": True}
    kill_worker_mid_send("email", lambda: services.notify(user=resent, event=Event.PASSWORD_CHANGED, context={}))
    row = Delivery.objects.get(user=resent, channel="email")
    assert services.notifications_sweep(stuck_after=3600).resent == 1
    row = wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").first())
    copies = providers.smtp.to("doubt-resent@example.com")
    assert len(copies) == 2  # SMTP cannot dedupe: the customer may see two, with one Message-ID
    assert {m["Message-ID"] for m in copies} == {email_message_id(row)}

    # Staff resend the dead letter from the admin: same Message-ID again.
    services.delivery_resend(delivery_id=dead_row.pk, actor="staff@example.com")
    wait_for(lambda: len(providers.smtp.to("doubt-dead@example.com")) == 2)
    assert {m["Message-ID"] for m in providers.smtp.to("doubt-dead@example.com")} == {email_message_id(dead_row)}


def test_a_send_that_keeps_killing_workers_is_dead_lettered_after_max_attempts(providers, settings):
    user = UserFactory()
    _record(settings, user, Event.PASSWORD_CHANGED)
    settings.NOTIFICATIONS_QUEUE = NOBODY
    row = Delivery.objects.get(user=user, channel="sms")
    Delivery.objects.filter(pk=row.pk).update(attempts=settings.NOTIFICATIONS_MAX_ATTEMPTS - 1)
    _worker_died_mid_send(row)

    result = services.notifications_sweep(stuck_after=3600)

    row.refresh_from_db()
    assert (result.resent, result.given_up) == (0, 1)
    assert row.status == "dead" and "outcome unknown" in row.last_error


def test_a_worker_that_outlived_its_lease_cannot_overwrite_the_resend(providers, settings):
    user = UserFactory()
    _record(settings, user, Event.PASSWORD_CHANGED)
    settings.NOTIFICATIONS_QUEUE = NOBODY
    row = Delivery.objects.get(user=user, channel="sms")
    _worker_died_mid_send(row)
    stale = Delivery.objects.get(pk=row.pk)  # what the slow worker holds (attempt 1)
    services.notifications_sweep(stuck_after=3600)
    assert services.delivery_send(delivery_id=row.pk) == "sent"  # attempt 2

    _finish(stale, Delivery.Status.DEAD, error="late answer from the slow worker")

    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)

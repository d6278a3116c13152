"""What bankcore guarantees by itself, against providers that deduplicate nothing.

The loopback SMS gateway normally honours Idempotency-Key and the push fake collapses by
tag, so "sent once" there may be the fake's doing. Here (`dedupe = False`) every request
the provider accepts is a message the customer gets:
- a committed event is sent exactly once per channel (one row per channel, the claim);
- a delivery run twice at the same moment is sent once (the conditional UPDATE claim);
- a send whose worker died is in doubt: re-sent under the default
  NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME (sms,push: at least once, the documented reliance on
  the gateway's key), dead-lettered when SMS is taken out of it, as docs/notifications.md
  tells operators of such a gateway to do (at most once).
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from accounts.tests.factories import DeviceFactory, UserFactory
from notifications import services
from notifications.events import Event
from notifications.models import Delivery
from notifications.tests.conftest import QUEUE, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]


@pytest.fixture
def plain(providers):
    """The providers, deduplicating nothing."""
    providers.sms.dedupe = providers.push.dedupe = False
    return providers


def test_a_committed_event_is_sent_exactly_once_per_channel_by_a_real_worker(plain, notifications_worker):
    user = UserFactory(email="plain@example.com", phone="+4915100000101")
    DeviceFactory(user=user, push_token="tok-plain")

    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}, key="pw-1")
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}, key="pw-1")  # the caller repeats itself

    rows = Delivery.objects.filter(user=user)
    wait_for(lambda: rows.count() == 3 and set(rows.values_list("status", flat=True)) == {"sent"})
    services.notifications_sweep(stuck_after=0)  # a beat run afterwards sends nothing again
    time.sleep(1)  # room for a duplicate to show itself
    assert [r.json["to"] for r in plain.sms.received()] == ["+4915100000101"]
    assert [r.json["message"]["token"] for r in plain.push.received()] == ["tok-plain"]
    assert len(plain.push.shown) == 1
    assert len(plain.smtp.to("plain@example.com")) == 1


def test_a_delivery_run_twice_at_the_same_moment_is_sent_once(plain, notifications_worker, settings):
    user = UserFactory(phone="+4915100000102")
    settings.NOTIFICATIONS_QUEUE = "nobody-listens-here"
    with transaction.atomic():
        services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})
    settings.NOTIFICATIONS_QUEUE = QUEUE
    row = Delivery.objects.get(user=user, channel="sms")
    plain.sms.delay = 0.5  # the first send is still on the wire when the second starts
    settings.NOTIFICATIONS_HTTP_TIMEOUT = 10.0  # ...and does not time out meanwhile
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        try:
            barrier.wait()
            outcomes.append(services.delivery_send(delivery_id=row.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["sent", "skipped"]
    # And two tasks for it on a real worker (a re-delivered message, a sweep racing the first).
    services.deliveries_enqueue(delivery_ids=[row.pk])
    services.deliveries_enqueue(delivery_ids=[row.pk])
    time.sleep(2)
    assert [r.json["to"] for r in plain.sms.received()] == ["+4915100000102"]
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 1)


def test_an_in_doubt_sms_is_sent_again_under_the_default_setting_when_the_gateway_ignores_the_key(
    plain, notifications_worker, kill_worker_mid_send
):
    user = UserFactory(phone="+4915100000103")
    kill_worker_mid_send("sms", lambda: services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}))

    assert services.notifications_sweep(stuck_after=3600).resent == 1

    row = wait_for(lambda: Delivery.objects.filter(user=user, channel="sms", status="sent").first())
    # At least once: the customer got two SMS; both carried the row's key, which this gateway ignored.
    first, second = plain.sms.received()
    assert first.json["to"] == second.json["to"] == "+4915100000103"
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == row.delivery_key
    assert row.unknown_outcome_resends == 1


def test_an_in_doubt_sms_is_dead_lettered_not_sent_twice_when_sms_resends_are_off(
    plain, notifications_worker, kill_worker_mid_send, settings
):
    # What docs/notifications.md tells operators whose gateway ignores Idempotency-Key to set.
    settings.NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME = {"email": False, "sms": False, "push": True}
    user = UserFactory(phone="+4915100000104")
    kill_worker_mid_send("sms", lambda: services.notify(user=user, event=Event.PASSWORD_CHANGED, context={}))

    result = services.notifications_sweep(stuck_after=3600)

    row = Delivery.objects.get(user=user, channel="sms")
    assert (result.resent, result.given_up) == (0, 1)
    assert row.status == "dead" and "outcome unknown" in row.last_error
    time.sleep(1)
    assert [r.json["to"] for r in plain.sms.received()] == ["+4915100000104"]  # at most once

    # Staff decide the customer did not get it: resent on purpose, once.
    services.delivery_resend(delivery_id=row.pk, actor="staff@example.com")
    wait_for(lambda: Delivery.objects.filter(pk=row.pk, status="sent").exists())
    assert len(plain.sms.received()) == 2

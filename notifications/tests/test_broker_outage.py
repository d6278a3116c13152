"""Redis (broker, cache and flags) down when a business transaction commits.

The commit neither fails nor hangs, the messages wait in the outbox, and the beat sweeps
send each of them exactly once when Redis is back. A real redis-server of our own is
killed (the port refuses) or frozen with SIGSTOP (connections accepted, never answered);
a real worker sends; the SMS gateway and push devices do not deduplicate, so "once" is
bankcore's own doing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from accounts.tests.factories import DeviceFactory, UserFactory
from notifications import services
from notifications.events import Event
from notifications.models import Delivery, Notification
from notifications.tests.conftest import QUEUE, wait_for
from transactions.models import LedgerNotice
from transactions.services.notices import notices_sweep
from transactions.services.transfers import transfer_create
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery]

# A commit must come back within this even when Redis hangs (the broker's socket timeout
# is 5 s): without one, a publish to a frozen Redis waits forever inside the request.
COMMIT_WITHIN = 20.0


def _returns_within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run `work` (a business call that commits) in a thread of its own; fail if it raises
    or is still running after `seconds` (it is left to finish when Redis comes back)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the commit did not return within {seconds}s with Redis down"
    if "error" in outcome:
        raise AssertionError("the commit raised with Redis down") from outcome["error"]
    return outcome.get("value")


def _take_down(own_redis: Any, outage: str) -> None:
    own_redis.kill() if outage == "refused" else own_redis.freeze()


def _bring_back(own_redis: Any, outage: str) -> None:
    own_redis.start() if outage == "refused" else own_redis.thaw()


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_notify_commits_while_redis_is_down_and_the_sweep_sends_each_message_once_when_it_is_back(
    providers, own_redis, make_worker, outage
):
    providers.sms.dedupe = providers.push.dedupe = False
    user = UserFactory(email="outage@example.com", phone="+4915100000042")
    DeviceFactory(user=user, push_token="tok-outage")
    _take_down(own_redis, outage)

    def change_password() -> None:
        with transaction.atomic():
            services.notify(user=user, event=Event.PASSWORD_CHANGED, context={})

    _returns_within(COMMIT_WITHIN, change_password)

    rows = Delivery.objects.filter(user=user)
    assert Counter(rows.values_list("channel", "status")) == {
        ("email", "queued"): 1,
        ("sms", "queued"): 1,
        ("push", "queued"): 1,
    }
    assert Notification.objects.filter(user=user, event="password_changed").count() == 1

    _bring_back(own_redis, outage)
    with make_worker(QUEUE):
        assert services.notifications_sweep(stuck_after=0).requeued == 3
        services.notifications_sweep(stuck_after=0)  # a second beat run before the first finished
        wait_for(lambda: set(rows.values_list("status", flat=True)) == {"sent"}, timeout=60)
        assert services.notifications_sweep(stuck_after=0).requeued == 0
        time.sleep(1)  # room for a duplicate task to show itself

    assert [r.json["to"] for r in providers.sms.received()] == ["+4915100000042"]
    assert [r.json["message"]["token"] for r in providers.push.received()] == ["tok-outage"]
    assert len(providers.smtp.to("outage@example.com")) == 1
    assert set(rows.values_list("attempts", flat=True)) == {1}


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_a_transfer_commits_while_redis_is_down_and_the_notice_sweep_sends_its_alerts_once_when_it_is_back(
    providers, own_redis, make_worker, caplog, outage
):
    providers.push.dedupe = False
    sender, recipient = UserFactory(), UserFactory()
    DeviceFactory(user=sender, push_token="tok-sender")
    DeviceFactory(user=recipient, push_token="tok-recipient")
    source, destination = open_account(sender, balance=10_000), open_account(recipient)
    _take_down(own_redis, outage)

    journal = _returns_within(
        COMMIT_WITHIN,
        lambda: transfer_create(
            user=sender, source_account_id=source.pk, destination_iban=destination.iban, amount=700, currency="EUR"
        ),
    )

    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (9_300, 700)
    notice = LedgerNotice.objects.get(transaction=journal)
    assert notice.sent_at is None
    # The posting's wake of the drain hit the outage (so only the sweep can send the alerts).
    wait_for(lambda: "could not wake the ledger notice drain" in caplog.text, timeout=10)

    _bring_back(own_redis, outage)
    with make_worker(QUEUE):
        assert notices_sweep(older_than=timedelta(0)) == 1
        assert notices_sweep(older_than=timedelta(0)) == 0  # the next beat run finds it sent
        pushes = Delivery.objects.filter(channel="push", event__in=["transfer_sent", "transfer_received"])
        wait_for(lambda: pushes.filter(status="sent").count() == 2, timeout=60)
        time.sleep(1)  # room for a duplicate task to show itself

    assert Counter(r.json["message"]["token"] for r in providers.push.received()) == {
        "tok-sender": 1,
        "tok-recipient": 1,
    }
    assert Counter(Notification.objects.values_list("user_id", "event")) == {
        (sender.pk, "transfer_sent"): 1,
        (recipient.pk, "transfer_received"): 1,
    }

"""Ledger alerts: queued with the posting, sent once after COMMIT, never for a refused transfer."""

from __future__ import annotations

import time

import pytest

from notifications.models import Notification
from transactions.exceptions import InsufficientFunds
from transactions.models import LedgerNotice
from transactions.services.notices import notices_send
from transactions.services.transfers import transfer_create
from transactions.tests.conftest import client_for, send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account


@pytest.mark.postgres
@pytest.mark.django_db
def test_alerts_are_queued_with_the_transfer_and_sent_exactly_once(customer):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    journal = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=500, currency="EUR"
    )
    row = LedgerNotice.objects.get(transaction=journal)
    assert [item["event"] for item in row.notices] == ["transfer_sent", "transfer_received"]
    assert Notification.objects.count() == 0  # not rendered inside the locked transaction
    assert notices_send(notice_id=row.pk) is True
    assert notices_send(notice_id=row.pk) is False  # a re-delivered task sends nothing twice
    assert sorted(Notification.objects.values_list("event", flat=True)) == ["transfer_received", "transfer_sent"]
    assert send_pending_notices() == 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_refused_transfer_queues_no_alert(customer):
    source, destination = open_account(customer, balance=100), open_account(CustomerFactory())
    with pytest.raises(InsufficientFunds):
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=500, currency="EUR"
        )
    assert LedgerNotice.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_posted_transfer_reaches_both_inboxes_through_a_real_worker(celery_worker_process):
    sender, recipient = CustomerFactory(), CustomerFactory()
    source, destination = open_account(sender, balance=10_000), open_account(recipient)
    response = client_for(sender).post(
        "/api/v1/transfers",
        {"source_account": str(source.pk), "destination": destination.iban, "amount": "7.00", "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="inbox-1",
    )
    assert response.status_code == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Notification.objects.filter(event__startswith="transfer_").count() < 2:
        time.sleep(0.2)
    assert Notification.objects.get(user=sender, event="transfer_sent").body.startswith("You sent 7.00 EUR")
    assert Notification.objects.get(user=recipient, event="transfer_received")
    assert LedgerNotice.objects.get().sent_at is not None


def _queued_drains() -> int:
    """Drain messages waiting on the broker (Redis transport: one list per queue)."""
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("settlement")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_drain_wake_ups_are_coalesced_and_never_miss_a_row():
    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from transactions.services.notices import WAKE_DELAY, WAKE_FLAG, notices_drain

    def settled_drains() -> int:
        time.sleep(WAKE_DELAY * 5)  # wakes are made WAKE_DELAY after the commits asking
        return _queued_drains()

    app.control.purge()
    flag_lower(WAKE_FLAG)
    sender = CustomerFactory()
    source, destination = open_account(sender, balance=100_000), open_account(CustomerFactory())

    def pay() -> None:
        transfer_create(
            user=sender, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )

    for _ in range(20):
        pay()
    # Twenty committed transfers, one drain message: the first wake raised the flag, later ones saw it.
    assert settled_drains() == 1
    assert LedgerNotice.objects.filter(sent_at=None).count() == 20
    assert notices_drain() == 20  # the drain sends every row committed before it started
    assert Notification.objects.filter(event="transfer_sent").count() == 20
    # The drain cleared the flag before reading: the next posting wakes a new drain.
    pay()
    assert settled_drains() == 2
    assert notices_drain() == 1
    app.control.purge()


_POST_AND_EXIT = """
import sys, uuid
import django
django.setup()
from django.contrib.auth import get_user_model
from transactions.services.transfers import transfer_create
user = get_user_model().objects.get(pk=sys.argv[1])
transfer_create(user=user, source_account_id=uuid.UUID(sys.argv[2]), destination_iban=sys.argv[3],
                amount=100, currency="EUR")
"""  # and exit at once, well before the 50 ms wake timer would fire


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_process_that_exits_right_after_posting_still_wakes_the_drain():
    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from bankcore.testing import run_python
    from transactions.services.notices import WAKE_FLAG

    app.control.purge()
    flag_lower(WAKE_FLAG)
    sender = CustomerFactory()
    source, destination = open_account(sender, balance=10_000), open_account(CustomerFactory())
    result = run_python(_POST_AND_EXIT, str(sender.pk), str(source.pk), destination.iban)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert LedgerNotice.objects.filter(sent_at=None).count() == 1
    assert _queued_drains() == 1  # woken at exit, not left for the one-minute sweep
    app.control.purge()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_one_long_lived_thread_makes_every_wake_of_a_process():
    import threading

    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from transactions.services.notices import WAKE_DELAY, WAKE_FLAG

    app.control.purge()
    sender = CustomerFactory()
    source, destination = open_account(sender, balance=10_000), open_account(CustomerFactory())
    for drains in range(1, 4):
        flag_lower(WAKE_FLAG)  # as a drain would have: the next posting must wake again
        transfer_create(
            user=sender, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
        time.sleep(WAKE_DELAY * 5)
        assert _queued_drains() == drains
    # Three wakes, one thread: a thread started per wake cost more than a posting's own Python.
    assert [thread.name for thread in threading.enumerate()].count("ledger-notice-waker") == 1
    app.control.purge()


def test_the_drain_is_woken_by_the_name_of_the_drain_task():
    # notices never imports transactions.tasks (which imports the services): the name must match.
    from bankcore.celery import app
    from transactions.services.notices import DRAIN_TASK
    from transactions.tasks import drain_ledger_notices

    assert app.tasks[DRAIN_TASK].name == drain_ledger_notices.name == DRAIN_TASK


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batched_drains_send_every_row_exactly_once():
    import threading

    from django.db import connection

    from transactions.services.notices import notices_drain

    sender, recipient = CustomerFactory(), CustomerFactory()
    source, destination = open_account(sender, balance=100_000), open_account(recipient)
    for _ in range(40):
        transfer_create(
            user=sender, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
    barrier, sent = threading.Barrier(3), []

    def drain() -> None:
        barrier.wait()
        try:
            sent.append(notices_drain(batch=7))  # small batches: the drains interleave
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(sent) == 40 and not LedgerNotice.objects.filter(sent_at=None).exists()
    # Each transfer announced once to each side (the inbox row is written per outbox row, so a
    # row sent twice would show as a second inbox row with the same transfer).
    for user, event in ((sender, "transfer_sent"), (recipient, "transfer_received")):
        transfers = list(
            Notification.objects.filter(user=user, event=event).values_list("context__transfer_id", flat=True)
        )
        assert len(transfers) == len(set(transfers)) == 40


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_row_that_cannot_be_sent_holds_back_only_itself_and_the_rows_after_it(customer):
    from transactions.services.notices import notices_drain

    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    for _ in range(3):
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
    first, broken, last = LedgerNotice.objects.order_by("id")
    broken.notices = [{**broken.notices[0], "event": "no_such_event"}]
    broken.save(update_fields=["notices"])

    with pytest.raises(ValueError):
        notices_drain()  # as before batching: the rows ahead of the broken one still went out

    assert list(LedgerNotice.objects.filter(sent_at=None).order_by("id")) == [broken, last]
    assert Notification.objects.filter(context__transfer_id=str(first.transaction_id)).count() == 2
    assert not Notification.objects.exclude(context__transfer_id=str(first.transaction_id)).exists()

"""Customer alerts for posted money movements, delivered after COMMIT through an outbox.

`notices_queue` runs inside the posting's transaction: it only writes one LedgerNotice
row (cheap, no rendering; ledger.posting_write folds it into the posting's statement)
and, once the transaction commits, wakes the drain. `notices_send` turns one row into
notifications with `notifications.services.notify`, exactly once per row.

Waking is coalesced twice, because a Celery message - or even a Redis round trip - per
posting cost more than the posting's own SQL:
- in each process, commits within WAKE_DELAY share one wake, made after the first of
  them (trailing edge, from the process's one waker thread): every commit that found a wake pending
  happened before that wake, so the drain it starts reads its row;
- across processes, a shared flag (bankcore.flags, Redis SET NX) says "a drain is
  queued and has not started"; only the wake that raises it publishes the drain task.
  The drain lowers the flag *before* it reads the outbox, so a row committed before a
  failed SET NX is read by the drain that flag belongs to, and a later one raises it again.
A process that exits wakes at exit what it still owes; a wake lost with a killed process,
or a lost drain message (the flag expires), leaves rows for the beat sweep.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from bankcore.celery import app
from bankcore.flags import flag_lower, flag_raise
from notifications.events import Event
from notifications.services import notify
from transactions.models import LedgerNotice, Transaction

logger = logging.getLogger(__name__)
SWEEP_AFTER = timedelta(seconds=30)
WAKE_FLAG = "ledger-notices:drain-queued"
WAKE_FLAG_TTL = 10  # seconds: a lost drain message delays alerts at most this long
WAKE_DELAY = 0.05  # seconds: the longest a committed alert waits for its process to wake the drain
# Sent by name: services never import transactions.tasks (which imports the services).
DRAIN_TASK = "transactions.tasks.drain_ledger_notices"


def notice(*, user_id: Any, event: Event, context: dict[str, Any], key: str) -> dict[str, Any]:
    """One alert to queue. Context must be customer-safe already (mask account numbers)."""
    return {"user_id": str(user_id), "event": str(event), "context": context, "key": key}


def notices_queue(*, journal: Transaction | None, notices: list[dict[str, Any]]) -> LedgerNotice | None:
    """Record alerts owed by the current transaction; sent after it commits. Call inside it."""
    if not notices:
        return None
    row = LedgerNotice.objects.create(transaction=journal, notices=notices)
    notices_wake_on_commit()
    return row


def notices_wake_on_commit() -> None:
    """After the current transaction commits, make sure a drain will read its outbox row."""
    transaction.on_commit(_waker.request)


class _Waker:
    """This process's pending wake: at most one, made WAKE_DELAY after the first commit asking.

    One long-lived daemon thread per process makes the wakes: starting a thread per wake cost
    more than the postings' own Python. A commit that finds a wake pending adds nothing: it
    happened before that wake, because the pending mark is cleared just before waking.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child has no waker thread
        # A short-lived process (a teller command) exits before its thread wakes: wake now.
        atexit.register(self._flush)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if self._pending.is_set():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ledger-notice-waker", daemon=True)
                self._thread.start()
            self._pending.set()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(WAKE_DELAY)
            self._pending.clear()
            try:
                _wake()
            except Exception:  # the thread must outlive any one failed wake; the sweep covers it
                logger.exception("ledger notice wake failed")

    def _flush(self) -> None:
        if self._pending.is_set():
            self._pending.clear()
            _wake()


_waker = _Waker()


def _wake() -> None:
    try:
        if flag_raise(WAKE_FLAG, ttl_seconds=WAKE_FLAG_TTL):
            app.send_task(DRAIN_TASK)
    except Exception:  # a broker hiccup must not fail a committed posting; the sweep sends it
        logger.exception("could not wake the ledger notice drain; the sweep will send the alerts")


def notices_drain(*, batch: int = 500) -> int:
    """Send every unsent outbox row, oldest first. Returns rows sent. Clears the wake flag first."""
    flag_lower(WAKE_FLAG)
    sent = 0
    last_id = 0
    while True:
        unsent = LedgerNotice.objects.filter(sent_at=None, id__gt=last_id).order_by("id")
        ids = list(unsent.values_list("id", flat=True)[:batch])
        if not ids:
            return sent
        sent += sum(notices_send(notice_id=pk) for pk in ids)
        last_id = ids[-1]


def notices_send(*, notice_id: int) -> bool:
    """Turn one outbox row into notifications, once. Returns False if already sent (or gone).

    Atomic: the row is locked (SKIP LOCKED, so a concurrent run just moves on), the
    notifications are recorded and the row marked sent in one transaction.
    """
    with transaction.atomic():
        row = LedgerNotice.objects.select_for_update(skip_locked=True).filter(pk=notice_id, sent_at=None).first()
        if row is None:
            return False
        wanted = {item["user_id"] for item in row.notices}
        users = {str(user.pk): user for user in get_user_model().objects.filter(pk__in=wanted)}
        for item in row.notices:
            user = users.get(item["user_id"])
            if user is not None:
                notify(user=user, event=Event(item["event"]), context=item["context"], key=item["key"])
        row.sent_at = timezone.now()
        row.save(update_fields=["sent_at"])
    return True


def notices_sweep(*, older_than: timedelta = SWEEP_AFTER) -> int:
    """Send every outbox row still unsent after `older_than` (the task was lost). Returns rows sent."""
    stale = LedgerNotice.objects.filter(sent_at=None, created_at__lte=timezone.now() - older_than)
    return sum(notices_send(notice_id=pk) for pk in stale.order_by("created_at").values_list("pk", flat=True)[:1000])

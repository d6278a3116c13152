"""Customer alerts for posted money movements, delivered after COMMIT through an outbox.

`notices_queue` runs inside the posting's transaction: it only writes one LedgerNotice
row (cheap, no rendering; ledger.posting_write folds it into the posting's statement)
and, once the transaction commits, wakes the drain. The drain turns rows into
notifications with `notifications.services.notify_many`, a batch of rows per transaction,
exactly once per row.

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

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from bankcore.celery import app
from bankcore.flags import flag_lower, flag_raise
from notifications.events import Event
from notifications.services import Alert, notify_many
from transactions.models import LedgerNotice, Transaction

logger = logging.getLogger(__name__)
SWEEP_AFTER = timedelta(seconds=30)
WAKE_FLAG = "ledger-notices:drain-queued"
WAKE_FLAG_TTL = 10  # seconds: a lost drain message delays alerts at most this long
WAKE_DELAY = 0.05  # seconds: the longest a committed alert waits for its process to wake the drain
DRAIN_BATCH = 200  # outbox rows per transaction: a few statements for all of their alerts
SWEEP_LIMIT = 1000  # rows per sweep run; the next run (a minute later) takes the rest
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


def notices_drain(*, batch: int = DRAIN_BATCH) -> int:
    """Send every unsent outbox row, oldest first, `batch` rows per transaction. Returns rows
    sent. Clears the wake flag first."""
    flag_lower(WAKE_FLAG)
    sent = 0
    while True:
        done = _send_rows(LedgerNotice.objects.filter(sent_at=None).order_by("id"), limit=batch)
        if not done:
            return sent
        sent += done


def notices_send(*, notice_id: int) -> bool:
    """Turn one outbox row into notifications, once. Returns False if already sent (or gone)."""
    return _send_rows(LedgerNotice.objects.filter(pk=notice_id, sent_at=None), limit=1) == 1


def notices_sweep(*, older_than: timedelta = SWEEP_AFTER) -> int:
    """Send every outbox row still unsent after `older_than` (the task was lost). Returns rows sent."""
    stale = LedgerNotice.objects.filter(sent_at=None, created_at__lte=timezone.now() - older_than)
    sent = 0
    while sent < SWEEP_LIMIT and (done := _send_rows(stale.order_by("created_at", "id"), limit=DRAIN_BATCH)):
        sent += done
    return sent


def _send_rows(unsent: QuerySet[LedgerNotice], *, limit: int) -> int:
    """Turn up to `limit` rows of `unsent` into notifications. Returns rows sent.

    A batch that fails (a row that cannot be sent) is retried one row per transaction, so
    the rows before the failing one still go out and only that one raises, as before batching.
    """
    try:
        return _send_batch(unsent, limit=limit)
    except Exception:
        if limit == 1:
            raise
        logger.exception("a batch of ledger notices failed; sending its rows one by one")
    sent = 0
    for _ in range(limit):
        done = _send_batch(unsent, limit=1)
        if not done:
            break
        sent += done
    return sent


def _send_batch(unsent: QuerySet[LedgerNotice], *, limit: int) -> int:
    """Turn up to `limit` rows of `unsent` into notifications, in one transaction. Returns rows sent.

    Exactly once per row: the rows are locked (SKIP LOCKED, so a concurrent drain or sweep
    takes the next ones instead of waiting), their notifications recorded and the rows
    marked sent in one transaction; a crash before COMMIT leaves them all unsent, for the
    next drain. One batch costs a handful of statements whatever its size (notify_many).
    """
    with transaction.atomic():
        rows = list(unsent.select_for_update(skip_locked=True).only("id", "notices")[:limit])
        if not rows:
            return 0
        notify_many(
            alerts=[
                Alert(user_id=item["user_id"], event=item["event"], context=item["context"], key=item["key"])
                for row in rows
                for item in row.notices
            ]
        )
        LedgerNotice.objects.filter(pk__in=[row.pk for row in rows]).update(sent_at=timezone.now())
    return len(rows)

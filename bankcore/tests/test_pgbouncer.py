"""bankcore behind PgBouncer in transaction pooling mode (docs/operations.md): a private pgbouncer
in front of the test database, a pool smaller than the number of clients, so every transaction
may land on a server connection another client used last. Transfers, idempotent replays and a
paged history must work exactly as on a direct connection: the app keeps no session state
across transactions (its advisory locks and timeouts are transaction-scoped)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.db import connection

from bankcore.testing import database_app_role, database_owner, free_port
from bankcore.tests.outage import app_database
from transactions.models import Transaction
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer, pytest.mark.django_db(transaction=True)]

PGBOUNCER = shutil.which("pgbouncer") or next(
    (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(path, os.X_OK)), None
)
POOL_SIZE = 2
CLIENTS = 4
# What libpq `options` carries on a direct connection (PgBouncer refuses that startup parameter):
# here set on each server connection by PgBouncer; in production on the role (docs/operations.md).
CONNECT_QUERY = (
    "SET statement_timeout = 30000; SET lock_timeout = 5000; SET idle_in_transaction_session_timeout = 60000"
)


@dataclass
class PgBouncer:
    port: int
    directory: Path

    def admin(self, command: str) -> list[dict[str, Any]]:
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer", user=database_owner())
        conn.autocommit = True  # the admin console has no transactions
        try:
            with conn.cursor() as cursor:
                cursor.execute(command)
                names = [column.name for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (apt-get install -y pgbouncer; .ci/run does)")
    settings_dict = connection.settings_dict
    directory = Path(tempfile.mkdtemp(prefix="bankcore-pgbouncer-"))
    directory.chmod(0o777)  # pgbouncer refuses to run as root: it drops to nobody and writes here
    port = free_port()
    host, server_port, name = settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"] or 5432, settings_dict["NAME"]
    (directory / "userlist.txt").write_text(f'"{database_app_role()}" ""\n"{database_owner()}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
{name} = host={host} port={server_port} dbname={name} connect_query='{CONNECT_QUERY}'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
admin_users = {database_owner()}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 50
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""
    )
    for path in directory.iterdir():
        path.chmod(0o644)
    argv = [PGBOUNCER, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                log = directory / "pgbouncer.log"
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {log.read_text() if log.exists() else ''}") from None
                time.sleep(0.05)
        yield PgBouncer(port=port, directory=directory)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _transfer(client: Any, source: Any, destination: Any, key: str) -> Any:
    body = {"source_account": str(source.pk), "destination": destination.iban, "amount": "1.00", "currency": "EUR"}
    return client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_transfers_replays_and_history_run_through_pgbouncer_in_transaction_mode(pgbouncer):
    customers = [CustomerFactory() for _ in range(CLIENTS)]
    accounts = [open_account(customer, balance=100_000) for customer in customers]
    clients = [client_for(customer) for customer in customers]
    per_client = 8
    failures: list[str] = []

    def customer_session(index: int) -> None:
        try:
            client, source = clients[index], accounts[index]
            destination = accounts[(index + 1) % CLIENTS]
            for _ in range(per_client):
                key = uuid.uuid4().hex
                first = _transfer(client, source, destination, key)
                replay = _transfer(client, source, destination, key)
                if first.status_code != 201 or replay.status_code != 201 or replay.json() != first.json():
                    failures.append(f"{first.status_code} {replay.status_code} {replay.content[:200]!r}")
                if replay.get("Idempotent-Replayed") != "true":
                    failures.append("the retry was not a replay")
        except Exception as exc:  # reported below with the others
            failures.append(repr(exc))
        finally:
            connection.close()

    # Without the session limits in libpq options (PgBouncer refuses them) and without
    # server-side cursors: the settings behind PgBouncer (DATABASE_SESSION_OPTIONS=false,
    # DISABLE_SERVER_SIDE_CURSORS=true).
    options = {key: value for key, value in connection.settings_dict["OPTIONS"].items() if key != "options"}
    with app_database(HOST="127.0.0.1", PORT=pgbouncer.port, OPTIONS=options, DISABLE_SERVER_SIDE_CURSORS=True):
        threads = [threading.Thread(target=customer_session, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:5]

        history = f"/api/v1/accounts/{accounts[0].pk}/transactions"
        page = clients[0].get(history, {"limit": 5})
        assert page.status_code == 200 and len(page.json()["results"]) == 5
        second = clients[0].get(history, {"limit": 5, "cursor": page.json()["next"]})
        assert second.status_code == 200 and len(second.json()["results"]) == 5
        first_ids = {row["id"] for row in page.json()["results"]}
        assert first_ids.isdisjoint(row["id"] for row in second.json()["results"])

        with connection.cursor() as cursor:  # the limits reach the sessions through PgBouncer
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == "5s"
        connection.close()

    assert Transaction.objects.filter(kind="transfer").count() == CLIENTS * per_client
    assert ledger_verify().ok
    pools = [row for row in pgbouncer.admin("SHOW POOLS") if row["database"] == connection.settings_dict["NAME"]]
    stats = [row for row in pgbouncer.admin("SHOW STATS") if row["database"] == connection.settings_dict["NAME"]]
    assert sum(row["total_xact_count"] for row in stats) >= CLIENTS * per_client * 2
    # More clients than server connections: transactions shared the pooled connections.
    assert all(row["sv_active"] + row["sv_idle"] + row["sv_used"] <= POOL_SIZE for row in pools), pools

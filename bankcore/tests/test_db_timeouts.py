"""Timeouts everywhere: the app's sessions carry statement, lock and idle-in-transaction limits,
connect timeouts and TCP keepalives; operator commands run without the session limits; a
server restart costs each app process at most one 503; outbound S3 calls are bounded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests
from django.db import connection, connections

from bankcore.testing import BASE_DIR, GunicornServer, database_app_role, owner_cursor, process_env
from bankcore.tests.outage import app_database, with_options
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres]

_SHOW = """
import django, json
django.setup()
from django.db import connections
out = {}
for alias in ("default", "journal"):
    with connections[alias].cursor() as cursor:
        for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
            cursor.execute("SHOW " + name)
            out[alias + "." + name] = cursor.fetchone()[0]
print(json.dumps(out))
"""


def _show(cursor: Any, name: str) -> str:
    cursor.execute(f"SHOW {name}")
    return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_the_app_sessions_carry_statement_lock_and_idle_limits_and_keepalives():
    with connection.cursor() as cursor:
        assert _show(cursor, "statement_timeout") == "30s"
        assert _show(cursor, "lock_timeout") == "5s"
        assert _show(cursor, "idle_in_transaction_session_timeout") == "1min"
    params = connection.connection.info.dsn_parameters
    assert params["connect_timeout"] == "5" and params["keepalives"] == "1"
    assert (params["keepalives_idle"], params["keepalives_interval"], params["keepalives_count"]) == ("30", "10", "3")
    assert params["tcp_user_timeout"] == "30000"
    # ... and the kernel applies them to the connection's socket.
    sock = socket.socket(fileno=socket.dup(connection.connection.fileno()))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    finally:
        sock.detach()


@pytest.mark.django_db
def test_operator_commands_run_without_the_session_limits_and_the_limits_follow_the_environment():
    env = process_env(DATABASE_STATEMENT_TIMEOUT_MS="1234", DATABASE_LOCK_TIMEOUT_MS="2345")
    app = subprocess.run(
        [sys.executable, "-c", _SHOW], cwd=BASE_DIR, env=env, capture_output=True, timeout=60, check=True
    )
    shown = json.loads(app.stdout.decode().strip().splitlines()[-1])
    assert shown["default.statement_timeout"] == "1234ms" and shown["default.lock_timeout"] == "2345ms"
    assert shown["journal.lock_timeout"] == "5s"  # the journal keeps its own

    operator = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", _SHOW], cwd=BASE_DIR, env=env, capture_output=True, timeout=60
    )
    assert operator.returncode == 0, operator.stderr.decode()[-2000:]
    shown = json.loads(operator.stdout.decode().strip().splitlines()[-1])
    assert shown["default.statement_timeout"] == "0" and shown["default.lock_timeout"] == "0"
    assert shown["default.idle_in_transaction_session_timeout"] == "0"
    assert shown["journal.lock_timeout"] == "5s"


@pytest.mark.django_db(transaction=True)
def test_the_ledger_verification_is_not_cut_off_by_the_statement_timeout():
    from transactions.services.verify import ledger_verify

    for _ in range(3):
        open_account(CustomerFactory(), balance=1_000)
    with app_database(OPTIONS=with_options(statement_timeout=1)):  # 1 ms: every scan would be cut off
        report = ledger_verify()
    assert report.ok, report.violations


def _app_backends(except_pid: int) -> list[int]:
    with owner_cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = %s AND pid <> %s",
            [database_app_role(), except_pid],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_after_a_database_restart_each_server_process_answers_at_most_one_503_then_recovers():
    """All the app's connections die at once, as in a restart or failover (the chaos suite crashes
    a private server; here the shared one's backends are terminated). No per-request health
    check: each gunicorn worker's first request meets its dead connection (503, retried by the
    client), Django drops it, and every later request succeeds."""
    from transactions.tests.conftest import client_for

    customer = CustomerFactory()
    open_account(customer)
    token = client_for(customer)._credentials["HTTP_AUTHORIZATION"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    workers = 2
    with GunicornServer(workers=workers) as server:
        session = requests.Session()

        def get() -> requests.Response:
            return session.get(f"{server.url}/api/v1/accounts", headers={"Authorization": token}, timeout=10)

        deadline = time.monotonic() + 20
        while len(_app_backends(own_pid)) < workers and time.monotonic() < deadline:
            assert get().status_code == 200  # warm: every worker holds a persistent connection
        assert len(_app_backends(own_pid)) >= workers
        with owner_cursor() as cursor:
            for pid in _app_backends(own_pid):
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        statuses = [get().status_code for _ in range(12)]
    assert set(statuses) <= {200, 503} and statuses.count(503) <= workers, statuses
    assert statuses[-6:] == [200] * 6, statuses


def test_an_s3_endpoint_that_never_answers_fails_the_call_within_the_timeouts(settings):
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    from bankcore.backups.storage import _s3_client

    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(5)], daemon=True).start()
    settings.BACKUP_S3_ENDPOINT_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings.BACKUP_S3_REGION = "us-east-1"
    settings.BACKUP_S3_ACCESS_KEY_ID = "test"
    settings.BACKUP_S3_SECRET_ACCESS_KEY = "test"
    settings.S3_READ_TIMEOUT = 0.5
    started = time.monotonic()
    try:
        with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
            _s3_client().list_objects_v2(Bucket="bank-backups")
    finally:
        listener.close()
        for sock in held:
            sock.close()
    assert time.monotonic() - started < 10


def test_every_alias_gets_the_connection_options():
    for alias in connections:
        options = connections[alias].settings_dict["OPTIONS"]
        assert options["connect_timeout"] and options["keepalives_idle"] and options["tcp_user_timeout"], alias
        assert "statement_timeout" in options["options"], alias
        assert not connections[alias].settings_dict.get("CONN_HEALTH_CHECKS"), alias

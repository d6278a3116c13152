"""The per-request connection health check: no round trip while the connection is fine,
a reconnect when the server has dropped it (bankcore/db/postgresql/base.py)."""

from __future__ import annotations

import time

import psycopg2
import pytest
from django.db import connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

connection = connections["default"]


def _new_request() -> None:
    """What Django does at request start and end for a persistent connection."""
    connection.close_if_unusable_or_obsolete()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def health_checked():
    enabled = connection.health_check_enabled
    connection.health_check_enabled = True
    yield
    connection.health_check_enabled = enabled


def test_a_live_idle_connection_is_checked_without_a_query(health_checked, monkeypatch):
    pid = _backend_pid()
    _new_request()
    monkeypatch.setattr(type(connection), "is_usable", lambda self: pytest.fail("sent SELECT 1"))
    assert _backend_pid() == pid


def test_a_connection_the_server_dropped_is_replaced_before_the_request_uses_it(health_checked):
    pid = _backend_pid()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params["dbname"] = "postgres"
    with psycopg2.connect(**params) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not connection.connection.closed:
        with psycopg2.connect(**params) as admin, admin.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                break
        time.sleep(0.05)
    _new_request()
    assert _backend_pid() != pid  # no error: the dead connection was noticed and replaced

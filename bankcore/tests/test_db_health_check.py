"""The per-request connection health check (CONN_HEALTH_CHECKS, Django's `SELECT 1` on a reused
connection): a connection the server or the network has lost is replaced before the request
uses it."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest
from django.db import connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

connection = connections["default"]


def _new_request(db=connection) -> None:
    """What Django does at request start and end for a persistent connection."""
    db.close_if_unusable_or_obsolete()


def _backend_pid(db=connection) -> int:
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def health_checked():
    enabled = connection.health_check_enabled
    connection.health_check_enabled = True
    yield
    connection.health_check_enabled = enabled


def test_a_connection_the_server_dropped_is_replaced_before_the_request_uses_it(health_checked):
    pid = _backend_pid()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params["dbname"] = "postgres"
    with psycopg2.connect(**params) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with psycopg2.connect(**params) as admin, admin.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                break
        time.sleep(0.05)
    _new_request()
    assert _backend_pid() != pid  # no error: the dead connection was noticed and replaced


class HalfOpenProxy:
    """A TCP proxy in front of PostgreSQL that can lose its connections the way a crashed
    host, a failover or an expired NAT entry does: the server's side ends, and the client
    hears nothing (no FIN, nothing to read) until it sends, which is answered by a reset."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._connections: list[tuple[threading.Event, threading.Event]] = []  # (lose it, lost)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            events = (threading.Event(), threading.Event())
            self._connections.append(events)
            threading.Thread(target=self._pump, args=(client, *events), daemon=True).start()

    def _pump(self, client: socket.socket, lose: threading.Event, lost: threading.Event) -> None:
        server = socket.create_connection(self.upstream)
        peer = {client: server, server: client}
        try:
            while not lose.is_set():
                readable, _, _ = select.select([client, server], [], [], 0.02)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)
            server.close()
            lost.set()
            select.select([client], [], [], 30)  # silence until the client speaks
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            server.close()
            client.close()  # with SO_LINGER 0: a reset, not a FIN

    def lose_connections(self) -> None:
        """Lose every connection made so far."""
        for lose, lost in self._connections:
            lose.set()
            assert lost.wait(5)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def through_proxy() -> Iterator[tuple[HalfOpenProxy, object]]:
    """A second Django connection to the test database through the proxy, as the app server
    configures it: persistent, health-checked."""
    settings = connection.settings_dict
    proxy = HalfOpenProxy((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    db = type(connection)(
        {**settings, "HOST": "127.0.0.1", "PORT": proxy.port, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True},
        alias="through_proxy",
    )
    yield proxy, db
    db.close()
    proxy.close()


def test_a_half_open_connection_is_detected_and_replaced_before_the_request_uses_it(through_proxy):
    proxy, db = through_proxy
    _new_request(db)
    _backend_pid(db)
    _new_request(db)  # the request ends; the connection is kept
    proxy.lose_connections()
    _new_request(db)  # the next request: its first query must not meet the dead connection
    assert _backend_pid(db)
    assert proxy.accepted == 2

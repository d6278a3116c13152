"""A pooled connection the server or the network lost, with no per-request health check
(CONN_HEALTH_CHECKS is off: its SELECT 1 cost a round trip on every request). The request that
meets the dead connection answers 503 `unavailable`, which the client retries; Django drops the
errored connection when that request ends, and the next request connects afresh."""

from __future__ import annotations

import select
import socket
import struct
import threading

import pytest
from django.db import close_old_connections, connection

from bankcore.tests.outage import LoopbackProxy, app_database
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class HalfOpenProxy(LoopbackProxy):
    """A TCP proxy in front of PostgreSQL that can lose its connections the way a crashed
    host, a failover or an expired NAT entry does: the server's side ends, and the client
    hears nothing (no FIN, nothing to read) until it sends, which is answered by a reset."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.accepted = 0
        self._connections: list[tuple[threading.Event, threading.Event]] = []  # (lose it, lost)
        super().__init__(upstream)

    def _pump(self, client: socket.socket) -> None:
        self.accepted += 1
        lose, lost = threading.Event(), threading.Event()
        self._connections.append((lose, lost))
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


def test_a_half_open_connection_costs_one_503_and_the_next_request_reconnects():
    customer = CustomerFactory()
    open_account(customer)
    client = client_for(customer)
    settings_dict = connection.settings_dict
    proxy = HalfOpenProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    try:
        with app_database(HOST="127.0.0.1", PORT=proxy.port, CONN_MAX_AGE=None):
            assert client.get("/api/v1/accounts").status_code == 200
            close_old_connections()  # the request ends; the connection is kept
            proxy.lose_connections()
            lost = client.get("/api/v1/accounts")  # meets the dead connection
            close_old_connections()
            after = [client.get("/api/v1/accounts").status_code for _ in range(3)]
            accepted = proxy.accepted
    finally:
        proxy.close()
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "unavailable", lost.content
    assert after == [200, 200, 200]
    assert accepted == 2  # one reconnect, then the new connection is reused

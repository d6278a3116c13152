"""PostgreSQL backend: django_prometheus's (query metrics) with a health check that costs no round trip.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request
on a reused connection: a round trip per request, ~0.1 ms of CPU on each side. An idle
connection that the server has closed (restart, failover, idle timeout, terminated
backend) has something to read on its socket: the server's goodbye or the EOF. So the
check polls the socket first, and only when it is readable (or the connection is not
idle, or the poll fails) does it run Django's `SELECT 1`, closing the connection if that
fails, as before.
"""

from __future__ import annotations

import select

from django_prometheus.db.backends.postgresql import base
from psycopg2.extensions import TRANSACTION_STATUS_IDLE


def _socket_quiet(connection: object) -> bool:
    """True if the idle connection's socket has nothing to read (the server has not hung up)."""
    try:
        if connection.closed or connection.get_transaction_status() != TRANSACTION_STATUS_IDLE:  # type: ignore[attr-defined]
            return False
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)  # type: ignore[attr-defined]
        return not poller.poll(0)
    except Exception:  # noqa: BLE001 - any doubt falls back to the real check
        return False


class DatabaseWrapper(base.DatabaseWrapper):
    health_check_done: bool

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and _socket_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

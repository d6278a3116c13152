"""Database outages on demand for the tests, on the real PostgreSQL.

- `app_database(...)`: every connection the app opens from now on goes where (HOST/PORT) or
  how (OPTIONS) the test says, as a restart with other settings would; restored afterwards.
- `CommitDroppingProxy`: a TCP proxy in front of PostgreSQL that, once armed, passes the next
  `COMMIT` to the server, waits for the server's answer (the commit happened) and then drops
  the client's connection without passing that answer on: the indeterminate outcome.
- `blocked_backend(holder_pid)`: the pid of the backend waiting for a lock `holder_pid` holds.
"""

from __future__ import annotations

import copy
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.db import connection

# psycopg2 ends a transaction with a simple Query message: 'Q', int32 length, "COMMIT\0".
_COMMIT_MESSAGE = b"Q\x00\x00\x00\x0bCOMMIT\x00"


@contextmanager
def app_database(**changes: Any) -> Iterator[dict[str, Any]]:
    """Apply `changes` to the default alias's settings (shared by every thread's connection)."""
    settings_dict = connection.settings_dict
    saved = copy.deepcopy(settings_dict)
    connection.close()
    settings_dict.update(changes)
    try:
        yield settings_dict
    finally:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)


def with_options(**gucs: Any) -> dict[str, Any]:
    """The default alias's OPTIONS plus server settings in libpq `options` (e.g. lock_timeout=300)."""
    options = dict(connection.settings_dict.get("OPTIONS", {}))
    extra = " ".join(f"-c {name}={value}" for name, value in gucs.items())
    options["options"] = f"{options.get('options', '')} {extra}".strip()
    return options


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def blocked_backend(holder_pid: int, *, timeout: float = 10) -> int:
    """Wait until some backend waits for a lock held by `holder_pid`; its pid."""
    from bankcore.testing import owner_cursor

    deadline = time.monotonic() + timeout
    with owner_cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [holder_pid])
            row = cursor.fetchone()
            if row:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError(f"nothing waited for a lock of backend {holder_pid} within {timeout}s")


def terminate_backend(pid: int) -> None:
    from bankcore.testing import owner_cursor

    with owner_cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


class LoopbackProxy:
    """A TCP proxy on a free loopback port in front of `upstream`: each accepted connection is
    served by `_pump(client)` in a thread of its own, which subclasses define."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()


class CommitDroppingProxy(LoopbackProxy):
    """See the module docstring. `dropped` is set once a commit's answer was withheld."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.armed = threading.Event()
        self.dropped = threading.Event()
        super().__init__(upstream)

    def _pump(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        commit_sent = False
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        server.sendall(data)
                        if self.armed.is_set() and _COMMIT_MESSAGE in data:
                            self.armed.clear()
                            commit_sent = True
                    elif commit_sent:
                        # The server answered the COMMIT: it is durable. The client never hears it.
                        self.dropped.set()
                        return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            server.close()
            client.close()


class TcpForwarder:
    """A loopback port that forwards to `upstream` while up: `up()` and `down()` make a service
    appear and vanish there (down closes every connection, as a crashed broker would)."""

    def __init__(self, upstream: tuple[str, int], port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

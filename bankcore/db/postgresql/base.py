"""PostgreSQL backend: django_prometheus's (query metrics, counted by a leaner cursor) with
fewer round trips.

Two round trips Django's backend spends per request or transaction are folded into
statements that are sent anyway:

- **Health check.** With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first
  query of every request on a reused connection. An idle connection that the server has
  closed (restart, failover, idle timeout, terminated backend) has something to read on
  its socket: the server's goodbye or the EOF. So the check polls the socket first, and
  only when it is readable (or the connection is not idle, or the poll fails) does it run
  Django's `SELECT 1`, closing the connection if that fails, as before.
- **BEGIN.** psycopg2 outside autocommit sends `BEGIN` on its own before a transaction's
  first statement and waits for the answer: a round trip per transaction, about 0.1 ms of
  CPU on each side. Here the driver connection stays in autocommit and Django's
  transaction state is kept in `TransactionConnection`; the cursor sends `BEGIN; ` in
  front of the transaction's first statement (simple query protocol: one message, one
  answer, the answer of the last statement). COMMIT and ROLLBACK are sent as statements
  when the server has a transaction open, and not at all when it has none (a block that
  never touched the database costs nothing).
- **COMMIT**, on request: `connection.commit_with_next_statement()` makes the next
  statement carry `; COMMIT`, for a transaction's owner that knows that statement is its
  last (the ledger posting of a transfer). Any statement after it, inside the same block,
  raises instead of running outside the transaction.

The transaction semantics Django's atomic blocks promise are unchanged; only the
messages that carry them are fewer.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from django.db.backends.postgresql import base as postgresql_base
from django.db.backends.utils import debug_transaction
from django.db.transaction import TransactionManagementError
from django_prometheus.db import errors_total, execute_many_total, execute_total, query_duration_seconds
from django_prometheus.db.backends.postgresql import base
from psycopg2 import extensions
from psycopg2.extensions import TRANSACTION_STATUS_IDLE


class TransactionConnection(extensions.connection):
    """psycopg2 connection, always in driver autocommit, that knows Django's transaction state."""

    # Django is inside a transaction (autocommit off): the next statement must open one on
    # the server if none is open there.
    transaction_wanted = False
    # The statement that carries the COMMIT is armed, or has been sent.
    commit_armed = False
    committed_by_statement = False
    begin_sql = "BEGIN; "

    def in_server_transaction(self) -> bool:
        return self.get_transaction_status() != TRANSACTION_STATUS_IDLE


class TransactionCursorMixin:
    """Puts the transaction's BEGIN in front of its first statement (and, when armed, its
    COMMIT after the last). Mixed into the cursor class of every TransactionConnection."""

    connection: TransactionConnection
    name: str | None

    def _before_statement(self) -> bool:
        """True if this statement must open the server's transaction."""
        conn = self.connection
        if conn.committed_by_statement:
            raise TransactionManagementError(
                "This transaction was committed with its last statement; no statement may follow in its block."
            )
        return conn.transaction_wanted and not conn.in_server_transaction()

    def _begin_alone(self) -> None:
        extensions.cursor(self.connection).execute("BEGIN")

    def execute(self, query: Any, vars: Any = None) -> Any:
        begin = self._before_statement()
        conn = self.connection
        commit = conn.commit_armed
        if (begin or commit) and self.name is not None:
            # A named cursor's statement is wrapped in DECLARE: nothing can ride on it.
            if begin:
                self._begin_alone()
            begin = False
            if commit:
                raise TransactionManagementError("A named cursor's statement cannot carry the COMMIT.")
        if begin or commit:
            if not isinstance(query, (str, bytes)):
                query = query.as_string(self)  # a psycopg2.sql composition
            text = isinstance(query, str)
            if begin:
                query = (conn.begin_sql if text else conn.begin_sql.encode()) + query
            if commit:
                query = query + ("; COMMIT" if text else b"; COMMIT")
        if not commit:
            return super().execute(query, vars)  # type: ignore[misc]
        conn.commit_armed = False
        result = super().execute(query, vars)  # type: ignore[misc]
        conn.committed_by_statement = True
        return result

    def executemany(self, query: Any, vars_list: Any) -> Any:
        self._begin_alone_if_needed()
        return super().executemany(query, vars_list)  # type: ignore[misc]

    def callproc(self, procname: str, parameters: Any = None) -> Any:
        self._begin_alone_if_needed()
        return super().callproc(procname, parameters)  # type: ignore[misc]

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
        self._begin_alone_if_needed()
        return super().copy_expert(sql, file, size)  # type: ignore[misc]

    def copy_from(self, *args: Any, **kwargs: Any) -> Any:
        self._begin_alone_if_needed()
        return super().copy_from(*args, **kwargs)  # type: ignore[misc]

    def copy_to(self, *args: Any, **kwargs: Any) -> Any:
        self._begin_alone_if_needed()
        return super().copy_to(*args, **kwargs)  # type: ignore[misc]

    def _begin_alone_if_needed(self) -> None:
        """For the driver's other ways of running SQL, on which nothing can ride."""
        if self.connection.commit_armed:
            raise TransactionManagementError("Only execute() can carry the COMMIT.")
        if self._before_statement():
            self._begin_alone()


def measured_cursor_class(base_cursor: type, alias: str, vendor: str) -> type:
    """`base_cursor` counting statements, errors and durations into django_prometheus's metrics
    (same names as its own cursor wrapper). The labelled children are looked up once here,
    not on every statement."""
    executed = execute_total.labels(alias, vendor)
    executed_many = execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)

    def measured(run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return run()
        except Exception as exc:
            errors_total.labels(alias, vendor, type(exc).__name__).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - start)

    class MeasuredCursor(base_cursor):  # type: ignore[valid-type, misc]
        def execute(self, query: Any, vars: Any = None) -> Any:
            executed.inc()
            return measured(lambda: super(MeasuredCursor, self).execute(query, vars))

        def executemany(self, query: Any, vars_list: Any) -> Any:
            vars_list = list(vars_list)
            executed.inc(len(vars_list))
            executed_many.inc(len(vars_list))
            return measured(lambda: super(MeasuredCursor, self).executemany(query, vars_list))

    return MeasuredCursor


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
    connection: TransactionConnection | None

    def get_connection_params(self) -> dict[str, Any]:
        # Django's parameters, not django_prometheus's: its cursor wrapper is replaced by
        # MeasuredCursor (same metrics, less work per statement).
        params = postgresql_base.DatabaseWrapper.get_connection_params(self)
        measured = measured_cursor_class(params["cursor_factory"], self.alias, self.vendor)
        params["connection_factory"] = TransactionConnection
        params["cursor_factory"] = type("TransactionCursor", (TransactionCursorMixin, measured), {})
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> TransactionConnection:
        connection = super().get_new_connection(conn_params)
        # Transactions are begun by the cursor, so the isolation level goes with that BEGIN.
        if "isolation_level" in self.settings_dict["OPTIONS"]:  # Django has validated it as self.isolation_level
            connection.begin_sql = f"BEGIN ISOLATION LEVEL {self.isolation_level.name.replace('_', ' ')}; "
        return connection

    def _set_autocommit(self, autocommit: bool) -> None:
        connection = self.driver_connection()
        if autocommit and connection.in_server_transaction():
            # psycopg2 refuses this too: the open transaction would never be committed.
            raise TransactionManagementError("Autocommit cannot be turned on while a transaction is open.")
        with self.wrap_database_errors:
            if not connection.autocommit:
                connection.autocommit = True  # once, when connected; Django's state lives below
            connection.transaction_wanted = not autocommit
            connection.commit_armed = connection.committed_by_statement = False

    def driver_connection(self) -> TransactionConnection:
        assert self.connection is not None, "not connected"
        return self.connection

    def _end_transaction(self, statement: str) -> None:
        connection = self.connection
        if connection is None:
            return
        connection.commit_armed = connection.committed_by_statement = False
        if connection.in_server_transaction():  # nothing to end if no statement ran (or one committed)
            with debug_transaction(self, statement), self.wrap_database_errors:
                extensions.cursor(connection).execute(statement)

    def _commit(self) -> None:
        self._end_transaction("COMMIT")

    def _rollback(self) -> None:
        self._end_transaction("ROLLBACK")

    def commit_with_next_statement(self) -> None:
        """The next statement on this connection ends the transaction: it is sent with `; COMMIT`.

        Only for the owner of the outermost atomic block, as its last statement: the COMMIT
        then happens in that statement's round trip, the block's exit sends nothing, and any
        statement after it in the block raises TransactionManagementError. If the statement
        fails, nothing is committed (the block's exit rolls back as usual).
        """
        if not self.in_atomic_block or len(self.atomic_blocks) != 1 or self.savepoint_ids or self.needs_rollback:
            raise TransactionManagementError("Only the outermost atomic block's last statement can carry its COMMIT.")
        self.ensure_connection()
        self.driver_connection().commit_armed = True

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

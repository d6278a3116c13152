"""Reads that may go to a streaming read replica, and when they must not.

`DATABASE_REPLICA_URL` (optional) adds the `replica` database alias. Nothing is routed to it
implicitly: the reads that can bear a replica (account history, statements; insights once they
exist) ask `read_database()` for their alias and use `.using(alias)`. It answers "replica" only
when all of these hold, else "default" (the primary):

- a replica is configured;
- the caller runs inside a request (or another `replica_scope()`): outside one - Celery tasks,
  commands, a streamed response's generator - nobody tracks writes, so the primary;
- this request has not written: every statement on the primary that is not a plain SELECT, and
  every statement inside `transaction.atomic`, marks the request as having written (a
  SELECT audit_append(...) writes too), so a read after a write sees that write;
- we are not inside an atomic block on the primary (a transaction reads its own snapshot);
- the replica is in recovery (not promoted: a promoted one has left our timeline) and its replay
  lag is at most REPLICA_MAX_LAG_SECONDS. The lag is measured on the replica at most every
  REPLICA_LAG_CHECK_SECONDS per process (cached); a replica that does not answer counts as
  lagging until the next check.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)
T = TypeVar("T")

PRIMARY_ALIAS = "default"
REPLICA_ALIAS = "replica"

# None: not in a tracked scope. A one-element list: [wrote?] of the current request.
_scope: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("bankcore_replica_scope", default=None)
# The alias decided for a streamed response's generator (reads_pinned), which runs after the request.
_pinned: contextvars.ContextVar[str | None] = contextvars.ContextVar("bankcore_replica_pinned", default=None)

_lag_lock = threading.Lock()
_lag_memo: tuple[float, float | None] | None = None  # (monotonic expiry, lag seconds or None = unusable)

_READ_ONLY_PREFIXES = ("select", "show")


def replica_configured() -> bool:
    return REPLICA_ALIAS in connections.settings


def _flag_writes(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    scope = _scope.get()
    if scope is not None and not scope[0]:
        connection = context["connection"]
        if connection.in_atomic_block or not sql.lstrip().lower().startswith(_READ_ONLY_PREFIXES):
            scope[0] = True
    return execute(sql, params, many, context)


@contextmanager
def replica_scope() -> Iterator[None]:
    """Track writes on the primary for the block (one request, one task): reads inside may use the
    replica until the first write. Nested scopes share the outer one."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set([False])
    try:
        with connections[PRIMARY_ALIAS].execute_wrapper(_flag_writes):
            yield
    finally:
        _scope.reset(token)


def replica_lag_seconds(*, fresh: bool = False) -> float | None:
    """The replica's replay lag in seconds (0 when it has replayed all it received), or None when
    it cannot serve: not configured, unreachable, promoted, or nothing replayed yet. Cached."""
    global _lag_memo
    now = time.monotonic()
    memo = _lag_memo
    if not fresh and memo is not None and memo[0] > now:
        return memo[1]
    lag = _measure_lag() if replica_configured() else None
    with _lag_lock:
        _lag_memo = (now + settings.REPLICA_LAG_CHECK_SECONDS, lag)
    return lag


def _measure_lag() -> float | None:
    try:
        with connections[REPLICA_ALIAS].cursor() as cursor:
            cursor.execute(
                """
                SELECT pg_is_in_recovery(),
                       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
                """
            )
            in_recovery, lag = cursor.fetchone()
    except DatabaseError:
        logger.warning("read replica unreachable; reading from the primary")
        connections[REPLICA_ALIAS].close()
        return None
    if not in_recovery:
        logger.error("the read replica is not in recovery (promoted?); reading from the primary")
        return None
    return None if lag is None else max(0.0, float(lag))


def replica_lag_cache_clear() -> None:
    global _lag_memo
    with _lag_lock:
        _lag_memo = None


def read_database() -> str:
    """The alias a replica-tolerant read should use now: "replica" or "default" (see module doc)."""
    if not replica_configured():
        return PRIMARY_ALIAS
    pinned = _pinned.get()
    if pinned is not None:
        return pinned
    scope = _scope.get()
    if scope is None or scope[0] or connections[PRIMARY_ALIAS].in_atomic_block:
        return PRIMARY_ALIAS
    lag = replica_lag_seconds()
    if lag is None or lag > settings.REPLICA_MAX_LAG_SECONDS:
        return PRIMARY_ALIAS
    return REPLICA_ALIAS


def reads_pinned(items: Iterable[T]) -> Iterator[T]:
    """`items` (a generator a streamed response runs after the request returned), with every
    read_database() inside it answering what it answers now, in the request: a statement
    streamed from the replica stays on it (the rows it reads are immutable ledger entries)."""
    return _pinned_iteration(read_database(), iter(items))  # decided now, not at the first next()


def _pinned_iteration(alias: str, iterator: Iterator[T]) -> Iterator[T]:
    while True:
        token = _pinned.set(alias)
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            _pinned.reset(token)
        yield item


class ReplicaScopeMiddleware:
    """Each request is one replica_scope: its reads may use the replica until it writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        with replica_scope():
            return self.get_response(request)


class ReplicaRouter:
    """Migrations never run on the replica (it is read-only; it gets the primary's schema by
    replication). Says nothing about any other alias or any read or write: those are routed
    explicitly, so other aliases (e.g. a journal connection) are untouched."""

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return False if db == REPLICA_ALIAS else None

"""Running a unit of work in a database transaction, retrying transient conflicts.

Row locks are taken in one global order, so deadlocks should not happen; yet PostgreSQL
may still report a deadlock (40P01) or a serialization failure (40001) - e.g. if a
future isolation level change or an unforeseen lock path appears. Those are retried a
bounded number of times with jitter; the client never sees a database error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

from bankcore.api.exceptions import ServiceUnavailable

T = TypeVar("T")
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return getattr(cause, "pgcode", None) in TRANSIENT_SQLSTATES


def atomic_with_retry(work: Callable[[], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `work` in one transaction; retry it on deadlock/serialization failure.

    Inside an enclosing atomic block the work runs once (a retry must restart the
    whole outer transaction, which its owner does). After `attempts` transient
    failures it raises ServiceUnavailable (503), never the database error.
    """
    if connection.in_atomic_block:
        return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise ServiceUnavailable("The bank is busy; please retry.") from exc
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")

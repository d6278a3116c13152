"""Suite-wide fixtures and the service policy.

The suite runs on the real services: PostgreSQL, Redis and Celery workers. When one does not
answer, the run stops at once and names it (exit code 3): a green run never hides skipped
tests. Skipping the tests that need a missing service is an explicit opt-in,
ALLOW_MISSING_SERVICES=1, and the summary then says so in red.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

_NEEDS = {"postgres": ("postgres",), "redis": ("redis",), "celery": ("redis", "postgres")}
_skipped_for: dict[str, int] = {}


def _skips_allowed() -> bool:
    return os.environ.get("ALLOW_MISSING_SERVICES") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = getattr(settings, "MISSING_SERVICES", {})
    if missing and not _skips_allowed():
        pytest.exit(
            "Services the tests need are not running: "
            + "; ".join(missing.values())
            + ". Start them (see README), or set ALLOW_MISSING_SERVICES=1 to skip the tests that need them.",
            returncode=3,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = getattr(settings, "MISSING_SERVICES", {})
    if not missing:
        return
    for item in items:
        for marker, services in _NEEDS.items():
            if item.get_closest_marker(marker) is None:
                continue
            absent = [s for s in services if s in missing]
            if absent:
                reason = "; ".join(missing[s] for s in absent)
                item.add_marker(pytest.mark.skip(reason=f"SERVICE MISSING: {reason}"))
                _skipped_for[reason] = _skipped_for.get(reason, 0) + 1
                break


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason, count in _skipped_for.items():
        terminalreporter.write_sep("!", f"SKIPPED {count} tests: {reason}", red=True, bold=True)


@pytest.fixture(autouse=True)
def audit_checkpoints_in_tmp(settings: Any, tmp_path: Any) -> None:
    """Each test's audit checkpoints in a directory of its own, never the developer's var/ ones."""
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "audit-checkpoints")
    settings.AUDIT_CHECKPOINT_S3_BUCKET = ""


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database, created and migrated as the owner; the tests then run as the runtime
    role (bankcore.testing.setup_app_role), and transactional tests are flushed as the owner."""
    if "postgres" in getattr(settings, "MISSING_SERVICES", {}):
        yield
        return
    from bankcore.testing import (
        database_app_role,
        database_owner,
        flush_as_owner_between_tests,
        owner_cursor,
        setup_app_role,
        use_database_role,
    )
    from transactions.tests.faults import install_fault_switch

    with django_db_blocker.unblock():
        setup_app_role()
        with owner_cursor() as cursor:
            install_fault_switch(cursor, app_role=database_app_role())
    flush_as_owner_between_tests()
    yield
    use_database_role(database_owner())  # the owner drops the test database


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def redis_flushed() -> Iterator[None]:
    """Start from an empty Redis database (the test database index only)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture
def celery_worker_process(transactional_db: Any) -> Iterator[Any]:
    """A real Celery worker on the test database and the Redis broker, for one test.

    Per test, not per session: a worker left running would pick up tasks that later
    tests publish and touch the database while pytest-django truncates it. Stale tasks
    from earlier tests are purged first; the worker stops before the tables are flushed.
    """
    from bankcore.celery import app
    from bankcore.flags import flag_lower
    from bankcore.testing import CeleryWorker
    from transactions.services.notices import WAKE_FLAG

    app.control.purge()
    flag_lower(WAKE_FLAG)  # its drain message was just purged
    worker = CeleryWorker().start()
    try:
        yield worker
    finally:
        worker.stop()

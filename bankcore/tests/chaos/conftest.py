"""Fixtures of the chaos suite: a migrated private PostgreSQL server per test (copied from one
migrated per session), a private Redis, and the environment of the bank's processes on them."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankcore.embedded_db import APP_ROLE
from bankcore.testing import process_env
from bankcore.tests.chaos.servers import PrivatePostgres, PrivateRedis, migrated, scratch_dir


class _Template:
    """A stopped cluster whose database `bankcore` was made as `make schema` makes it (the owner
    migrates, `grant_app_role` equips the runtime role), built in a thread of its own: migrating
    takes tens of seconds, so it starts as soon as the session knows it will run a chaos test and
    is ready by the time one runs; each test then starts a copy of it."""

    def __init__(self) -> None:
        self.directory = scratch_dir("bankcore-chaos-template-")
        self.server = PrivatePostgres(self.directory / "postgres")
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._build, name="chaos-template", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        try:
            self.server.start()
            migrated(self.server, process_env())
            self.server.stop()
        except BaseException as exc:  # handed to the test that needs the template
            self.error = exc

    def ready(self, timeout: float = 600) -> Path:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"the chaos suite's migrated cluster was not ready within {timeout}s")
        if self.error is not None:
            raise RuntimeError("the chaos suite's migrated cluster could not be made") from self.error
        return self.server.root

    def remove(self) -> None:
        self.thread.join(600)
        self.server.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


_template: _Template | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _template
    if session.config.option.collectonly:
        return
    if _template is None and any(item.get_closest_marker("chaos") for item in session.items):
        _template = _Template()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _template is not None:
        _template.remove()


@pytest.fixture(scope="session")
def migrated_cluster() -> Path:
    global _template
    if _template is None:  # collected some other way: build it now
        _template = _Template()
    return _template.ready()


@pytest.fixture
def chaos_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The test's files: servers' data and logs, the worker's log, the notification outbox. Kept
    when the test fails (the logs say what happened), removed otherwise."""
    directory = scratch_dir("bankcore-chaos-")
    yield directory
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\nchaos: the failed test's servers' logs and files are kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private_postgres(migrated_cluster: Path, chaos_dir: Path) -> Iterator[PrivatePostgres]:
    """A copy of the migrated cluster, running on a free loopback port; removed afterwards."""
    root = chaos_dir / "postgres"
    # `cp -a`: as root the files belong to the server's own user, and must stay theirs.
    subprocess.run(["cp", "-a", str(migrated_cluster), str(root)], check=True)
    server = PrivatePostgres(root)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_redis(chaos_dir: Path) -> Iterator[PrivateRedis]:
    directory = chaos_dir / "redis"
    directory.mkdir()
    server = PrivateRedis(directory).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bank_env(private_postgres: PrivatePostgres, private_redis: PrivateRedis, chaos_dir: Path) -> dict[str, Any]:
    """The environment of the bank's processes (web, worker, commands) on the private servers,
    logged in as the runtime role as in production; files in the test's own directory."""
    return process_env(
        DATABASE_URL=private_postgres.url(APP_ROLE),
        REDIS_URL=private_redis.url(0),
        CELERY_BROKER_URL=private_redis.url(1),
        CELERY_RESULT_BACKEND=private_redis.url(2),
        NOTIFICATIONS_OUTBOX_DIR=str(chaos_dir / "outbox"),
        BACKUP_DIR=str(chaos_dir / "backups"),
        AUDIT_CHECKPOINT_DIR=str(chaos_dir / "audit-checkpoints"),
        AUDIT_CHECKPOINT_S3_BUCKET="",
        BACKUP_S3_BUCKET="",
    )

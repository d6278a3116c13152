"""Fixtures of the chaos suite: a migrated private PostgreSQL server per test (copied from one
migrated per session), a private Redis, and the environment of the bank's processes on them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankcore.embedded_db import APP_ROLE
from bankcore.testing import process_env
from bankcore.tests.chaos.servers import PrivatePostgres, PrivateRedis, migrated, scratch_dir


@pytest.fixture(scope="session")
def migrated_cluster() -> Iterator[Path]:
    """A stopped cluster whose database `bankcore` was made as `make schema` makes it (the
    owner migrates, `grant_app_role` equips the runtime role). Migrating takes tens of seconds,
    so it is done once; each test starts a copy of it."""
    directory = scratch_dir("bankcore-chaos-template-")
    server = PrivatePostgres(directory / "postgres")
    try:
        server.start()
        migrated(server, process_env())
        server.stop()
        yield server.root
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


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

"""Fixtures of bankcore's tests. Backups and drills: a backup store per test, scratch databases, a bank."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bankcore.backups.postgres import Target
from bankcore.testing import database_owner, database_url_of_current_connection, owner_cursor
from transactions.tests.gateway_fixture import gateway, gateway_simulator, settlement_worker  # noqa: F401 - fixtures

KEY = "backup-key-one-0123456789abcdef0123456789abcdef"
OTHER_KEY = "backup-key-two-fedcba9876543210fedcba9876543210"


def owner_target() -> Target:
    """The test database as its owner (who may create databases)."""
    target = Target.from_url(database_url_of_current_connection())
    return Target(target.name, database_owner(), target.password, target.host, target.port)


@pytest.fixture
def backups(settings: Any, tmp_path: Any) -> Any:
    """Backups in a directory of this test's own, with a known key; drills on the test server."""
    settings.BACKUP_DIR = str(tmp_path / "backups")
    settings.BACKUP_S3_BUCKET = ""
    settings.BACKUP_ENCRYPTION_KEYS = [KEY]
    settings.DR_DRILL_DATABASE_URL = owner_target().url()
    return settings


def create_database(name: str) -> None:
    with owner_cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with owner_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(name: str) -> bool:
    with owner_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@pytest.fixture
def empty_database() -> Iterator[Target]:
    """A new, empty database on the test server (dropped afterwards), as the owner."""
    name = f"bankcore_restore_{secrets.token_hex(4)}"
    create_database(name)
    try:
        yield owner_target().with_name(name)
    finally:
        drop_database(name)


def public_tables(target: Target) -> int:
    conn = target.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def bank(transactional_db: Any) -> dict[str, Any]:
    """Customers, funded accounts and transfers: ledger rows and audit events, committed."""
    from accounts.tests.factories import UserFactory
    from transactions.services.transfers import transfer_create
    from transactions.tests.factories import open_account

    alice, bob = UserFactory(), UserFactory()
    source = open_account(alice, balance=500_00)
    destination = open_account(bob, balance=10_00)
    for amount in (1_00, 2_50, 7_25):
        transfer_create(
            user=alice, source_account_id=source.pk, destination_iban=destination.iban, amount=amount, currency="EUR"
        )
    return {"alice": alice, "bob": bob, "source": source, "destination": destination}


@pytest.fixture
def s3_backups(settings: Any, backups: Any) -> Iterator[Any]:
    """A real S3 API (moto's server) on a loopback port, with an empty bucket configured for backups."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10).raise_for_status()
        settings.BACKUP_S3_BUCKET = "bank-backups"
        settings.BACKUP_S3_PREFIX = "db/"
        settings.BACKUP_S3_ENDPOINT_URL = f"http://{host}:{port}"
        settings.BACKUP_S3_REGION = "us-east-1"
        settings.BACKUP_S3_ACCESS_KEY_ID = "test-access-key"
        settings.BACKUP_S3_SECRET_ACCESS_KEY = "test-secret-key"
        client = boto3.client(
            "s3",
            endpoint_url=settings.BACKUP_S3_ENDPOINT_URL,
            region_name="us-east-1",
            aws_access_key_id="test-access-key",
            aws_secret_access_key="test-secret-key",
        )
        client.create_bucket(Bucket="bank-backups")
        yield client
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the test item (`item.rep_call`...), so a fixture's teardown can
    tell whether the test failed (the browser tests then keep screenshots)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)

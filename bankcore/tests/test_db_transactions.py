"""Transactions through bankcore's PostgreSQL backend (bankcore/db/postgresql/base.py): BEGIN
rides on a transaction's first statement and, on request, COMMIT on its last, with
Django's atomic-block semantics unchanged."""

from __future__ import annotations

import io

import psycopg2
import pytest
from django.db import IntegrityError, connections, transaction
from django.db.transaction import TransactionManagementError
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS

from bankcore.testing import connected_as_owner

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

connection = connections["default"]


@pytest.fixture
def scratch_table():
    """A table of our own, and a second session to see what is committed. As the owner: the
    app's runtime role may not create or alter tables, and these tests are about the backend."""
    with connected_as_owner():
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE scratch_rows (n integer PRIMARY KEY)")
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("connection_factory", None)
        other = psycopg2.connect(**params)
        other.autocommit = True
        yield other
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE scratch_rows")


def committed_rows(other) -> list[int]:
    with other.cursor() as cursor:
        cursor.execute("SELECT n FROM scratch_rows ORDER BY n")
        return [n for (n,) in cursor.fetchall()]


def insert(n: int):
    cursor = connection.cursor()
    cursor.execute("INSERT INTO scratch_rows (n) VALUES (%s)", [n])
    return cursor.cursor  # the driver's cursor: .query is what was sent


def server_status() -> int:
    return connection.connection.get_transaction_status()


def test_begin_travels_with_the_first_statement_and_commit_ends_the_block(scratch_table):
    connection.ensure_connection()
    with transaction.atomic():
        assert server_status() == TRANSACTION_STATUS_IDLE  # nothing sent yet
        first = insert(1)
        assert first.query.startswith(b"BEGIN; INSERT")
        assert server_status() == TRANSACTION_STATUS_INTRANS
        second = insert(2)
        assert not second.query.startswith(b"BEGIN")
        assert committed_rows(scratch_table) == []  # the other session sees nothing yet
    assert server_status() == TRANSACTION_STATUS_IDLE
    assert committed_rows(scratch_table) == [1, 2]


def test_an_exception_rolls_the_whole_block_back(scratch_table):
    with pytest.raises(RuntimeError), transaction.atomic():
        insert(1)
        with transaction.atomic():  # a savepoint inside works as before
            insert(2)
        raise RuntimeError
    assert committed_rows(scratch_table) == []
    insert(3)  # outside a block: autocommit, committed at once
    assert committed_rows(scratch_table) == [3]


def test_a_failed_savepoint_keeps_the_rest_of_the_block(scratch_table):
    with transaction.atomic():
        insert(1)
        with pytest.raises(IntegrityError), transaction.atomic():
            insert(1)
        insert(2)
    assert committed_rows(scratch_table) == [1, 2]


def test_statements_that_cannot_carry_begin_send_it_first(scratch_table):
    with pytest.raises(RuntimeError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO scratch_rows (n) VALUES (%s)", [[1], [2]])
        assert server_status() == TRANSACTION_STATUS_INTRANS
        raise RuntimeError
    assert committed_rows(scratch_table) == []
    with pytest.raises(RuntimeError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.copy_from(io.StringIO("7\n8\n"), "scratch_rows", columns=["n"])
        assert server_status() == TRANSACTION_STATUS_INTRANS
        raise RuntimeError
    assert committed_rows(scratch_table) == []
    insert(5)
    with transaction.atomic():
        chunked = connection.chunked_cursor()  # a named (server-side) cursor: DECLARE ...
        chunked.execute("SELECT n FROM scratch_rows")
        assert chunked.fetchall() == [(5,)]
        assert server_status() == TRANSACTION_STATUS_INTRANS


def test_the_last_statement_can_carry_the_commit(scratch_table):
    with transaction.atomic():
        insert(1)
        connection.commit_with_next_statement()
        last = insert(2)
        assert last.query.endswith(b"; COMMIT")
        assert committed_rows(scratch_table) == [1, 2]  # committed before the block ends
        with pytest.raises(TransactionManagementError):
            insert(3)  # would run outside the transaction: refused
    with transaction.atomic():  # the connection carries on as usual
        insert(4)
    assert committed_rows(scratch_table) == [1, 2, 4]


def test_a_transaction_of_one_statement_is_one_round_trip(scratch_table):
    with transaction.atomic():
        connection.commit_with_next_statement()
        only = insert(1)
    assert only.query.startswith(b"BEGIN; INSERT") and only.query.endswith(b"; COMMIT")
    assert committed_rows(scratch_table) == [1]


def test_a_failing_last_statement_commits_nothing(scratch_table):
    insert(1)
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(2)
        connection.commit_with_next_statement()
        insert(1)  # duplicate key: the COMMIT behind it never runs
    assert committed_rows(scratch_table) == [1]
    assert server_status() == TRANSACTION_STATUS_IDLE


def test_a_deferred_constraint_failing_at_the_carried_commit_commits_nothing(scratch_table):
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE scratch_rows ADD CONSTRAINT scratch_self FOREIGN KEY (n) REFERENCES scratch_rows (n)"
            " DEFERRABLE INITIALLY DEFERRED"
        )
        cursor.execute("ALTER TABLE scratch_rows ADD COLUMN parent integer")
        cursor.execute(
            "ALTER TABLE scratch_rows ADD CONSTRAINT scratch_parent FOREIGN KEY (parent) REFERENCES scratch_rows (n)"
            " DEFERRABLE INITIALLY DEFERRED"
        )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO scratch_rows (n, parent) VALUES (1, 1)")
        connection.commit_with_next_statement()
        cursor.execute("INSERT INTO scratch_rows (n, parent) VALUES (2, 99)")  # no row 99: fails at COMMIT
    assert committed_rows(scratch_table) == []


def test_only_the_outermost_block_can_commit_with_a_statement(scratch_table):
    with pytest.raises(TransactionManagementError):
        connection.commit_with_next_statement()  # not in a block at all
    with transaction.atomic():
        insert(1)
        with transaction.atomic(), pytest.raises(TransactionManagementError):
            connection.commit_with_next_statement()  # inside a savepoint
    assert committed_rows(scratch_table) == [1]


def test_statements_are_counted_and_timed_for_metrics(scratch_table):
    from prometheus_client import REGISTRY

    labels = {"alias": "default", "vendor": "postgresql"}

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    before = (
        sample("django_db_execute_total"),
        sample("django_db_query_duration_seconds_count"),
        sample("django_db_errors_total", type="UniqueViolation"),
        sample("django_db_execute_many_total"),
    )
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:  # the driver's cursor: no health check in between
        cursor.execute("INSERT INTO scratch_rows (n) VALUES (1)")
        with pytest.raises(psycopg2.IntegrityError):
            cursor.execute("INSERT INTO scratch_rows (n) VALUES (1)")
        cursor.executemany("INSERT INTO scratch_rows (n) VALUES (%s)", [[2], [3]])
    assert sample("django_db_execute_total") - before[0] == 4  # two statements, then two in bulk
    assert sample("django_db_query_duration_seconds_count") - before[1] == 3
    assert sample("django_db_errors_total", type="UniqueViolation") - before[2] == 1
    assert sample("django_db_execute_many_total") - before[3] == 2


def test_autocommit_cannot_be_turned_on_with_a_transaction_open(scratch_table):
    transaction.set_autocommit(False)
    try:
        insert(1)
        with pytest.raises(TransactionManagementError):
            transaction.set_autocommit(True)  # would leave the insert uncommitted forever
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert committed_rows(scratch_table) == [1]


def test_an_isolation_level_from_the_settings_goes_with_the_begin():
    serializable_level = psycopg2.extensions.ISOLATION_LEVEL_SERIALIZABLE
    options = {**connection.settings_dict["OPTIONS"], "isolation_level": serializable_level}
    serializable = type(connection)({**connection.settings_dict, "OPTIONS": options}, alias="serializable_test")
    try:
        serializable.set_autocommit(False)  # what an atomic block does on this connection
        with serializable.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "serializable"
        serializable.rollback()
        serializable.set_autocommit(True)
        with serializable.cursor() as cursor:  # and outside a transaction, the server's default
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "read committed"
    finally:
        serializable.close()

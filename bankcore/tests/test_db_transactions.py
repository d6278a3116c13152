"""What bankcore relies on from Django's stock PostgreSQL backend (through django-prometheus's
wrapper): atomic blocks are real server transactions from their first statement, server-side
cursors live inside them, and every statement is counted for the metrics."""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
from django.db import DatabaseError, IntegrityError, ProgrammingError, connections, transaction
from psycopg2 import errors as pg_errors

from accounts.models import User
from bankcore.testing import connected_as_owner

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

connection = connections["default"]


def other_session() -> psycopg2.extensions.connection:
    """A second, autocommit session with the same login: it sees only what is committed."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg2.connect(**params)
    other.autocommit = True
    return other


@pytest.fixture
def scratch_table():
    """A table of our own (created as the owner: the runtime role may not create tables),
    and a second session to see what is committed."""
    with connected_as_owner():
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE scratch_rows (n integer PRIMARY KEY)")
        other = other_session()
        yield other
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE scratch_rows")


def committed_rows(other) -> list[int]:
    with other.cursor() as cursor:
        cursor.execute("SELECT n FROM scratch_rows ORDER BY n")
        return [n for (n,) in cursor.fetchall()]


def insert(n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO scratch_rows (n) VALUES (%s)", [n])


def test_select_for_update_iterator_inside_atomic_locks_the_rows_through_a_transaction_scoped_cursor():
    users = [User.objects.create_user(email=f"locked{n}@example.com", full_name="Locked") for n in range(3)]
    other = other_session()
    try:
        seen = []
        with transaction.atomic():
            rows = User.objects.select_for_update().filter(pk__in=[u.pk for u in users]).order_by("email")
            for user in rows.iterator(chunk_size=2):  # a server-side cursor (DECLARE), read in chunks
                seen.append(user.email)
                with connection.cursor() as cursor:
                    # Without WITH HOLD: the cursor ends with the transaction, as FOR UPDATE requires.
                    cursor.execute("SELECT bool_or(is_holdable) FROM pg_cursors")
                    assert cursor.fetchone()[0] is False
                with other.cursor() as cursor, pytest.raises(pg_errors.LockNotAvailable):
                    cursor.execute("SELECT 1 FROM accounts_user WHERE id = %s FOR UPDATE NOWAIT", [user.pk])
        assert seen == ["locked0@example.com", "locked1@example.com", "locked2@example.com"]
        with other.cursor() as cursor:  # the block's end released the locks
            cursor.execute("SELECT id FROM accounts_user WHERE id = ANY(%s) FOR UPDATE NOWAIT", [[u.pk for u in users]])
            assert len(cursor.fetchall()) == 3
    finally:
        other.close()


def test_a_syntax_error_in_the_first_statement_aborts_the_block_and_nothing_it_writes_commits(scratch_table):
    with contextlib.suppress(DatabaseError), transaction.atomic():
        with contextlib.suppress(ProgrammingError), connection.cursor() as cursor:
            cursor.execute("SELEC 1")  # the transaction's first statement, rejected by the parser
        insert(1)  # the transaction is aborted: this must not run in a fresh one and commit
    assert committed_rows(scratch_table) == []
    insert(2)  # the connection is fine afterwards
    assert committed_rows(scratch_table) == [2]


def test_nothing_commits_before_the_block_ends_and_an_exception_rolls_it_all_back(scratch_table):
    with transaction.atomic():
        insert(1)
        assert committed_rows(scratch_table) == []  # the other session sees nothing yet
    assert committed_rows(scratch_table) == [1]
    with pytest.raises(RuntimeError), transaction.atomic():
        insert(2)
        with transaction.atomic():  # a savepoint inside
            insert(3)
        raise RuntimeError
    assert committed_rows(scratch_table) == [1]


def test_a_failed_savepoint_keeps_the_rest_of_the_block(scratch_table):
    with transaction.atomic():
        insert(1)
        with pytest.raises(IntegrityError), transaction.atomic():
            insert(1)
        insert(2)
    assert committed_rows(scratch_table) == [1, 2]


def test_statements_are_counted_and_timed_under_django_prometheus_metric_names(scratch_table):
    from django_prometheus.db import errors_total, execute_many_total, execute_total, query_duration_seconds

    labels = {"alias": "default", "vendor": "postgresql"}

    def sample(metric, name: str, **extra: str) -> float:
        # From the metric itself: the whole registry's collection would run bankcore's own
        # collectors, whose queries count too.
        wanted = {**labels, **extra}
        values = [
            s.value for family in metric.collect() for s in family.samples if s.name == name and s.labels == wanted
        ]
        return values[0] if values else 0.0

    def samples() -> tuple[float, ...]:
        return (
            sample(execute_total, "django_db_execute_total"),
            sample(query_duration_seconds, "django_db_query_duration_seconds_count"),
            sample(execute_many_total, "django_db_execute_many_total"),
            sample(errors_total, "django_db_errors_total", type="UniqueViolation"),
        )

    connection.ensure_connection()  # what connecting runs is not counted below
    before = samples()
    with connection.connection.cursor() as cursor:  # the driver's cursor: no health check in between
        cursor.execute("INSERT INTO scratch_rows (n) VALUES (1)")
        with pytest.raises(psycopg2.IntegrityError):
            cursor.execute("INSERT INTO scratch_rows (n) VALUES (1)")
        cursor.executemany("INSERT INTO scratch_rows (n) VALUES (%s)", [[2], [3]])
    executed, timed, executed_many, unique_violations = (now - was for now, was in zip(samples(), before, strict=True))
    assert executed == 4  # two statements, then two in bulk
    assert timed == 3
    assert executed_many == 2
    assert unique_violations == 1

"""Real PostgreSQL failures on demand, for the error paths of money-moving code.

    with journal_inserts_fail(sqlstate="40001") as fault:   # every posting: serialization failure
        ...
    assert fault.attempts() == 5

A trigger on the journal table raises inside the posting's own statement - after every
business check and after a step-up token was consumed - exactly as PostgreSQL would on a
serialization failure (40001), a deadlock (40P01) or any other error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection

_SEQUENCE = "test_fault_journal_inserts"


class JournalFault:
    def attempts(self) -> int:
        """How many journal inserts were attempted since the fault was installed."""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {_SEQUENCE}")
            return int(cursor.fetchone()[0])


@contextmanager
def journal_inserts_fail(*, sqlstate: str, times: int | None = None) -> Iterator[JournalFault]:
    """Make the first `times` inserts into transactions_transaction (all, if None) raise `sqlstate`.

    The counter is a sequence, so it is not rolled back with the failed transaction: a retry
    sees the fault spent. Installed and removed with DDL on the current connection (in a
    `transactional_db` test the fault is visible to every connection while installed).
    """
    limit = "NULL" if times is None else str(int(times))
    if not (len(sqlstate) == 5 and sqlstate.isalnum()):
        raise ValueError(sqlstate)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SEQUENCE {_SEQUENCE}")
        cursor.execute(
            f"""
            CREATE FUNCTION test_fault_journal_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE attempt bigint := nextval('{_SEQUENCE}');
            BEGIN
                IF {limit} IS NULL OR attempt <= {limit} THEN
                    RAISE EXCEPTION 'injected fault on journal insert %', attempt USING ERRCODE = '{sqlstate}';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        cursor.execute(
            "CREATE TRIGGER test_fault_journal_insert BEFORE INSERT ON transactions_transaction"
            " FOR EACH ROW EXECUTE FUNCTION test_fault_journal_insert()"
        )
    try:
        yield JournalFault()
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER test_fault_journal_insert ON transactions_transaction")
                cursor.execute("DROP FUNCTION test_fault_journal_insert()")
                cursor.execute(f"DROP SEQUENCE {_SEQUENCE}")
        except DatabaseError:
            # Only when the test's own transaction is broken: its rollback removes the fault.
            if not connection.in_atomic_block:
                raise

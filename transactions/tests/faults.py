"""Real PostgreSQL failures on demand, for the error paths of money-moving code.

    with journal_inserts_fail(sqlstate="40001") as fault:   # every posting: serialization failure
        ...
    assert fault.attempts() == 5

A trigger on the journal table raises inside the posting's own statement - after every
business check and after a step-up token was consumed - exactly as PostgreSQL would on a
serialization failure (40001), a deadlock (40P01) or any other error.

The tests run as the app's runtime role, which may not create triggers, so the owner
installs the trigger once per session (`install_fault_switch`, from conftest.py); it does
nothing until a test turns it on with a row in `test_fault_switch`, which the runtime role
may write. Turned on inside a test's transaction, the fault is seen by that transaction;
in a `transactional_db` test, by every connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

_TARGET = "journal_insert"

INSTALL_SQL = """
CREATE TABLE IF NOT EXISTS test_fault_switch (
    target text PRIMARY KEY, sqlstate text NOT NULL, times bigint NULL, base bigint NOT NULL
);
-- A sequence counts attempts: unlike a row, it is not rolled back with the failed transaction,
-- so a retry sees the fault spent.
CREATE SEQUENCE IF NOT EXISTS test_fault_attempts;
CREATE OR REPLACE FUNCTION test_fault_journal_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fault record;
    attempt bigint;
BEGIN
    SELECT * INTO fault FROM test_fault_switch WHERE target = 'journal_insert';
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    attempt := nextval('test_fault_attempts') - fault.base;
    IF fault.times IS NULL OR attempt <= fault.times THEN
        RAISE EXCEPTION 'injected fault on journal insert %', attempt USING ERRCODE = fault.sqlstate;
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS test_fault_journal_insert ON transactions_transaction;
CREATE TRIGGER test_fault_journal_insert BEFORE INSERT ON transactions_transaction
    FOR EACH ROW EXECUTE FUNCTION test_fault_journal_insert();
"""


def install_fault_switch(cursor: Any, *, app_role: str) -> None:
    """As the owner, on the test database: the dormant fault trigger and its switch."""
    from bankcore.db.roles import quote_ident

    cursor.execute(INSTALL_SQL)
    cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON test_fault_switch TO {quote_ident(app_role)}")
    cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE test_fault_attempts TO {quote_ident(app_role)}")


class JournalFault:
    def __init__(self, base: int) -> None:
        self.base = base

    def attempts(self) -> int:
        """How many journal inserts were attempted since the fault was turned on."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_fault_attempts")
            return int(cursor.fetchone()[0]) - self.base


@contextmanager
def journal_inserts_fail(*, sqlstate: str, times: int | None = None) -> Iterator[JournalFault]:
    """Make the first `times` inserts into transactions_transaction (all, if None) raise `sqlstate`."""
    if not (len(sqlstate) == 5 and sqlstate.isalnum()):
        raise ValueError(sqlstate)
    with connection.cursor() as cursor:
        cursor.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_fault_attempts")
        base = int(cursor.fetchone()[0])
        cursor.execute(
            "INSERT INTO test_fault_switch (target, sqlstate, times, base) VALUES (%s, %s, %s, %s)",
            [_TARGET, sqlstate, times, base],
        )
    try:
        yield JournalFault(base)
    finally:
        # In a broken transaction the test's rollback takes the switch with it.
        if not (connection.needs_rollback or connection.closed_in_transaction):
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM test_fault_switch WHERE target = %s", [_TARGET])

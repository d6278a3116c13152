"""The app runs as a runtime role that cannot rewrite history; the owner only migrates.

The suite itself connects as that runtime role (conftest.py), so every other test also
proves that transfers, audit writes and the rest work with no more than these grants.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from bankcore.audit import audit_record
from bankcore.testing import (
    BASE_DIR,
    CeleryWorker,
    GunicornServer,
    connected_as_owner,
    database_app_role,
    database_owner,
    owner_cursor,
    process_env,
)
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = pytest.mark.postgres

LEDGER_AND_AUDIT_TABLES = [
    "transactions_transaction",
    "transactions_entry",
    "transactions_hold",
    "bankcore_auditevent",
    "bankcore_auditchainhead",
]


def _refused(sql: str, params: list | None = None, match: str = "permission denied") -> None:
    """`sql` on the app's connection fails with `match`; the test's transaction carries on."""
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.mark.django_db
def test_the_suite_runs_as_the_runtime_role_not_a_superuser_or_the_owner():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, r.rolsuper, pg_has_role(current_user, c.relowner, 'MEMBER')"
            " FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'transactions_entry'::regclass"
        )
        assert cursor.fetchone() == (database_app_role(), False, False)


@pytest.mark.django_db
@pytest.mark.parametrize("table", LEDGER_AND_AUDIT_TABLES)
def test_the_runtime_role_cannot_truncate_ledger_or_audit_tables(table):
    _refused(f"TRUNCATE {table} CASCADE")


@pytest.mark.django_db
def test_the_runtime_role_cannot_update_or_delete_entries_journal_or_audit_rows():
    account = open_account(CustomerFactory(), balance=5_000)  # a deposit: journal row and entries
    event = audit_record(action="test.event", target=account)
    entry = account.entries.get()
    _refused("UPDATE transactions_entry SET amount = amount + 1 WHERE id = %s", [entry.pk])
    _refused("DELETE FROM transactions_entry WHERE id = %s", [entry.pk])
    _refused("UPDATE transactions_transaction SET description = 'x' WHERE id = %s", [entry.transaction_id])
    _refused("DELETE FROM transactions_transaction WHERE id = %s", [entry.transaction_id])
    _refused("UPDATE bankcore_auditevent SET action = 'x' WHERE id = %s", [event.pk])
    _refused("DELETE FROM bankcore_auditevent WHERE id = %s", [event.pk])
    # Nor forge an event, nor rewind a chain head: only audit_append() (running as the owner) writes them.
    _refused(
        "INSERT INTO bankcore_auditevent (chain, created_at, actor_label, action, target_type, target_id, user_agent,"
        " request_id, details, prev_hash, hash) VALUES (1, now(), '', 'forged', '', '', '', '', '{}', '', '')"
    )
    _refused("UPDATE bankcore_auditchainhead SET last_event_id = 0")
    _refused("DELETE FROM bankcore_auditchainhead")
    entry.refresh_from_db()
    assert entry.amount == 5_000
    # What the app does need still works: balances move, journal rows and entries are inserted.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_bankaccount SET name = 'Renamed' WHERE id = %s", [account.pk])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE transactions_entry DISABLE TRIGGER ALL",
        "ALTER TABLE bankcore_auditevent DISABLE TRIGGER USER",
        "ALTER TABLE transactions_transaction ADD COLUMN note text",
        "DROP TRIGGER ledger_refuse_truncate ON transactions_entry",
        "CREATE TABLE bankcore_scratch (id int)",
        "SET session_replication_role = replica",
    ],
)
def test_the_runtime_role_cannot_alter_tables_or_switch_triggers_off(sql):
    _refused(sql, match="must be owner|permission denied")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", LEDGER_AND_AUDIT_TABLES)
def test_the_owner_cannot_truncate_ledger_or_audit_tables_either(table):
    open_account(CustomerFactory(), balance=1_000)
    with owner_cursor() as cursor:
        cursor.execute("BEGIN")  # rolled back below, should the guard ever be missing
        with pytest.raises(DatabaseError, match=f"TRUNCATE of {table} is refused"):
            cursor.execute(f"TRUNCATE {table} CASCADE")
        cursor.execute("ROLLBACK")


@pytest.mark.django_db(transaction=True)
def test_audit_append_runs_as_the_owner_on_a_fixed_search_path_and_only_the_app_may_call_it():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT prosecdef, proconfig, has_function_privilege(%s, oid, 'EXECUTE'),"
            " coalesce(proacl::text[], '{}') FROM pg_proc WHERE proname = 'audit_append'",
            [database_app_role()],
        )
        definer, config, app_may_execute, acl = cursor.fetchone()
    assert definer and config == ["search_path=pg_catalog, public, pg_temp"]
    assert app_may_execute
    assert not [item for item in acl if item.startswith("=")], "PUBLIC may execute audit_append"
    audit_record(action="test.written_by_the_runtime_role")
    call_command("verify_audit_log", stdout=StringIO())


def _privileges(role: str) -> dict[str, set[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, p.privilege FROM pg_class c,"
            " unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(privilege)"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
            " AND has_table_privilege(%s, c.oid, p.privilege)",
            [role],
        )
        found: dict[str, set[str]] = {}
        for table, privilege in cursor.fetchall():
            found.setdefault(table, set()).add(privilege)
    return found


@pytest.mark.django_db(transaction=True)
def test_grant_app_role_revokes_stray_grants_and_gives_exactly_what_the_app_needs():
    role = database_app_role()
    with connected_as_owner():
        with connection.cursor() as cursor:
            # A grant made by hand, or left from an older version, is not kept.
            cursor.execute(f'GRANT ALL ON transactions_entry, bankcore_auditevent TO "{role}"')
        output = _grant_output(role)
        assert output == _grant_output(role)  # idempotent: a second run changes nothing
    granted = _privileges(role)
    assert granted["transactions_entry"] == {"SELECT", "INSERT"}
    assert granted["transactions_transaction"] == {"SELECT", "INSERT"}
    assert granted["transactions_paymentevent"] == {"SELECT", "INSERT"}
    assert granted["bankcore_auditevent"] == {"SELECT"}
    assert granted["bankcore_auditchainhead"] == {"SELECT"}
    assert granted["accounts_bankaccount"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert granted["bankcore_idempotencykey"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert not [table for table, privileges in granted.items() if privileges & {"TRUNCATE", "REFERENCES", "TRIGGER"}]
    assert "SELECT, INSERT on transactions_entry, transactions_paymentevent, transactions_transaction" in output
    assert "EXECUTE on" in output and "audit_append" in output


def _grant_output(role: str) -> str:
    out = StringIO()
    call_command("grant_app_role", role, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_grant_app_role_refuses_a_superuser_a_missing_role_and_the_owner():
    member = f"bankcore_owner_member_{os.getpid()}"
    with connected_as_owner():
        with pytest.raises(CommandError, match="superuser"):
            call_command("grant_app_role", database_owner())
        with pytest.raises(CommandError, match="does not exist"):
            call_command("grant_app_role", "bankcore_no_such_role")
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{member}" LOGIN')
            cursor.execute(f'GRANT "{database_owner()}" TO "{member}"')
        try:
            with pytest.raises(CommandError, match="member of their owner"):
                call_command("grant_app_role", member)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP ROLE "{member}"')


@pytest.mark.django_db
def test_grant_app_role_must_be_run_by_the_owner():
    with pytest.raises(CommandError, match="as the owner of the tables"):
        call_command("grant_app_role", database_app_role())


# --- production refuses to run as a superuser or the owner ---------------------------


def _production_env(user: str) -> dict[str, str]:
    env = process_env(BANKCORE_ENV="production", SECRET_KEY="production-like-secret-" + "x" * 40)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace(f"//{database_app_role()}@", f"//{user}@", 1)
    assert f"//{user}@" in env["DATABASE_URL"]
    return env


def _start_web_app(user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import bankcore.wsgi"],
        cwd=BASE_DIR,
        env=_production_env(user),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_production_web_app_refuses_to_start_as_a_superuser_and_starts_as_the_runtime_role():
    refused = _start_web_app(database_owner())
    assert refused.returncode != 0
    assert "Refusing to run" in refused.stderr and "superuser" in refused.stderr
    started = _start_web_app(database_app_role())
    assert started.returncode == 0, started.stderr


@pytest.mark.django_db(transaction=True)
def test_production_gunicorn_refuses_to_serve_as_the_owner():
    server = GunicornServer(env=_production_env(database_owner()), workers=1)
    try:
        with contextlib.suppress(RuntimeError):  # it may exit before or after it listens
            server.start(timeout=30)
        assert server.process is not None
        assert server.process.wait(30) != 0  # the worker did not boot, so gunicorn stopped
    finally:
        server.stop()
    assert "Refusing to run" in server.log_path.read_text()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_production_celery_worker_refuses_the_owner_and_runs_as_the_runtime_role(tmp_path):
    refused = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "bankcore", "worker", "-P", "solo", "--without-gossip"],
        cwd=BASE_DIR,
        env=_production_env(database_owner()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Refusing to run" in refused.stdout + refused.stderr
    worker = CeleryWorker(env=_production_env(database_app_role()), log_path=tmp_path / "worker.log", concurrency=1)
    try:
        worker.start()  # answers a ping: it started
    finally:
        worker.stop()


@pytest.mark.django_db(transaction=True)
def test_management_commands_run_as_the_owner_in_production():
    result = subprocess.run(
        [sys.executable, "manage.py", "grant_app_role", database_app_role()],
        cwd=BASE_DIR,
        env=_production_env(database_owner()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Granted to {database_app_role()}" in result.stdout


def _insert_unbalanced_pair(cursor, account_a, account_b) -> None:
    cursor.execute(
        "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency, created_at,"
        " posted_at) VALUES (%s, 'adjustment', 'posted', '', '', 'EUR', now(), now())",
        [txn := uuid.uuid4()],
    )
    for account, amount in ((account_a, -500), (account_b, 400)):
        cursor.execute(
            "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
            " VALUES (%s, %s, %s, 'EUR', 0, now())",
            [txn, account.pk, amount],
        )
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the deferred balance check now


@pytest.mark.django_db(transaction=True)
def test_the_runtime_role_cannot_switch_pgtrigger_triggers_off():
    customer = CustomerFactory()
    source, destination = open_account(customer, balance=1_000), open_account(customer)
    ignored = "{pgtrigger_entries_balance_per_transaction_9596b}"
    with pytest.raises(DatabaseError, match="do not sum to zero"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('pgtrigger.ignore', %s, true)", [ignored])
        _insert_unbalanced_pair(cur, source, destination)
    # The owner still may (pgtrigger.ignore() in a data migration), here rolled back.
    with owner_cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT set_config('pgtrigger.ignore', %s, true)", [ignored])
        _insert_unbalanced_pair(cur, source, destination)
        cur.execute("ROLLBACK")

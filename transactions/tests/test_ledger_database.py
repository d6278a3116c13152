"""The ledger's invariants hold even for writes that bypass the services (raw SQL)."""

from __future__ import annotations

import uuid

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from bankcore.testing import owner_cursor
from transactions.models import Entry
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def funded_pair():
    owner = CustomerFactory()
    return open_account(owner, balance=10_000), open_account(owner)


def _insert_transaction(cur) -> uuid.UUID:
    txn = uuid.uuid4()
    now = timezone.now()
    cur.execute(
        "INSERT INTO transactions_transaction"
        " (id, kind, status, reference, description, currency, created_at, posted_at) VALUES"
        " (%s, 'adjustment', 'posted', '', '', 'EUR', %s, %s)",
        [txn, now, now],
    )
    return txn


def _insert_entry(cur, txn, account, amount, balance_after=0) -> None:
    cur.execute(
        "INSERT INTO transactions_entry (transaction_id, account_id, amount, currency, balance_after, created_at)"
        " VALUES (%s, %s, %s, 'EUR', %s, now())",
        [txn, account.pk, amount, balance_after],
    )


def test_raw_sql_update_of_an_entry_is_refused(funded_pair):
    entry = Entry.objects.filter(account=funded_pair[0]).first()
    # The app's role may not update entries at all; the owner is stopped by the trigger.
    with pytest.raises(DatabaseError, match="permission denied"), connection.cursor() as cur:
        cur.execute("UPDATE transactions_entry SET amount = amount + 1 WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="entry_append_only"), owner_cursor() as cur:
        cur.execute("UPDATE transactions_entry SET amount = amount + 1 WHERE id = %s", [entry.pk])
    assert Entry.objects.get(pk=entry.pk).amount == entry.amount


def test_raw_sql_delete_of_an_entry_is_refused(funded_pair):
    entry = Entry.objects.filter(account=funded_pair[0]).first()
    with pytest.raises(DatabaseError, match="permission denied"), connection.cursor() as cur:
        cur.execute("DELETE FROM transactions_entry WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="entry_append_only"), owner_cursor() as cur:
        cur.execute("DELETE FROM transactions_entry WHERE id = %s", [entry.pk])
    assert Entry.objects.filter(pk=entry.pk).exists()


def test_unbalanced_transaction_inserted_with_raw_sql_fails_at_commit(funded_pair):
    source, destination = funded_pair
    with pytest.raises(IntegrityError, match="do not sum to zero"), transaction.atomic(), connection.cursor() as cur:
        txn = _insert_transaction(cur)
        _insert_entry(cur, txn, source, -500)
        _insert_entry(cur, txn, destination, 400)
        # The statements themselves succeed: the check is deferred to COMMIT.
        cur.execute("SELECT count(*) FROM transactions_entry WHERE transaction_id = %s", [txn])
        assert cur.fetchone()[0] == 2
    assert not Entry.objects.filter(transaction_id=txn).exists()


def test_balanced_transaction_inserted_with_raw_sql_commits(funded_pair):
    source, destination = funded_pair
    with transaction.atomic(), connection.cursor() as cur:
        txn = _insert_transaction(cur)
        _insert_entry(cur, txn, source, -500)
        _insert_entry(cur, txn, destination, 500)
    assert Entry.objects.filter(transaction_id=txn).count() == 2


def test_a_single_entry_transaction_fails_at_commit(funded_pair):
    refused = pytest.raises(IntegrityError, match="fewer than two entries")
    with refused, transaction.atomic(), connection.cursor() as cur:
        txn = _insert_transaction(cur)
        _insert_entry(cur, txn, funded_pair[0], 1)


def test_entry_in_another_currency_than_its_account_is_refused(funded_pair):
    refused = pytest.raises(IntegrityError, match="currency")
    with refused, transaction.atomic(), connection.cursor() as cur:
        txn = _insert_transaction(cur)
        cur.execute(
            "INSERT INTO transactions_entry"
            " (transaction_id, account_id, amount, currency, balance_after, created_at) VALUES"
            " (%s, %s, 5, 'USD', 0, now())",
            [txn, funded_pair[0].pk],
        )


def test_balance_below_overdraft_is_refused_by_the_database(funded_pair):
    source = funded_pair[0]
    with pytest.raises(IntegrityError, match="bank_account_balance_within_overdraft"), connection.cursor() as cur:
        cur.execute("UPDATE accounts_bankaccount SET balance = -1 WHERE id = %s", [source.pk])


def test_posted_transaction_amount_cannot_be_edited(funded_pair):
    entry = Entry.objects.filter(account=funded_pair[0]).first()
    with pytest.raises(DatabaseError, match="permission denied"), connection.cursor() as cur:
        cur.execute("UPDATE transactions_transaction SET amount = 1 WHERE id = %s", [entry.transaction_id])
    with pytest.raises(DatabaseError, match="transaction_money_read_only"), owner_cursor() as cur:
        cur.execute("UPDATE transactions_transaction SET amount = 1 WHERE id = %s", [entry.transaction_id])


def test_verify_ledger_names_an_unbalanced_transaction_that_bypassed_the_trigger(funded_pair):
    from transactions.services.verify import ledger_verify

    source, destination = funded_pair
    with owner_cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SET LOCAL session_replication_role = replica")  # a superuser bulk load, triggers off
        txn = _insert_transaction(cur)
        _insert_entry(cur, txn, source, -500)
        _insert_entry(cur, txn, destination, 400)
        cur.execute("COMMIT")
    report = ledger_verify()
    assert not report.ok
    assert any(f"transaction {txn}: 2 EUR entries sum to -100" in violation for violation in report.violations)


def test_a_transaction_can_be_reversed_only_once_even_with_raw_sql(funded_pair):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        original = _insert_transaction(cur)
        for _ in range(2):
            cur.execute(
                "INSERT INTO transactions_transaction (id, kind, status, reference, description, currency,"
                " reverses_id, created_at, posted_at) VALUES (%s, 'reversal', 'posted', '', '', 'EUR', %s, %s, %s)",
                [uuid.uuid4(), original, now, now],
            )

"""Transient serialization failures (real ones, from PostgreSQL) are retried, boundedly."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from accounts.models import BankAccount
from bankcore.api.exceptions import ServiceUnavailable
from bankcore.db.retry import atomic_with_retry
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _concurrent_rename(account_id, name):
    """Another session changes the row and commits while our snapshot is open."""

    def run():
        try:
            BankAccount.objects.filter(pk=account_id).update(name=name)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def _work_that_conflicts(account_id, attempts, conflicting_attempts):
    def work():
        attempts.append(1)
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        BankAccount.objects.get(pk=account_id)  # takes the snapshot
        if len(attempts) <= conflicting_attempts:
            _concurrent_rename(account_id, f"renamed {len(attempts)}")
        # Updating a row changed since our snapshot: PostgreSQL raises 40001.
        BankAccount.objects.filter(pk=account_id).update(name="ours")
        return len(attempts)

    return work


def test_a_serialization_failure_is_retried_and_then_succeeds():
    account = open_account(CustomerFactory())
    attempts: list[int] = []
    assert atomic_with_retry(_work_that_conflicts(account.pk, attempts, conflicting_attempts=2)) == 3
    account.refresh_from_db()
    assert account.name == "ours"


def test_persistent_conflicts_end_in_503_not_a_database_error():
    account = open_account(CustomerFactory())
    attempts: list[int] = []
    with pytest.raises(ServiceUnavailable):
        atomic_with_retry(_work_that_conflicts(account.pk, attempts, conflicting_attempts=99), attempts=3)
    assert len(attempts) == 3


def test_an_idempotent_request_restarts_its_whole_transaction_on_a_serialization_failure():
    from rest_framework.response import Response

    from bankcore.idempotency import run_idempotent
    from bankcore.models import IdempotencyKey

    owner = CustomerFactory()
    account = open_account(owner)
    attempts: list[int] = []

    def work():
        # The key is claimed in this same transaction, so the handler cannot pick its isolation
        # level as `_work_that_conflicts` does: PostgreSQL itself raises the 40001 it would get.
        attempts.append(1)
        BankAccount.objects.filter(pk=account.pk).update(name=f"attempt {len(attempts)}")
        if len(attempts) == 1:
            with connection.cursor() as cur:
                cur.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$")
        return len(attempts)

    response = run_idempotent(
        user=owner, key="retry-1", fingerprint="f", handler=lambda: Response({"attempt": work()}, status=201)
    )
    assert response.status_code == 201 and response.data == {"attempt": 2}
    key = IdempotencyKey.objects.get(key="retry-1")
    assert key.state == "completed" and key.response_body == {"attempt": 2}
    account.refresh_from_db()
    assert account.name == "attempt 2"  # the first attempt's work was rolled back with its claim

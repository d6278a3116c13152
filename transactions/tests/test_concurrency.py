"""Concurrent transfers on real PostgreSQL: no deadlock, no overdraw, no 5xx, exactly-once."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from accounts.models import BankAccount
from transactions.models import CustomerLimit, Transaction
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_thread(fn):
    """Run fn in a worker thread with its own database connection, closed afterwards."""

    def wrapper(*args):
        try:
            return fn(*args)
        finally:
            connection.close()

    return wrapper


def _unlimited(user):
    big = 10**12
    for currency in ("EUR",):
        CustomerLimit.objects.create(user=user, currency=currency, per_transfer=big, daily=big, step_up_threshold=big)


def _post(client, source, destination_iban, amount, key=None):
    return client.post(
        "/api/v1/transfers",
        {"source_account": str(source), "destination": destination_iban, "amount": amount, "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def test_random_concurrent_transfers_keep_the_ledger_whole():
    threads, per_thread = 8, 100  # 800 transfers (issue 4: at least 8 threads and 500 transfers)
    owners = [CustomerFactory() for _ in range(5)]
    for owner in owners:
        _unlimited(owner)
    accounts = [open_account(owner, balance=random.randint(5_000, 50_000)) for owner in owners]
    total_before = sum(a.balance for a in accounts)
    clients = [client_for(owner) for owner in owners]

    @_in_thread
    def worker(seed):
        rng = random.Random(seed)
        statuses = Counter()
        for _ in range(per_thread):
            i, j = rng.sample(range(5), 2)
            # Up to 1.5x the starting balances: many are refused for insufficient funds.
            amount = f"{rng.randint(1, 600)}.{rng.randint(0, 99):02d}"
            response = _post(clients[i], accounts[i].pk, accounts[j].iban, amount)
            statuses[response.status_code] += 1
            if response.status_code == 422:
                assert response.json()["error"]["code"] == "insufficient_funds", response.content
        return statuses

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    statuses = sum(results, Counter())
    assert sum(statuses.values()) == threads * per_thread
    assert set(statuses) <= {201, 422}, statuses  # never a 5xx, never a database error
    assert statuses[201] > 100 and statuses[422] > 0, statuses
    assert Transaction.objects.filter(kind="transfer").count() == statuses[201]

    balances = list(BankAccount.objects.filter(pk__in=[a.pk for a in accounts]).values_list("balance", flat=True))
    assert sum(balances) == total_before
    assert min(balances) >= 0
    report = ledger_verify()
    assert report.ok, report.violations


def test_twenty_concurrent_transfers_of_the_whole_balance_only_one_succeeds():
    owner = CustomerFactory()
    _unlimited(owner)
    source = open_account(owner, balance=77_700)
    destinations = [open_account(CustomerFactory()) for _ in range(4)]
    clients = [client_for(owner) for _ in range(20)]
    barrier = threading.Barrier(20)

    @_in_thread
    def attempt(n):
        barrier.wait()
        return _post(clients[n], source.pk, destinations[n % 4].iban, "777.00").status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = Counter(pool.map(attempt, range(20)))
    assert statuses == Counter({201: 1, 422: 19})
    source.refresh_from_db()
    assert source.balance == 0
    assert ledger_verify().ok


def test_ten_concurrent_requests_with_one_key_make_exactly_one_transfer():
    owner = CustomerFactory()
    source = open_account(owner, balance=100_000)
    destination = open_account(CustomerFactory())
    clients = [client_for(owner) for _ in range(10)]
    barrier = threading.Barrier(10)

    @_in_thread
    def attempt(n):
        barrier.wait()
        response = _post(clients[n], source.pk, destination.iban, "25.00", key="same-key-1")
        return response.status_code, response.json()

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    created = [body for code, body in results if code == 201]
    conflicts = [body for code, body in results if code == 409]
    assert len(created) + len(conflicts) == 10, results
    assert created, results
    assert all(body == created[0] for body in created)  # replays carry the first response
    assert all(body["error"]["code"] == "idempotency_in_progress" for body in conflicts)
    assert Transaction.objects.filter(kind="transfer").count() == 1
    source.refresh_from_db()
    assert source.balance == 100_000 - 2_500

    # Afterwards: same key + other amount is refused, and user B's identical key is independent.
    reused = _post(clients[0], source.pk, destination.iban, "26.00", key="same-key-1")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    other = CustomerFactory()
    theirs = open_account(other, balance=10_000)
    assert _post(client_for(other), theirs.pk, destination.iban, "25.00", key="same-key-1").status_code == 201
    assert Transaction.objects.filter(kind="transfer").count() == 2
    assert ledger_verify().ok


def test_opposite_transfers_between_two_accounts_never_deadlock():
    a_owner, b_owner = CustomerFactory(), CustomerFactory()
    a, b = open_account(a_owner, balance=100_000), open_account(b_owner, balance=100_000)
    clients = {a.pk: client_for(a_owner), b.pk: client_for(b_owner)}

    @_in_thread
    def ping_pong(n):
        src, dst = (a, b) if n % 2 else (b, a)
        return [_post(clients[src.pk], src.pk, dst.iban, "1.00").status_code for _ in range(40)]

    with ThreadPoolExecutor(6) as pool:
        statuses = Counter(code for codes in pool.map(ping_pong, range(6)) for code in codes)
    assert statuses == Counter({201: 240})
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.balance + b.balance == 200_000
    assert ledger_verify().ok


def test_concurrent_transfers_from_two_accounts_cannot_both_slip_under_the_daily_limit():
    owner = CustomerFactory()
    CustomerLimit.objects.create(user=owner, currency="EUR", daily=10_000)  # 100.00 per rolling 24 h
    accounts = [open_account(owner, balance=50_000), open_account(owner, balance=50_000)]
    # Disjoint account pairs: only the customer lock can serialise these two streams.
    destinations = [open_account(CustomerFactory()), open_account(CustomerFactory())]
    clients = [client_for(owner) for _ in range(10)]
    barrier = threading.Barrier(10)

    @_in_thread
    def attempt(n):
        barrier.wait()
        response = _post(clients[n], accounts[n % 2].pk, destinations[n % 2].iban, "60.00")
        return response.status_code, response.json().get("error", {}).get("code")

    with ThreadPoolExecutor(10) as pool:
        results = Counter(pool.map(attempt, range(10)))
    assert results == Counter({(201, None): 1, (422, "limit_exceeded"): 9}), results
    assert sum(BankAccount.objects.get(pk=d.pk).balance for d in destinations) == 6_000


def test_first_use_of_an_internal_account_under_concurrency_creates_exactly_one():
    from accounts.services.bank_accounts import internal_account

    barrier = threading.Barrier(8)

    @_in_thread
    def first_use(_):
        barrier.wait()
        return internal_account(purpose="suspense", currency="GBP").pk

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(first_use, range(8)))
    assert len(ids) == 1
    assert BankAccount.objects.filter(internal_code="suspense:GBP").count() == 1

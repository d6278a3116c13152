"""Legacy core accounts in the app (issue 15, items 3 and 4): linked accounts in the list with
stale balances while the core is down, transfers with the core exactly once on both sides
(timeouts and killed processes included), reconcile_legacy.

Real components only: the legacy core simulator as a subprocess (LegacyCoreProcess), the test
database through both connections ("default" and the "journal" alias), Redis, Celery workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from accounts.models import BankAccount, LegacyAccountLink
from accounts.services.legacy_links import legacy_account_link, legacy_iban
from bankcore.testing import BASE_DIR, CeleryWorker, process_env
from integrations.legacy.client import LegacyCoreClient, legacy_breaker, reset_circuit
from integrations.legacy.testing import LegacyCoreProcess
from transactions.models import LegacyRequest, Transaction
from transactions.services.legacy_transfers import legacy_reversals_due
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.gateway_fixture import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "journal"]),
    pytest.mark.postgres,
    pytest.mark.redis,
]
TIMEOUT = 1.0  # this process's LEGACY_CORE_TIMEOUT


@pytest.fixture(scope="module")
def core_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyCoreProcess]:
    with LegacyCoreProcess(tmp_path_factory.mktemp("legacy-core")) as core:
        yield core


@pytest.fixture
def core(core_process: LegacyCoreProcess, settings: Any, redis_flushed: None) -> Iterator[LegacyCoreProcess]:
    """The simulator, faults off, as this process's LEGACY_CORE_ADDRESS; circuit closed."""
    core_process.reset_faults()
    settings.LEGACY_CORE_ADDRESS = core_process.address
    settings.LEGACY_CORE_TIMEOUT = TIMEOUT
    settings.LEGACY_BALANCE_WAIT_SECONDS = 1.5
    settings.LEGACY_REQUEST_STALE_SECONDS = 1.0
    reset_circuit()
    cache.clear()
    yield core_process
    core_process.reset_faults()
    reset_circuit()


@pytest.fixture
def purged_broker() -> Iterator[None]:
    from bankcore.celery import app

    app.control.purge()
    yield
    app.control.purge()


def worker(core: LegacyCoreProcess, **env: str) -> CeleryWorker:
    """A Celery worker (not started: `with worker(core):` starts and stops it) on the simulator."""
    values = {
        "LEGACY_CORE_ADDRESS": core.address,
        "LEGACY_CORE_TIMEOUT": "2",
        "LEGACY_REVERSAL_RETRY_SECONDS": "0.5",
        "LEGACY_REQUEST_STALE_SECONDS": "1",
    }
    values.update(env)
    return CeleryWorker(env=process_env(**values))


def legacy_account(core: LegacyCoreProcess, balance: int, currency: str = "EUR") -> str:
    return str(core.create_account(holder_name="Erika Muster", balance=balance, currency=currency)["account_number"])


def post_transfer(client: Any, source: Any, destination: str, amount: str, key: str | None = None) -> Any:
    return client.post(
        "/api/v1/transfers",
        {"source_account": str(source), "destination": destination, "amount": amount, "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()),
    )


def balance_of(account: BankAccount) -> tuple[int, int]:
    account.refresh_from_db()
    return account.balance, account.held


def assert_ledger_ok() -> None:
    call_command("verify_ledger", stdout=open(os.devnull, "w"))  # noqa: SIM115 - raises on a violation


# --- the accounts list -------------------------------------------------------------------------


def test_accounts_list_has_linked_legacy_accounts_with_source_stale_and_as_of(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    mine = open_account(customer, balance=10_000)
    number = legacy_account(core, 12_345)
    link = legacy_account_link(customer=customer, account_number=number, name="Old current account")

    body = client_for(customer).get("/api/v1/accounts").json()

    by_source = {item["source"]: item for item in body["results"]}
    assert by_source["bankcore"]["id"] == str(mine.pk)
    assert by_source["bankcore"]["stale"] is False and by_source["bankcore"]["as_of"]
    legacy = by_source["legacy"]
    assert legacy["id"] == str(link.pk)
    assert legacy["number"] == legacy_iban(number) == link.iban
    assert (legacy["balance"], legacy["available"], legacy["currency"]) == ("123.45", "123.45", "EUR")
    assert legacy["stale"] is False and legacy["status"] == "active" and legacy["name"] == "Old current account"
    detail = client_for(customer).get(f"/api/v1/accounts/{link.pk}").json()
    assert detail["source"] == "legacy" and detail["balance"] == "123.45"
    # Not another customer's: 404.
    assert client_for(CustomerFactory()).get(f"/api/v1/accounts/{link.pk}").status_code == 404


def test_legacy_balances_are_cached_briefly(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    number = legacy_account(core, 1_000)
    legacy_account_link(customer=customer, account_number=number)
    client = client_for(customer)
    assert client.get("/api/v1/accounts").json()["results"][0]["balance"] == "10.00"
    before = core.state()["by_mti"].get("0100", 0)
    with LegacyCoreClient(core.address) as teller:  # the core's own activity, outside bankcore
        assert teller.credit(number, 500, "EUR").approved

    assert client.get("/api/v1/accounts").json()["results"][0]["balance"] == "10.00"  # cached
    assert core.state()["by_mti"].get("0100", 0) == before
    cache.clear()
    assert client.get("/api/v1/accounts").json()["results"][0]["balance"] == "15.00"


def test_core_down_list_answers_200_fast_with_last_known_balances_stale(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    open_account(customer, balance=5_000)
    numbers = [legacy_account(core, 100 * (i + 1)) for i in range(3)]
    links = [legacy_account_link(customer=customer, account_number=n) for n in numbers]
    read_at = {str(link.pk): LegacyAccountLink.objects.get(pk=link.pk).as_of for link in links}
    core.faults(down=True)
    cache.clear()
    client = client_for(customer)

    for attempt in range(8):  # the circuit opens on the way; every answer stays 200 and quick
        started = time.monotonic()
        response = client.get("/api/v1/accounts")
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 2.0, f"attempt {attempt} took {elapsed:.2f}s"
        legacy = [item for item in response.json()["results"] if item["source"] == "legacy"]
        assert len(legacy) == 3
        for item in legacy:
            assert item["stale"] is True
            link = LegacyAccountLink.objects.get(pk=item["id"])
            assert item["balance"] == f"{link.last_ledger / 100:.2f}"
            assert item["as_of"].replace("Z", "+00:00") == read_at[item["id"]].isoformat()
    assert legacy_breaker.current_state == "open"
    started = time.monotonic()
    assert client.get("/api/v1/accounts").status_code == 200
    assert time.monotonic() - started < 0.5  # open circuit: no wait at all


# --- transfers ---------------------------------------------------------------------------------


def test_transfer_to_legacy_moves_money_once_on_both_sides(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    number = legacy_account(core, 1_000)
    response = post_transfer(client_for(customer), source.pk, legacy_iban(number), "25.00")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["destination"] == legacy_iban(number) and body["source_account"] == str(source.pk)
    assert body["status"] == "posted" and body["amount"] == "25.00"
    assert balance_of(source) == (7_500, 0)
    assert core.balance(number) == 3_500
    row = LegacyRequest.objects.get()
    assert row.status == "completed" and row.transaction_id == uuid.UUID(body["id"])
    assert core.rrn(row.rrn)["request"]["applied"] is True
    clearing = BankAccount.objects.get(internal_code="legacy_clearing:EUR")
    assert clearing.balance == 2_500
    listed = client_for(customer).get("/api/v1/transfers").json()["results"]
    assert listed[0]["destination"] == legacy_iban(number)
    assert_ledger_ok()


def test_transfer_to_unknown_legacy_account_is_refused_and_nothing_moves(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    response = post_transfer(client_for(customer), source.pk, legacy_iban("4999999999"), "25.00")

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert balance_of(source) == (10_000, 0)  # the hold went with the refusal
    assert LegacyRequest.objects.get().status == "declined"
    assert legacy_reversals_due() == []  # a declined request has nothing to undo
    assert_ledger_ok()


def test_transfer_from_legacy_posts_once_and_51_is_insufficient_funds(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    destination = open_account(customer)
    number = legacy_account(core, 5_000)
    link = legacy_account_link(customer=customer, account_number=number)
    client = client_for(customer)

    ok = post_transfer(client, link.pk, destination.iban, "30.00")
    assert ok.status_code == 201, ok.json()
    assert ok.json()["source_account"] == str(link.pk) and ok.json()["destination"] == destination.iban
    assert balance_of(destination) == (3_000, 0)
    assert core.balance(number) == 2_000
    assert LegacyAccountLink.objects.get(pk=link.pk).last_ledger == 2_000  # from the 0210

    refused = post_transfer(client, link.pk, destination.iban, "30.00")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "insufficient_funds"
    assert balance_of(destination) == (3_000, 0)
    assert core.balance(number) == 2_000
    assert sorted(LegacyRequest.objects.values_list("status", flat=True)) == ["completed", "declined"]
    assert_ledger_ok()


def test_open_circuit_answers_503_fast_without_touching_the_core(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    number = legacy_account(core, 0)
    messages = core.state()["messages"]
    legacy_breaker.open()

    started = time.monotonic()
    response = post_transfer(client_for(customer), source.pk, legacy_iban(number), "10.00")

    assert time.monotonic() - started < 0.5
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    assert core.state()["messages"] == messages
    assert balance_of(source) == (10_000, 0)
    assert LegacyRequest.objects.get().status == "not_sent"
    assert legacy_reversals_due() == []


@pytest.mark.celery
def test_timeout_is_reversed_by_the_worker_and_the_retry_posts_exactly_once(
    core: LegacyCoreProcess, purged_broker: None
) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    number = legacy_account(core, 1_000)
    client = client_for(customer)
    key = str(uuid.uuid4())
    core.faults(approve_after_timeout=TIMEOUT + 1.5)  # applied at once, answered too late

    first = post_transfer(client, source.pk, legacy_iban(number), "40.00", key=key)

    assert first.status_code == 503 and first.json()["error"]["code"] == "unavailable"
    timed_out = LegacyRequest.objects.get()
    assert timed_out.status == "reversal_pending"
    assert core.balance(number) == 5_000  # the core applied it
    assert balance_of(source) == (10_000, 0)  # bankcore did not
    core.reset_faults()
    with worker(core):
        wait_for(lambda: LegacyRequest.objects.get(pk=timed_out.pk).status == "reversed", what="the reversal")
    assert core.balance(number) == 1_000
    assert core.rrn(timed_out.rrn)["reversal"]["applied"] is True

    again = post_transfer(client, source.pk, legacy_iban(number), "40.00", key=key)
    assert again.status_code == 201, again.json()
    assert post_transfer(client, source.pk, legacy_iban(number), "40.00", key=key).json() == again.json()
    assert balance_of(source) == (6_000, 0)
    assert core.balance(number) == 5_000
    assert Transaction.objects.filter(kind="transfer", source_account=source).count() == 1
    assert_ledger_ok()


@pytest.mark.celery
def test_worker_killed_while_its_reversal_is_in_flight_reverses_exactly_once_after_restart(
    core: LegacyCoreProcess, purged_broker: None
) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    number = legacy_account(core, 1_000)
    core.faults(approve_after_timeout=TIMEOUT + 1.5)
    assert post_transfer(client_for(customer), source.pk, legacy_iban(number), "40.00").status_code == 503
    row = LegacyRequest.objects.get()
    assert core.balance(number) == 5_000
    reversals = core.state()["reversals_applied"]
    # Every answer now waits 30 s: the worker's 0400 is applied at the core, its answer is not back.
    core.faults(approve_after_timeout=0, latency_seconds=30)
    first = worker(core, LEGACY_CORE_TIMEOUT="60").start()
    try:
        wait_for(lambda: core.rrn(row.rrn)["reversal"] is not None, what="the 0400 at the core")
        first.kill()  # SIGKILL between the core applying the 0400 and the worker recording it
    finally:
        first.stop()
    assert LegacyRequest.objects.get(pk=row.pk).status == "reversal_pending"  # nothing recorded
    assert core.balance(number) == 1_000

    core.reset_faults()
    with worker(core):
        from transactions.tasks import legacy_reversals_sweep

        legacy_reversals_sweep.delay()  # what beat does every minute
        wait_for(lambda: LegacyRequest.objects.get(pk=row.pk).status == "reversed", what="the reversal")
    assert core.balance(number) == 1_000  # the repeated 0400 changed nothing
    assert core.state()["reversals_applied"] == reversals + 1
    assert balance_of(source) == (10_000, 0)
    assert_ledger_ok()


_SEND_IN_A_CHILD = """
import sys
import uuid
import django
django.setup()
from django.db import transaction
from accounts.models import User
from transactions.services.legacy_transfers import transfer_to_legacy
user = User.objects.get(pk=sys.argv[1])
with transaction.atomic():
    transfer_to_legacy(user=user, source_account_id=uuid.UUID(sys.argv[2]), destination_iban=sys.argv[3],
                       amount=int(sys.argv[4]), currency="EUR")
print("posted")
"""


@pytest.mark.celery
def test_request_process_killed_after_sending_its_0200_leaves_no_effect_anywhere(
    core: LegacyCoreProcess, purged_broker: None
) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    number = legacy_account(core, 1_000)
    credits = core.state()["credits_applied"]
    core.faults(latency_seconds=30)  # the 0200 is applied; its answer would come in 30 s
    child = subprocess.Popen(
        [sys.executable, "-c", _SEND_IN_A_CHILD, str(customer.pk), str(source.pk), legacy_iban(number), "4000"],
        cwd=BASE_DIR,
        env=process_env(LEGACY_CORE_ADDRESS=core.address, LEGACY_CORE_TIMEOUT="60"),
        start_new_session=True,
    )
    try:
        wait_for(lambda: core.state()["credits_applied"] == credits + 1, what="the 0200 at the core")
        assert LegacyRequest.objects.get().status == "sent"  # journalled before it left
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
    row = LegacyRequest.objects.get()
    assert core.balance(number) == 5_000 and balance_of(source) == (10_000, 0)  # one side only, for now

    core.reset_faults()
    with worker(core):
        from transactions.tasks import legacy_reversals_sweep

        time.sleep(1.1)  # older than LEGACY_REQUEST_STALE_SECONDS
        legacy_reversals_sweep.delay()
        wait_for(lambda: LegacyRequest.objects.get(pk=row.pk).status == "reversed", what="the reversal")
    assert core.balance(number) == 1_000
    assert balance_of(source) == (10_000, 0)
    assert not Transaction.objects.filter(kind="transfer").exists()
    assert_ledger_ok()


def test_a_running_request_is_never_reversed_under_it(core: LegacyCoreProcess) -> None:
    """The advisory lock: while the request that sent a 0200 runs, the reversal leaves it alone."""
    from django.db import connections

    from transactions.services.legacy_transfers import _request_lock, legacy_request_reverse

    customer = CustomerFactory()
    source = open_account(customer)
    row = LegacyRequest.objects.create(
        customer=customer,
        direction="to_legacy",
        legacy_account_number="4000000001",
        legacy_iban=legacy_iban("4000000001"),
        bankcore_account=source,
        amount=100,
        currency="EUR",
        rrn="TESTRRN00001",
        original={},
        created_at=source.created_at,
        updated_at=source.created_at,
    )
    journal = connections["journal"]
    with journal.cursor() as cursor:  # another session holds the request's lock, as T would
        cursor.execute("BEGIN")
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [0x4C47, row.rrn])
    try:
        outcome = legacy_request_reverse(request_id=row.pk)
        assert not outcome.done and outcome.reason == "in flight"
        assert LegacyRequest.objects.get(pk=row.pk).reversal_attempts == 0
    finally:
        with journal.cursor() as cursor:
            cursor.execute("ROLLBACK")
    assert _request_lock  # the lock the service takes is this one


# --- reconciliation ----------------------------------------------------------------------------


def test_reconcile_legacy_passes_clean_and_lists_a_planted_difference(core: LegacyCoreProcess) -> None:
    customer = CustomerFactory()
    source = open_account(customer, balance=10_000)
    numbers = [legacy_account(core, 2_000), legacy_account(core, 3_000)]
    for number in numbers:
        legacy_account_link(customer=customer, account_number=number)
    assert post_transfer(client_for(customer), source.pk, legacy_iban(numbers[0]), "5.00").status_code == 201

    out = subprocess.run(
        [sys.executable, "manage.py", "reconcile_legacy"],
        cwd=BASE_DIR,
        env=process_env(LEGACY_CORE_ADDRESS=core.address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "agree" in out.stdout

    with LegacyCoreClient(core.address) as teller:  # money moved at the core behind bankcore's back
        assert teller.debit(numbers[1], 700, "EUR").approved
    with pytest.raises(CommandError):
        call_command("reconcile_legacy", stdout=(captured := _Capture()))
    assert f"balance_differs: {legacy_iban(numbers[1])} core 23.00 bankcore 30.00 EUR" in captured.text
    assert legacy_iban(numbers[0]) not in captured.text


def test_reconcile_legacy_fails_when_the_core_is_unreachable(core: LegacyCoreProcess) -> None:
    legacy_account_link(customer=CustomerFactory(), account_number=legacy_account(core, 100))
    core.faults(down=True)
    with pytest.raises(CommandError, match="cannot be reached"):
        call_command("reconcile_legacy", stdout=_Capture())


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

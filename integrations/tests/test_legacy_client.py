"""The legacy core connector against the simulator as a real process: inquiries, debits and
credits, exactly-once at the core, unknown outcomes reversed, faults, the circuit breaker and
concurrent callers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from bankcore import circuits
from integrations.legacy.client import legacy_breaker
from integrations.legacy.errors import (
    LegacyDeclined,
    LegacyProtocolError,
    LegacyTimeout,
    LegacyUnavailable,
)
from integrations.legacy.testing import LegacyCoreProcess


def open_account(core: LegacyCoreProcess, balance: int = 10_000, **fields) -> str:
    return str(core.create_account(holder_name="Erika Mustermann", balance=balance, **fields)["account_number"])


def gauge() -> float | None:
    return REGISTRY.get_sample_value("bankcore_circuit_state", {"circuit": "legacy_core"})


def test_echo_and_balance_inquiry(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 12_345)

    client.echo()
    balance = client.balance(number)

    assert (balance.account_number, balance.currency) == (number, "EUR")
    assert (balance.ledger, balance.available) == (12_345, 12_345)
    with pytest.raises(LegacyDeclined) as declined:
        client.balance("9999999999")
    assert declined.value.response_code == "14"


def test_a_debit_is_approved_within_the_balance_and_declined_beyond_it(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 1_000)

    approved = client.debit(number, 600, "EUR")
    beyond = client.debit(number, 401, "EUR")
    unknown = client.debit("9999999999", 1, "EUR")

    assert approved.approved and approved.response_code == "00" and len(approved.approval_code) == 6
    assert approved.balance is not None and approved.balance.ledger == 400
    assert (beyond.approved, beyond.response_code, beyond.balance) == (False, "51", None)
    assert (unknown.approved, unknown.response_code) == (False, "14")
    assert legacy_core.balance(number) == 400


def test_a_credit_adds_to_the_balance_and_a_wrong_currency_is_invalid(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 1_000)

    credited = client.credit(number, 250, "EUR")
    wrong_currency = client.credit(number, 250, "USD")

    assert credited.approved and credited.balance is not None and credited.balance.ledger == 1_250
    assert wrong_currency.response_code == "12"
    assert legacy_core.balance(number) == 1_250


def test_a_repeated_financial_request_has_one_effect(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 1_000)
    original = client.prepare_debit(number, 300, "EUR")

    first = client.send(original)
    again = client.send(original)
    other_content = client.debit(number, 999, "EUR", rrn=original.rrn)

    assert first.approved and again.approved and again.approval_code == first.approval_code
    assert other_content.response_code == "94"
    assert legacy_core.balance(number) == 700
    assert legacy_core.rrn(original.rrn)["request"]["applied"] is True


def test_a_timed_out_debit_is_reversed_to_exactly_one_net_effect(legacy_core, make_legacy_client):
    # One pooled connection: the late 0210 arrives on the connection the next calls use.
    client = make_legacy_client(legacy_core.address, timeout=0.3, pool_size=1)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(approve_after_timeout=0.8)
    original = client.prepare_debit(number, 400, "EUR")

    with pytest.raises(LegacyTimeout) as timed_out:
        client.send(original)
    assert timed_out.value.original == original and timed_out.value.outcome_unknown
    assert legacy_core.balance(number) == 600  # applied at the core, answer still on its way
    legacy_core.reset_faults()

    reversal = client.reverse(timed_out.value.original)
    assert reversal.acknowledged and reversal.response_code == "00"
    assert legacy_core.balance(number) == 1_000

    time.sleep(0.8)  # the late answer is now on the pooled connection
    balance = client.balance(number)
    assert balance.account_number == number and balance.ledger == 1_000
    assert client.stray_answers == 1  # read, recognised by its STAN, discarded


def test_a_repeated_reversal_has_one_effect(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 1_000)
    original = client.prepare_credit(number, 500, "EUR")
    assert client.send(original).approved
    applied_before = legacy_core.state()["reversals_applied"]

    first = client.reverse(original)
    again = client.reverse(original)

    assert first.acknowledged and again.acknowledged and again.response_code == first.response_code == "00"
    assert legacy_core.balance(number) == 1_000
    assert legacy_core.state()["reversals_applied"] == applied_before + 1


def test_a_reversal_of_a_declined_debit_is_acknowledged_without_effect(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = open_account(legacy_core, 100)
    original = client.prepare_debit(number, 500, "EUR")
    assert client.send(original).response_code == "51"

    assert client.reverse(original).response_code == "00"
    assert legacy_core.balance(number) == 100


def test_a_reversal_that_overtakes_its_original_makes_the_original_declined(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, timeout=0.3)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(slow_next=1, slow_seconds=0.8)  # the 0200 is stuck in the core's queue
    original = client.prepare_debit(number, 400, "EUR")

    with pytest.raises(LegacyTimeout) as timed_out:
        client.send(original)
    reversal = client.reverse(timed_out.value.original)

    assert (reversal.response_code, reversal.acknowledged) == ("25", True)
    time.sleep(1.0)  # the original has now been processed: declined, nothing applied
    known = legacy_core.rrn(original.rrn)
    assert known["request"]["response_code"] == "12" and known["request"]["applied"] is False
    assert legacy_core.balance(number) == 1_000
    assert client.reverse(original).response_code == "25"  # a repeat answers the same


def test_a_dropped_connection_is_unavailable_and_the_pool_recovers(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, attempts=1)
    number = open_account(legacy_core, 1_000)

    legacy_core.faults(drop_next=1)
    with pytest.raises(LegacyUnavailable):
        client.balance(number)
    assert client.balance(number).ledger == 1_000

    legacy_core.faults(drop_next=1)
    original = client.prepare_debit(number, 100, "EUR")
    with pytest.raises(LegacyTimeout) as lost:  # sent, connection closed: outcome unknown
        client.send(original)
    assert lost.value.original == original
    assert client.reverse(original).response_code == "25"  # the core never processed it
    assert legacy_core.balance(number) == 1_000


def test_an_idempotent_call_is_retried_past_a_dropped_connection(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, attempts=3)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(drop_next=2)

    assert client.balance(number).ledger == 1_000


def test_a_garbage_answer_is_a_protocol_error_and_the_pool_recovers(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, attempts=1)
    number = open_account(legacy_core, 1_000)

    legacy_core.faults(garbage_next=1)
    with pytest.raises(LegacyProtocolError) as garbage:
        client.balance(number)
    assert garbage.value.original is None
    assert client.balance(number).ledger == 1_000

    legacy_core.faults(garbage_next=1)
    original = client.prepare_debit(number, 100, "EUR")
    with pytest.raises(LegacyProtocolError) as garbled:
        client.send(original)
    assert garbled.value.original == original and garbled.value.outcome_unknown
    assert client.reverse(original).acknowledged


def test_a_core_that_is_down_refuses_and_nothing_is_sent(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, attempts=1)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(down=True)

    with pytest.raises(LegacyUnavailable) as refused:
        client.debit(number, 100, "EUR")
    assert refused.value.original is None and not refused.value.outcome_unknown
    legacy_core.faults(down=False)
    assert client.debit(number, 100, "EUR").approved


def test_every_call_has_its_timeout(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, timeout=0.2, attempts=1)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(latency_seconds=0.6)

    started = time.monotonic()
    with pytest.raises(LegacyTimeout):
        client.balance(number)
    assert time.monotonic() - started < 0.5


def test_the_circuit_opens_after_failures_and_a_probe_closes_it(legacy_core, make_legacy_client):
    legacy_breaker.fail_max, legacy_breaker.reset_timeout = 2, 0.5
    client = make_legacy_client(legacy_core.address, attempts=1)
    number = open_account(legacy_core, 1_000)
    legacy_core.faults(down=True)

    for _ in range(2):
        with pytest.raises(LegacyUnavailable):
            client.echo()
    assert circuits.states()["legacy_core"] == "open" and gauge() == 2

    legacy_core.faults(down=False)  # the core is back, but the circuit is still open
    messages = legacy_core.state()["messages"]
    with pytest.raises(LegacyUnavailable, match="circuit is open"):
        client.balance(number)
    assert legacy_core.state()["messages"] == messages  # no network attempt

    time.sleep(0.6)
    assert client.balance(number).ledger == 1_000  # the half-open probe
    assert circuits.states()["legacy_core"] == "closed" and gauge() == 0


@pytest.mark.django_db
def test_readyz_shows_the_legacy_circuit_and_stays_ready(client, legacy_core, make_legacy_client):
    assert client.get("/readyz").json()["circuits"]["legacy_core"] == "closed"
    legacy_breaker.fail_max = 1
    legacy_core.faults(down=True)
    with pytest.raises(LegacyUnavailable):
        make_legacy_client(legacy_core.address, attempts=1).echo()

    response = client.get("/readyz")
    assert response.status_code == 200  # an open circuit only holds back legacy operations
    assert response.json()["circuits"]["legacy_core"] == "open"


def test_a_half_open_circuit_lets_one_probe_through(legacy_core, make_legacy_client):
    legacy_breaker.fail_max, legacy_breaker.reset_timeout = 1, 0.3
    client = make_legacy_client(legacy_core.address, attempts=1)
    legacy_core.faults(down=True)
    with pytest.raises(LegacyUnavailable):
        client.echo()
    legacy_core.faults(down=False, latency_seconds=0.3)
    time.sleep(0.4)

    outcomes: list[str] = []

    def call() -> None:
        try:
            client.echo()
            outcomes.append("ok")
        except LegacyUnavailable:
            outcomes.append("refused")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
    assert circuits.states()["legacy_core"] == "closed"


def test_declines_do_not_open_the_circuit(legacy_core, make_legacy_client):
    legacy_breaker.fail_max = 2
    client = make_legacy_client(legacy_core.address)
    for _ in range(4):
        with pytest.raises(LegacyDeclined):
            client.balance("9999999999")
        assert client.debit("9999999999", 1, "EUR").response_code == "14"
    assert circuits.states()["legacy_core"] == "closed"


def test_sixteen_concurrent_callers_each_get_their_own_answer(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address, timeout=5, pool_size=4)
    shared = open_account(legacy_core, 1_000_000)
    own = [open_account(legacy_core, 1_000 * (i + 1)) for i in range(16)]
    rounds = 10

    def caller(i: int) -> int:
        debited = 0
        for n in range(rounds):
            amount = i * 100 + n + 1  # unique per caller and round
            original = client.prepare_debit(shared, amount, "EUR")
            result = client.send(original)
            assert (result.stan, result.rrn, result.approved) == (original.stan, original.rrn, True)
            debited += amount
            balance = client.balance(own[i])
            assert (balance.account_number, balance.ledger) == (own[i], 1_000 * (i + 1))
        return debited

    with ThreadPoolExecutor(max_workers=16) as pool:
        debited = sum(pool.map(caller, range(16)))

    assert legacy_core.balance(shared) == 1_000_000 - debited
    assert client.stray_answers == 0

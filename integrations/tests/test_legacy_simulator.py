"""The legacy core simulator as another system: its own journal across restarts, its accounts,
and how it answers malformed input on the wire."""

from __future__ import annotations

import socket
import time

import iso8583
import pytest
import requests
from schwifty import IBAN

from integrations.legacy import protocol as p
from integrations.legacy.simulator import LEGACY_BANK_CODE
from integrations.legacy.testing import LegacyCoreProcess


def exchange(core: LegacyCoreProcess, frame: bytes) -> bytes | None:
    """Send raw bytes; the answer's body, or None when the core closes the connection."""
    with socket.create_connection(("127.0.0.1", core.port), timeout=2) as sock:
        sock.sendall(frame)
        try:
            return p.FrameBuffer().read_body(sock, time.monotonic() + 2)
        except ConnectionError:
            return None


def test_a_restarted_core_keeps_its_accounts_balances_and_references(tmp_path, make_legacy_client):
    core = LegacyCoreProcess(tmp_path / "core", seed_accounts=3).start()
    try:
        client = make_legacy_client(core.address, attempts=3)
        seeded = core.accounts()
        assert [a["account_number"] for a in seeded] == ["4000000001", "4000000002", "4000000003"]
        number = str(core.create_account(holder_name="Max Mustermann", balance=5_000)["account_number"])
        original = client.prepare_debit(number, 1_200, "EUR")
        assert client.send(original).approved

        core.stop()
        core.start()

        assert core.balance(number) == 3_800
        assert core.accounts()[:3] == seeded  # seeding again created nothing
        assert client.send(original).approved  # same RRN: the first outcome, not a second debit
        assert client.balance(number).ledger == 3_800  # the pool noticed its connections died
        assert client.reverse(original).acknowledged
        assert core.balance(number) == 5_000
    finally:
        core.stop()


def test_accounts_carry_a_valid_legacy_iban_and_customer(legacy_core):
    account = legacy_core.create_account(holder_name="Erika Mustermann", balance=100, customer_number="K1234567")

    iban = IBAN(account["iban"])
    assert iban.bank_code == LEGACY_BANK_CODE and iban.account_code == account["account_number"]
    assert (account["customer_number"], account["currency"], account["status"]) == ("K1234567", "EUR", "active")
    assert legacy_core.account(account["account_number"]) == account
    with pytest.raises(requests.HTTPError):
        legacy_core.create_account(holder_name="", balance=1)


def test_a_blocked_account_refuses_debits_and_shows_nothing_available(legacy_core, make_legacy_client):
    client = make_legacy_client(legacy_core.address)
    number = str(legacy_core.create_account(holder_name="Erika Mustermann", balance=1_000)["account_number"])
    legacy_core.set_status(number, "blocked")

    assert client.debit(number, 1, "EUR").response_code == "62"
    balance = client.balance(number)
    assert (balance.ledger, balance.available) == (1_000, 0)


def test_a_request_lacking_a_field_is_answered_format_error_with_its_stan(legacy_core):
    request = {"t": "0200", "3": "000000", "7": "1129153012", "11": "123456", "102": "4000000001"}
    body, _ = iso8583.encode(dict(request), p.SPEC)

    answer = exchange(legacy_core, p.LENGTH_PREFIX.pack(len(body)) + bytes(body))

    assert answer is not None
    decoded = p.decode_body(answer)
    assert (decoded["t"], decoded["11"], decoded["39"]) == ("0210", "123456", "30")


def test_bytes_that_are_not_iso8583_close_the_connection(legacy_core):
    assert exchange(legacy_core, b"\x00\x1cTHIS IS NOT AN ISO 8583 FRAME") is None
    assert exchange(legacy_core, b"\x00\x02no") is None
    assert requests.get(f"{legacy_core.control_url}/healthz", timeout=2).json()["listening"] is True


def test_unknown_fault_switches_are_refused(legacy_core):
    with pytest.raises(requests.HTTPError):
        legacy_core.faults(explode=True)
    with pytest.raises(requests.HTTPError):
        legacy_core.faults(latency_seconds=-1)

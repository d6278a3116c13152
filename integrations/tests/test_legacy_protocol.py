"""The legacy core's wire format and the plain values: round trips, and garbage refused clearly."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from integrations.legacy import protocol as p
from integrations.legacy.client import new_rrn, next_stan
from integrations.legacy.messages import LegacyResult, OriginalRequest


def financial_request() -> dict[str, str]:
    return {
        "t": "0200",
        "3": p.PROCESSING_DEBIT,
        "4": p.amount_field(1250),
        "7": "1129153012",
        "11": "000042",
        "37": "ABC123DEF456",
        "41": "BANKCORE",
        "49": p.currency_numeric("EUR"),
        "102": "4000000001",
    }


def test_a_frame_is_a_two_byte_big_endian_length_then_ascii_iso8583():
    frame = p.encode(financial_request())

    assert int.from_bytes(frame[:2], "big") == len(frame) - 2
    assert frame[2:6] == b"0200"
    assert p.decode(frame) == financial_request()


def test_decode_refuses_garbage_with_a_protocol_error():
    for garbage in (b"", b"\x00", b"\x00\x05hello", b"\x00\x1cTHIS IS NOT AN ISO 8583 FRAME", b"\xff" * 40):
        with pytest.raises(p.ProtocolError):
            p.decode(garbage)
    frame = p.encode(financial_request())
    with pytest.raises(p.ProtocolError, match="length prefix"):
        p.decode(frame + b"x")


def test_encode_refuses_a_message_that_breaks_the_field_rules():
    with pytest.raises(p.ProtocolError, match="lacks field"):
        p.encode({k: v for k, v in financial_request().items() if k != "37"})
    with pytest.raises(p.ProtocolError, match="field 4"):
        p.encode({**financial_request(), "4": "12.50".rjust(12, "0")})
    with pytest.raises(p.ProtocolError, match="unknown message type"):
        p.encode({**financial_request(), "t": "9999"})


def test_balances_and_original_data_elements_round_trip():
    text = p.additional_amounts(ledger=-1250, available=0, currency="EUR")
    assert len(text) == 40
    assert p.parse_additional_amounts(text) == {"01": (-1250, "EUR"), "02": (0, "EUR")}
    field_90 = p.original_data_elements(mti="0200", stan="000042", transmitted="1129153012")
    assert len(field_90) == 42
    assert p.parse_original_data_elements(field_90) == ("0200", "000042", "1129153012")


def test_an_original_request_survives_a_json_row():
    original = OriginalRequest(
        mti="0200",
        stan="000042",
        rrn=new_rrn(),
        transmitted_at=datetime(2026, 11, 29, 15, 30, 12, tzinfo=UTC),
        account_number="4000000001",
        amount=1250,
        currency="EUR",
        processing_code=p.PROCESSING_CREDIT,
        terminal_id="BANKCORE",
    )
    assert OriginalRequest.from_dict(original.to_dict()) == original
    assert original.kind == "credit"
    with pytest.raises(ValueError):
        OriginalRequest.from_dict({**original.to_dict(), "amount": "12.50"})


def test_a_reversal_is_acknowledged_by_00_or_25_only():
    def result(mti: str, code: str) -> LegacyResult:
        return LegacyResult(mti=mti, approved=code == "00", response_code=code, stan="000001", rrn="X")

    assert result("0410", "00").acknowledged and result("0410", "25").acknowledged
    assert not result("0410", "12").acknowledged and not result("0410", "96").acknowledged
    assert not result("0210", "25").acknowledged and result("0210", "00").acknowledged


def test_stans_are_six_digits_and_rrns_twelve_characters_unique():
    stans = [next_stan() for _ in range(1000)]
    assert all(len(s) == 6 and s.isdigit() and s != "000000" for s in stans)
    assert len(set(stans)) == 1000
    rrns = {new_rrn() for _ in range(10_000)}
    assert len(rrns) == 10_000
    assert all(len(r) == 12 and r.isalnum() and r.upper() == r for r in rrns)


def test_frames_are_read_whole_across_partial_reads_from_a_socket_and_a_stream():
    frame = p.encode(financial_request())
    left, right = socket.socketpair()
    with left, right:
        buffer = p.FrameBuffer()

        def dribble() -> None:
            for i in range(0, len(frame) * 2, 7):
                left.sendall((frame + frame)[i : i + 7])

        threading.Thread(target=dribble).start()

        first = buffer.read_body(right, time.monotonic() + 5)
        second = buffer.read_body(right, time.monotonic() + 5)
        assert first == second == frame[2:]
        with pytest.raises(TimeoutError):
            buffer.read_body(right, time.monotonic() + 0.05)

    async def from_stream() -> bytes | None:
        reader = asyncio.StreamReader()
        reader.feed_data(frame)
        reader.feed_eof()
        body = await p.read_frame_async(reader)
        assert await p.read_frame_async(reader) is None
        return body

    assert asyncio.run(from_stream()) == frame[2:]

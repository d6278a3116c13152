"""A legacy core banking simulator: ANOTHER system, reached over TCP with ISO 8583
(protocol.py, PROTOCOL.md). One asyncio process; never bankcore's database.

Store: an append-only JSON-lines journal in its data directory, fsync'd per record and replayed
at start (accounts, every financial request decided, every reversal), so a restarted core
remembers balances and which RRNs it has seen.

Rules (the contract the connector relies on):

- Many requests per connection, each handled as its own task: answers go back in completion
  order, matched by the client through STAN (+ RRN). A slow request does not hold up the next.
- 0800 echo -> 0810 00. 0100 balance -> 0110 with field 54 (ledger, available), or 14.
- 0200 debit/credit, exactly once per RRN: a repeat with the same RRN and the same content
  answers the first outcome and changes nothing; the same RRN with other content answers 94.
  A debit beyond the available balance answers 51, an unknown or closed account 14, a blocked
  account 62, a currency other than the account's or an unknown processing code 12.
- 0400 reversal, by the original's RRN (37) and original data elements (90): reverses an
  applied original once (00; a reversed credit is debited even below zero: reversals are
  forced), answers 00 for an original that was declined (nothing to undo), and repeats its
  first answer when repeated. A reversal whose original was never received answers 25 AND is
  remembered: a late 0200 with that RRN is then declined (12) and changes nothing. A reversal
  whose account/amount/currency/processing code differ from the original's answers 12.
- A frame that is not ISO 8583 closes the connection (no STAN to answer to); a message that
  lacks a required field answers 30.

Control: a small HTTP/1.1 JSON server on its own port (the control port):
GET /healthz, GET /state (counters, faults, listening), POST /faults (merged switches;
`{"reset": true}` restores defaults), POST /reset, GET /accounts, POST /accounts
(`holder_name`, optional `balance`, `currency`, `status`, `account_number`,
`customer_number`), GET /accounts/<number>, POST /accounts/<number>/status `{"status"}`,
GET /rrn/<rrn> (what the core knows about a reference: its request and reversal).

Fault switches (memory only; a restarted core starts without faults):
`latency_seconds` (every answer waits), `slow_next` + `slow_seconds` (the next N requests wait
BEFORE being processed, so a later request can overtake them), `approve_after_timeout`
(seconds: every 0200 is applied at once but answered only after that long), `drop_next` (the
next N requests: the connection is closed without an answer, nothing applied), `garbage_next`
(the next N requests are answered with bytes that are not ISO 8583, nothing applied), `down`
(stop listening and close every connection: connections are refused until it is switched off).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schwifty import IBAN

from integrations.simulation import Journal

from . import protocol as p

logger = logging.getLogger(__name__)

# The legacy bank's German bank code (BLZ): every legacy account's IBAN is generated from it.
LEGACY_BANK_CODE = "20050550"
GARBAGE = b"\x00\x1cTHIS IS NOT AN ISO 8583 FRAME"
ACTIVE, BLOCKED, CLOSED = "active", "blocked", "closed"
STATUSES = (ACTIVE, BLOCKED, CLOSED)
_HOLDERS = (
    "Anna Becker",
    "Jonas Weber",
    "Lea Hoffmann",
    "Paul Schulz",
    "Mia Wagner",
    "Felix Braun",
    "Emma Richter",
    "Noah Klein",
)


@dataclass
class Faults:
    latency_seconds: float = 0.0
    slow_next: int = 0
    slow_seconds: float = 1.0
    approve_after_timeout: float = 0.0
    drop_next: int = 0
    garbage_next: int = 0
    down: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        """Apply the given switches (ValueError on an unknown one or a bad value)."""
        if changes.get("reset"):
            for f in fields(self):
                setattr(self, f.name, f.default)
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name == "reset":
                continue
            if name not in names:
                raise ValueError(f"unknown fault switch {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif isinstance(current, int):
                value = int(value)
            else:
                value = float(value)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            setattr(self, name, value)


def legacy_iban(account_number: str) -> str:
    """The IBAN of a legacy account: DE, the legacy bank code, the 10-digit account number."""
    return str(IBAN.generate("DE", bank_code=LEGACY_BANK_CODE, account_code=account_number))


class LegacyCore:
    """The core's state and rules, independent of the network. Single-threaded: the event loop
    calls it, one message at a time (the journal write included)."""

    def __init__(self, data_dir: Path) -> None:
        self.journal = Journal(data_dir, owner="legacy core simulator")
        self.accounts: dict[str, dict[str, Any]] = {}
        self.financials: dict[str, dict[str, Any]] = {}  # rrn -> the first decision
        self.reversals: dict[str, dict[str, Any]] = {}  # rrn of the original -> the first answer
        self.counters = {
            "messages": 0,
            "debits_applied": 0,
            "credits_applied": 0,
            "reversals_applied": 0,
            "declined": 0,
            "duplicates": 0,
            "format_errors": 0,
        }
        self.by_mti: dict[str, int] = {}
        for record in self.journal.records():
            self._apply(record)

    # --- journal ---------------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        """Journal first (durable), then apply to memory."""
        self.journal.append(record)
        self._apply(record)

    def _apply(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        if kind == "account":
            self.accounts[record["account_number"]] = {k: v for k, v in record.items() if k != "type"}
        elif kind == "status":
            self.accounts[record["account_number"]]["status"] = record["status"]
        elif kind == "financial":
            self.financials[record["rrn"]] = record
            if record["applied"]:
                sign = -1 if record["processing_code"] == p.PROCESSING_DEBIT else 1
                self.accounts[record["account_number"]]["balance"] += sign * record["amount"]
                self.counters["debits_applied" if sign < 0 else "credits_applied"] += 1
            else:
                self.counters["declined"] += 1
        elif kind == "reversal":
            self.reversals[record["rrn"]] = record
            if record["applied"]:
                sign = 1 if record["processing_code"] == p.PROCESSING_DEBIT else -1
                self.accounts[record["account_number"]]["balance"] += sign * record["amount"]
                self.counters["reversals_applied"] += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.journal.close()

    # --- accounts --------------------------------------------------------------------------

    def create_account(
        self,
        *,
        holder_name: str,
        balance: int = 0,
        currency: str = "EUR",
        status: str = ACTIVE,
        account_number: str = "",
        customer_number: str = "",
    ) -> dict[str, Any]:
        """A new legacy account (ValueError on bad input or a number in use)."""
        if not holder_name or not isinstance(holder_name, str):
            raise ValueError("holder_name is required")
        if not isinstance(balance, int) or isinstance(balance, bool):
            raise ValueError("balance must be an integer (minor units)")
        p.currency_numeric(currency)  # ProtocolError (a ValueError) when unknown
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if account_number:
            if not (account_number.isdigit() and len(account_number) == 10):
                raise ValueError("account_number must be 10 digits")
            if account_number in self.accounts:
                raise ValueError(f"account {account_number} exists")
        else:
            sequence = len(self.accounts) + 1
            while (account_number := f"41{sequence:08d}") in self.accounts:
                sequence += 1
        record = {
            "type": "account",
            "account_number": account_number,
            "iban": legacy_iban(account_number),
            "customer_number": customer_number or f"K{int(account_number) % 10**7:07d}",
            "holder_name": holder_name,
            "currency": currency,
            "balance": balance,
            "status": status,
            "opened_at": datetime.now(UTC).isoformat(),
        }
        self._record(record)
        return dict(self.accounts[account_number])

    def seed(self, count: int) -> int:
        """Make sure accounts 4000000001 .. 40000000NN exist (deterministic holders and
        balances, so every seeded core looks alike); how many were created."""
        created = 0
        for i in range(1, count + 1):
            number = f"40{i:08d}"
            if number in self.accounts:
                continue
            rng = random.Random(i)  # noqa: S311 - test data, not secrets
            self.create_account(
                account_number=number,
                customer_number=f"K{7000000 + (i + 1) // 2:07d}",  # two accounts per customer
                holder_name=_HOLDERS[(i + 1) // 2 % len(_HOLDERS)],
                balance=rng.randrange(0, 5_000_00),
            )
            created += 1
        return created

    def set_status(self, account_number: str, status: str) -> dict[str, Any]:
        if account_number not in self.accounts:
            raise KeyError(account_number)
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        self._record({"type": "status", "account_number": account_number, "status": status})
        return dict(self.accounts[account_number])

    # --- messages --------------------------------------------------------------------------

    def handle(self, request: dict[str, str]) -> dict[str, str]:
        """The answer to one decoded request (with its side effect journalled first)."""
        mti = request["t"]
        self.counters["messages"] += 1
        self.by_mti[mti] = self.by_mti.get(mti, 0) + 1
        response_mti = p.RESPONSE_MTI.get(mti)
        if response_mti is None:  # an answer sent to us, or a type we do not serve
            return self.answer(request, p.RESPONSE_MTI[p.ECHO_REQUEST], p.INVALID_TRANSACTION)
        if p.missing_fields(request):
            self.counters["format_errors"] += 1
            return self.answer(request, response_mti, p.FORMAT_ERROR)
        if mti == p.ECHO_REQUEST:
            code = p.APPROVED if request["70"] == p.NETWORK_ECHO else p.INVALID_TRANSACTION
            return self.answer(request, response_mti, code)
        if mti == p.BALANCE_REQUEST:
            return self._balance(request, response_mti)
        if mti == p.FINANCIAL_REQUEST:
            return self._financial(request, response_mti)
        return self._reversal(request, response_mti)

    def answer(
        self, request: dict[str, str], mti: str, code: str, account: dict[str, Any] | None = None, **extra: str
    ) -> dict[str, str]:
        echoed = ("3", "4", "7", "11", "12", "13", "37", "41", "49", "70", "90", "102")
        response = {"t": mti, **{n: request[n] for n in echoed if n in request}, "39": code, **extra}
        response.setdefault("7", p.transmission_datetime(datetime.now(UTC)))
        response.setdefault("11", "000000")
        if account is not None and code == p.APPROVED:
            available = account["balance"] if account["status"] == ACTIVE else 0
            response["49"] = p.currency_numeric(account["currency"])
            response["54"] = p.additional_amounts(
                ledger=account["balance"], available=available, currency=account["currency"]
            )
        if mti == p.ECHO_RESPONSE:
            response.setdefault("70", p.NETWORK_ECHO)
        return response

    def _balance(self, request: dict[str, str], mti: str) -> dict[str, str]:
        if not request["3"].startswith("31"):
            return self.answer(request, mti, p.INVALID_TRANSACTION)
        account = self.accounts.get(request["102"])
        if account is None or account["status"] == CLOSED:
            return self.answer(request, mti, p.INVALID_ACCOUNT)
        return self.answer(request, mti, p.APPROVED, account)

    def _financial(self, request: dict[str, str], mti: str) -> dict[str, str]:
        rrn, number, code_3 = request["37"], request["102"], request["3"]
        amount = int(request["4"])
        prior = self.financials.get(rrn)
        if prior is not None:
            self.counters["duplicates"] += 1
            same = (prior["account_number"], prior["amount"], prior["processing_code"], prior["currency_numeric"]) == (
                number,
                amount,
                code_3,
                request["49"],
            )
            if not same:
                return self.answer(request, mti, p.DUPLICATE_TRANSMISSION)
            extra = {"38": prior["approval_code"]} if prior["approval_code"] else {}
            return self.answer(request, mti, prior["response_code"], self.accounts.get(number), **extra)

        account = self.accounts.get(number)
        if rrn in self.reversals:
            code = p.INVALID_TRANSACTION  # its reversal came first: never apply it
        elif code_3 not in (p.PROCESSING_DEBIT, p.PROCESSING_CREDIT) or amount <= 0:
            code = p.INVALID_TRANSACTION
        elif account is None or account["status"] == CLOSED:
            code = p.INVALID_ACCOUNT
        elif request["49"] != p.CURRENCY_NUMERIC.get(account["currency"]):
            code = p.INVALID_TRANSACTION
        elif account["status"] == BLOCKED:
            code = p.RESTRICTED_ACCOUNT
        elif code_3 == p.PROCESSING_DEBIT and account["balance"] < amount:
            code = p.INSUFFICIENT_FUNDS
        else:
            code = p.APPROVED
        approved = code == p.APPROVED
        approval_code = f"{len(self.financials) + 1:06d}"[-6:] if approved else ""
        record = {
            "type": "financial",
            "rrn": rrn,
            "stan": request["11"],
            "transmitted": request["7"],
            "account_number": number,
            "amount": amount,
            "currency_numeric": request["49"],
            "processing_code": code_3,
            "response_code": code,
            "approval_code": approval_code,
            "applied": approved,
            "at": time.time(),
        }
        self._record(record)
        extra = {"38": approval_code} if approved else {}
        return self.answer(request, mti, code, self.accounts.get(number), **extra)

    def _reversal(self, request: dict[str, str], mti: str) -> dict[str, str]:
        rrn = request["37"]
        prior = self.reversals.get(rrn)
        if prior is not None:
            self.counters["duplicates"] += 1
            return self.answer(request, mti, prior["response_code"])
        try:
            original_mti, original_stan, _ = p.parse_original_data_elements(request["90"])
        except p.ProtocolError:
            self.counters["format_errors"] += 1
            return self.answer(request, mti, p.FORMAT_ERROR)
        if original_mti != p.FINANCIAL_REQUEST:
            return self.answer(request, mti, p.INVALID_TRANSACTION)
        base = {
            "type": "reversal",
            "rrn": rrn,
            "stan": request["11"],
            "original_stan": original_stan,
            "account_number": request["102"],
            "amount": int(request["4"]),
            "currency_numeric": request["49"],
            "processing_code": request["3"],
            "at": time.time(),
        }
        original = self.financials.get(rrn)
        if original is None:
            # Remembered, so the original is declined if it arrives after all (see docstring).
            self._record({**base, "response_code": p.ORIGINAL_NOT_FOUND, "applied": False, "original_seen": False})
            return self.answer(request, mti, p.ORIGINAL_NOT_FOUND)
        keys = ("account_number", "amount", "currency_numeric", "processing_code")
        if any(original[k] != base[k] for k in keys):
            return self.answer(request, mti, p.INVALID_TRANSACTION)
        self._record({**base, "response_code": p.APPROVED, "applied": original["applied"], "original_seen": True})
        return self.answer(request, mti, p.APPROVED, self.accounts.get(request["102"]))

    # --- control views ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            **self.counters,
            "by_mti": dict(self.by_mti),
            "accounts": len(self.accounts),
            "financial_requests": len(self.financials),
            "reversals": len(self.reversals),
        }

    def rrn(self, rrn: str) -> dict[str, Any]:
        return {"rrn": rrn, "request": self.financials.get(rrn), "reversal": self.reversals.get(rrn)}


class LegacyCoreServer:
    """The network around a LegacyCore: the ISO 8583 listener, the control port, the faults."""

    def __init__(self, core: LegacyCore, *, host: str, port: int, control_port: int) -> None:
        self.core = core
        self.host, self.port, self.control_port = host, port, control_port
        self.faults = Faults()
        self._listener: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def start(self) -> None:
        await self._listen()
        self._control = await asyncio.start_server(self._control_connection, self.host, self.control_port)

    async def _listen(self) -> None:
        if self._listener is None:
            self._listener = await asyncio.start_server(self._connection, self.host, self.port, reuse_address=True)

    async def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def close(self) -> None:
        await self._stop_listening()
        if self._control is not None:
            self._control.close()
        for task in list(self._tasks):
            task.cancel()

    # --- ISO 8583 --------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._connections.add(writer)
        try:
            while True:
                try:
                    body = await p.read_frame_async(reader)
                except (p.ProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
                    logger.warning("legacy core: %s sent an unreadable frame (%s), closing", peer, exc)
                    break
                if body is None:
                    break
                task = asyncio.create_task(self._message(body, writer, peer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            self._connections.discard(writer)
            writer.transport.abort()

    async def _message(self, body: bytes, writer: asyncio.StreamWriter, peer: Any) -> None:
        started = time.monotonic()
        try:
            request = p.decode_body(body)
        except p.ProtocolError as exc:
            logger.warning("legacy core: %s sent a frame that is not ISO 8583 (%s), closing", peer, exc)
            writer.transport.abort()
            return
        faults = self.faults
        if faults.drop_next > 0:
            faults.drop_next -= 1
            logger.info("legacy core: %s stan=%s dropped (fault drop_next)", request["t"], request.get("11"))
            writer.transport.abort()
            return
        if faults.garbage_next > 0:
            faults.garbage_next -= 1
            logger.info("legacy core: %s stan=%s answered garbage (fault)", request["t"], request.get("11"))
            await self._write(writer, GARBAGE)
            return
        if faults.slow_next > 0:
            faults.slow_next -= 1
            await asyncio.sleep(faults.slow_seconds)
        try:
            response = self.core.handle(request)
        except Exception:
            # Maybe after its journal record: no answer (outcome unknown) rather than a wrong one.
            logger.exception("legacy core: %s stan=%s failed, closing", request["t"], request.get("11"))
            writer.transport.abort()
            return
        logger.info(
            "legacy core: %s stan=%s rrn=%s account=%s amount=%s -> %s %s (%.1f ms)",
            request["t"],
            request.get("11", ""),
            request.get("37", ""),
            request.get("102", ""),
            request.get("4", ""),
            response["t"],
            response.get("39"),
            (time.monotonic() - started) * 1000,
        )
        delay = faults.latency_seconds
        if request["t"] == p.FINANCIAL_REQUEST:
            delay += faults.approve_after_timeout
        if delay > 0:
            await asyncio.sleep(delay)
        # A format-error answer echoes what the request had, which may be incomplete.
        await self._write(writer, p.encode(response, complete=response["39"] != p.FORMAT_ERROR))

    async def _write(self, writer: asyncio.StreamWriter, frame: bytes) -> None:
        if writer.is_closing():
            logger.info("legacy core: connection gone before the answer")
            return
        writer.write(frame)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    # --- control ---------------------------------------------------------------------------

    async def _control_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            raw = await reader.readexactly(length) if length else b""
            if len(request_line) < 2:
                status, data = 400, {"error": "bad request line"}
            else:
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("body must be a JSON object")
                    status, data = await self._route(request_line[0], request_line[1], body)
                except KeyError as exc:
                    status, data = 404, {"error": f"not found: {exc}"}
                except (ValueError, TypeError) as exc:
                    status, data = 400, {"error": str(exc)}
            payload = json.dumps(data).encode()
            reason = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found"}.get(status, "")
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the control client went away mid-request: nothing to answer
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        core = self.core
        parts = [part for part in path.split("?")[0].split("/") if part]
        if method == "GET" and parts == ["healthz"]:
            return 200, {"status": "ok", "listening": self.listening}
        if method == "GET" and parts == ["state"]:
            return 200, {**core.state(), "faults": asdict(self.faults), "listening": self.listening}
        if method == "POST" and parts in (["faults"], ["reset"]):
            self.faults.update({"reset": True} if parts == ["reset"] else body)
            if self.faults.down:
                await self._stop_listening()
            else:
                await self._listen()
            return 200, asdict(self.faults)
        if parts[:1] == ["accounts"]:
            if method == "GET" and len(parts) == 1:
                return 200, [dict(a) for a in core.accounts.values()]
            if method == "POST" and len(parts) == 1:
                return 201, core.create_account(**body)
            if method == "GET" and len(parts) == 2:
                return 200, dict(core.accounts[parts[1]])
            if method == "POST" and len(parts) == 3 and parts[2] == "status":
                return 200, core.set_status(parts[1], str(body.get("status", "")))
        if method == "GET" and len(parts) == 2 and parts[0] == "rrn":
            return 200, core.rrn(parts[1])
        raise KeyError(path)


async def _serve(host: str, port: int, control_port: int, data_dir: Path, seed_accounts: int) -> None:
    core = LegacyCore(data_dir)
    if seed_accounts:
        created = core.seed(seed_accounts)
        logger.info("legacy core: %s seeded accounts created", created)
    server = LegacyCoreServer(core, host=host, port=port, control_port=control_port)
    await server.start()
    logger.info(
        "legacy core simulator on %s:%s, control http://%s:%s/ (data %s, %s accounts)",
        host,
        port,
        host,
        control_port,
        data_dir,
        len(core.accounts),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        core.close()


def serve(*, host: str, port: int, control_port: int, data_dir: Path, seed_accounts: int = 0) -> None:
    """Run the simulator until SIGTERM/SIGINT. Everything answered is journalled first."""
    asyncio.run(_serve(host, port, control_port, data_dir, seed_accounts))

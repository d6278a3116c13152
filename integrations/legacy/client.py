"""The legacy core connector: plain values in, plain values out, ISO 8583 over pooled TCP.

Thread-safe: one LegacyCoreClient per process (`default_client()`) serves every thread. Each
call checks a connection out of the pool (at most `pool_size` open; a caller waits for a free
one up to its timeout), sends one request, reads frames until the answer with its STAN (and
RRN) arrives, and returns the connection. A frame for another STAN — the late answer of an
earlier call that timed out on this connection — is discarded and counted (`stray_answers`),
never returned to the wrong caller. A read that times out leaves the partial bytes buffered, so
the connection stays in step and goes back to the pool; a closed, reset or garbled connection
is discarded. An idle pooled connection the core has closed is noticed before reuse.

Identifiers (PROTOCOL.md, "Identifiers"): the STAN is 6 digits from a per-process counter with
a random start, wrapping after 999999; it only has to tell apart the answers on one connection,
which one caller at a time uses, so a clash with another process's STAN is harmless and one
within the process needs a million calls in flight. The RRN (12 characters, 0-9A-Z) is random
from uuid4 (62 bits): the core keys exactly-once on it. Callers that persist an OriginalRequest
should keep its RRN unique in their table; a clash is then caught before anything is sent.

Retries (tenacity, exponential backoff with jitter) only where a repeat is harmless: echo,
balance inquiry and reversal (the core applies a reversal once per RRN). Never a financial
request: a 0200 is sent once; when its outcome is unknown the error carries the
OriginalRequest and the caller reverses it (errors.py).

Circuit breaker: one per process, `legacy_breaker` (pybreaker), registered as "legacy_core"
in bankcore.circuits. pybreaker's `call` holds the breaker's lock for the whole guarded call,
which would serialise every caller of the core; so the network call runs OUTSIDE it: a call is
admitted by reading the state (open: refused with LegacyUnavailable, no network; open past
LEGACY_CORE_BREAKER_RESET_SECONDS: half-open, and exactly one caller is let through as the
probe while the others are refused), and its outcome is recorded afterwards by passing a
trivial function through `legacy_breaker.call`, so pybreaker's own rules count consecutive
failures, open the circuit after LEGACY_CORE_BREAKER_FAILURES and close it on a good probe.
Failures are: connection refused or lost, timeouts, garbage. Any answer, a refusal included,
is a success: the core is up.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker
import tenacity
from django.conf import settings

from bankcore import circuits

from . import protocol as p
from .errors import LegacyDeclined, LegacyError, LegacyProtocolError, LegacyTimeout, LegacyUnavailable
from .messages import CREDIT, DEBIT, LegacyBalance, LegacyResult, OriginalRequest, processing_code_of

CIRCUIT_NAME = "legacy_core"
logger = logging.getLogger(__name__)
T = TypeVar("T")

# --- identifiers ---------------------------------------------------------------------------

_stan_lock = threading.Lock()
_stans = itertools.count(random.randrange(999_999))  # noqa: S311 - uniqueness, not secrecy
_RRN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def next_stan() -> str:
    """000001..999999, then 000001 again."""
    with _stan_lock:
        n = next(_stans)
    return f"{n % 999_999 + 1:06d}"


def new_rrn() -> str:
    """12 characters of 0-9A-Z from a uuid4: unique across processes and hosts in practice."""
    n = uuid.uuid4().int % 36**12
    chars = []
    for _ in range(12):
        n, digit = divmod(n, 36)
        chars.append(_RRN_ALPHABET[digit])
    return "".join(reversed(chars))


# --- the circuit breaker -------------------------------------------------------------------


class _GaugeListener(pybreaker.CircuitBreakerListener):
    """Mirrors every state change into bankcore_circuit_state and the log; remembers when the
    circuit opened (for admission without pybreaker's lock)."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            _gate.opened_at = time.monotonic()
        circuits.record(CIRCUIT_NAME, new_state.name)
        logger.warning("legacy core circuit %s -> %s", getattr(old_state, "name", None), new_state.name)


legacy_breaker = pybreaker.CircuitBreaker(
    fail_max=settings.LEGACY_CORE_BREAKER_FAILURES,
    reset_timeout=settings.LEGACY_CORE_BREAKER_RESET_SECONDS,
    listeners=[_GaugeListener()],
    name=CIRCUIT_NAME,
)


def circuit_state() -> str:
    """The breaker's state: "closed", "half-open" or "open" (bankcore.circuits' names)."""
    return str(legacy_breaker.current_state)


class _Gate:
    """Admission to and outcome recording for `legacy_breaker`, with only short critical
    sections (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened_at = 0.0
        self.probe_in_flight = False

    def admit(self) -> bool:
        """Let a call through (True when it is the half-open probe) or raise LegacyUnavailable."""
        with self.lock:
            state = legacy_breaker.current_state
            if state == pybreaker.STATE_CLOSED:
                return False
            if state == pybreaker.STATE_OPEN:
                if time.monotonic() < self.opened_at + legacy_breaker.reset_timeout:
                    raise LegacyUnavailable("legacy core circuit is open")
                legacy_breaker.half_open()
            if self.probe_in_flight:
                raise LegacyUnavailable("legacy core circuit is half-open and its probe is under way")
            self.probe_in_flight = True
            return True

    def record(self, *, probe: bool, failure: BaseException | None) -> None:
        """Count one call's outcome (failure None: a success) by pybreaker's rules."""
        with self.lock:
            if probe:
                self.probe_in_flight = False
            try:
                if failure is None:
                    legacy_breaker.call(_succeed)
                else:
                    legacy_breaker.call(_fail, failure)
            except (pybreaker.CircuitBreakerError, LegacyError):
                pass  # the replayed failure itself, re-raised by pybreaker: it is counted, not news

    def release_probe(self) -> None:
        """The probe ended without telling anything about the core (e.g. pool busy)."""
        with self.lock:
            self.probe_in_flight = False


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


_gate = _Gate()


def reset_circuit() -> None:
    """Close the circuit and forget any probe (tests; an operator's manual reset)."""
    with _gate.lock:
        _gate.probe_in_flight = False
        legacy_breaker.close()


# --- connections ---------------------------------------------------------------------------


class _PoolBusy(LegacyUnavailable):
    """Every pooled connection is in use: nothing was sent. Not a failure of the core."""


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = p.FrameBuffer()

    def still_open(self) -> bool:
        """False when the core has closed this idle connection; bytes waiting (late answers)
        are kept in the frame buffer."""
        try:
            self.sock.setblocking(False)
            data = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                self.sock.setblocking(True)
        if not data:
            return False
        self.frames.feed(data)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Pool:
    """At most `size` connections to host:port; idle ones are reused last-in first-out."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, max(1, size)
        self._idle: list[_Connection] = []
        self._open = 0
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self, deadline: float) -> _Connection:
        while True:
            with self._cond:
                while not self._idle and self._open >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _PoolBusy(f"all {self.size} connections to the legacy core are busy")
                    self._cond.wait(remaining)
                if self._idle:
                    conn: _Connection | None = self._idle.pop()
                else:
                    conn = None
                    self._open += 1
            if conn is None:
                return self._connect(deadline)
            if conn.still_open():
                return conn
            self.discard(conn)

    def _connect(self, deadline: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=max(deadline - time.monotonic(), 0.001))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise LegacyUnavailable(f"cannot connect to the legacy core at {self.host}:{self.port}: {exc}") from exc
        return _Connection(sock)

    def release(self, conn: _Connection) -> None:
        with self._cond:
            if self._closed:
                self._open -= 1
                conn.close()
            else:
                self._idle.append(conn)
            self._cond.notify()

    def discard(self, conn: _Connection) -> None:
        conn.close()
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not address or not sep or not port.isdigit():
        raise ValueError(f"legacy core address must be 'host:port', not {address!r} (LEGACY_CORE_ADDRESS)")
    return host.strip("[]") or "127.0.0.1", int(port)


# --- the client ----------------------------------------------------------------------------


class LegacyCoreClient:
    """The legacy core at `address` ("host:port").

    `timeout`: seconds for one attempt, from asking for a connection to the answer (default
    LEGACY_CORE_TIMEOUT). `pool_size`: connections kept open (default LEGACY_CORE_POOL_SIZE).
    `terminal_id`: field 41 (default LEGACY_TERMINAL_ID). `attempts`, `backoff`,
    `max_backoff`: retries of the idempotent calls (echo, balance, reverse).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        terminal_id: str | None = None,
        attempts: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
    ) -> None:
        host, port = _parse_address(address)
        self.address = address
        self.timeout = float(settings.LEGACY_CORE_TIMEOUT if timeout is None else timeout)
        self.terminal_id = (terminal_id if terminal_id is not None else settings.LEGACY_TERMINAL_ID)[:8].ljust(8)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._pool = _Pool(host, port, settings.LEGACY_CORE_POOL_SIZE if pool_size is None else pool_size)
        self._stray_lock = threading.Lock()
        self.stray_answers = 0

    @classmethod
    def from_settings(cls, **kwargs: Any) -> LegacyCoreClient:
        """The core of LEGACY_CORE_ADDRESS (ValueError when it is not configured)."""
        return cls(settings.LEGACY_CORE_ADDRESS, **kwargs)

    def close(self) -> None:
        """Close the idle connections; connections in use close when their call ends."""
        self._pool.close()

    def __enter__(self) -> LegacyCoreClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the calls -------------------------------------------------------------------------

    def echo(self) -> None:
        """0800/0810 network echo (retried). Raises LegacyUnavailable, LegacyTimeout,
        LegacyProtocolError or LegacyDeclined."""

        def attempt() -> None:
            request = {**self._header(p.ECHO_REQUEST), "70": p.NETWORK_ECHO}
            answer = self._exchange(request, rrn=None, original=None)
            if answer["39"] != p.APPROVED:
                raise LegacyDeclined(f"echo refused ({answer['39']})", response_code=answer["39"])

        self._call(attempt, retry=True)

    def balance(self, account_number: str) -> LegacyBalance:
        """0100/0110 balance inquiry (retried). LegacyDeclined with response code 14 for an
        unknown or closed account; the other errors as echo()."""

        def attempt() -> LegacyBalance:
            request = {
                **self._header(p.BALANCE_REQUEST),
                "3": p.PROCESSING_BALANCE,
                "41": self.terminal_id,
                "102": account_number,
                **p.local_time_fields(datetime.now(UTC)),
            }
            answer = self._exchange(request, rrn=None, original=None)
            if answer["39"] != p.APPROVED:
                raise LegacyDeclined(
                    f"balance inquiry for {account_number} refused: {answer['39']} "
                    f"{p.response_description(answer['39'])}",
                    response_code=answer["39"],
                )
            balance = self._balance_of(answer, account_number)
            if balance is None:
                raise LegacyProtocolError("0110 approved without field 54 (balances)")
            return balance

        return self._call(attempt, retry=True)

    def prepare_debit(
        self, account_number: str, amount: int, currency: str, *, rrn: str | None = None
    ) -> OriginalRequest:
        """The 0200 that would debit `amount` minor units: store it, then `send` it. Nothing is
        sent here. ValueError on input the protocol cannot carry."""
        return self._prepare(DEBIT, account_number, amount, currency, rrn)

    def prepare_credit(
        self, account_number: str, amount: int, currency: str, *, rrn: str | None = None
    ) -> OriginalRequest:
        """As prepare_debit, crediting the account."""
        return self._prepare(CREDIT, account_number, amount, currency, rrn)

    def send(self, original: OriginalRequest) -> LegacyResult:
        """Send a prepared 0200 once (never retried) and return the core's decision: approved,
        or declined with its response code (51, 14, 62, 12, 94 ...).

        Raises LegacyUnavailable when nothing was sent (circuit open, connection refused, pool
        busy): the core never saw it. Raises LegacyTimeout or LegacyProtocolError carrying
        `original` when it was sent and no valid answer came: the outcome is unknown and the
        caller must `reverse(original)`. Sending the same OriginalRequest again is harmless at
        the core (same RRN: the first outcome is repeated), but reversing is the rule.
        """

        def attempt() -> LegacyResult:
            answer = self._exchange(self._financial_request(original), rrn=original.rrn, original=original)
            return self._result(answer, original.account_number)

        return self._call(attempt, retry=False)

    def debit(self, account_number: str, amount: int, currency: str, *, rrn: str | None = None) -> LegacyResult:
        """prepare_debit + send, for callers that need not store the request first."""
        return self.send(self.prepare_debit(account_number, amount, currency, rrn=rrn))

    def credit(self, account_number: str, amount: int, currency: str, *, rrn: str | None = None) -> LegacyResult:
        """prepare_credit + send."""
        return self.send(self.prepare_credit(account_number, amount, currency, rrn=rrn))

    def reverse(self, original: OriginalRequest) -> LegacyResult:
        """0400/0410: undo `original` (retried; the core applies a reversal once per RRN, so it
        is safe to call again and again, from any process, until `result.acknowledged`).

        acknowledged (00 or 25) means nothing of the original remains at the core, now or
        later. 12 means the reversal does not match what the core recorded for the RRN (a bug:
        retrying will not help). Raises LegacyUnavailable / LegacyTimeout /
        LegacyProtocolError when no answer came after the retries: try again later.
        """

        def attempt() -> LegacyResult:
            request = {
                **self._header(p.REVERSAL_REQUEST),
                "3": original.processing_code,
                "4": p.amount_field(original.amount),
                "37": original.rrn,
                "41": self.terminal_id,
                "49": p.currency_numeric(original.currency),
                "90": p.original_data_elements(
                    mti=original.mti, stan=original.stan, transmitted=p.transmission_datetime(original.transmitted_at)
                ),
                "102": original.account_number,
            }
            answer = self._exchange(request, rrn=original.rrn, original=None)
            return self._result(answer, original.account_number)

        return self._call(attempt, retry=True)

    # --- messages --------------------------------------------------------------------------

    def _header(self, mti: str) -> dict[str, str]:
        return {"t": mti, "7": p.transmission_datetime(datetime.now(UTC)), "11": next_stan()}

    def _prepare(self, kind: str, account_number: str, amount: int, currency: str, rrn: str | None) -> OriginalRequest:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError("amount must be a positive integer (minor units)")
        original = OriginalRequest(
            mti=p.FINANCIAL_REQUEST,
            stan=next_stan(),
            rrn=rrn or new_rrn(),
            transmitted_at=datetime.now(UTC).replace(microsecond=0),
            account_number=account_number,
            amount=amount,
            currency=currency,
            processing_code=processing_code_of(kind),
            terminal_id=self.terminal_id,
        )
        p.encode(self._financial_request(original))  # ProtocolError (a ValueError) now, not later
        return original

    def _financial_request(self, original: OriginalRequest) -> dict[str, str]:
        return {
            "t": p.FINANCIAL_REQUEST,
            "3": original.processing_code,
            "4": p.amount_field(original.amount),
            "7": p.transmission_datetime(original.transmitted_at),
            "11": original.stan,
            **p.local_time_fields(original.transmitted_at),
            "37": original.rrn,
            "41": original.terminal_id,
            "49": p.currency_numeric(original.currency),
            "102": original.account_number,
        }

    def _balance_of(self, answer: dict[str, str], account_number: str) -> LegacyBalance | None:
        if "54" not in answer:
            return None
        try:
            amounts = p.parse_additional_amounts(answer["54"])
            ledger, currency = amounts[p.AMOUNT_LEDGER]
            available, _ = amounts.get(p.AMOUNT_AVAILABLE, (ledger, currency))
        except (p.ProtocolError, KeyError) as exc:
            raise LegacyProtocolError(f"field 54 unreadable: {exc}") from exc
        return LegacyBalance(
            account_number=answer.get("102", account_number),
            currency=currency,
            ledger=ledger,
            available=available,
            as_of=datetime.now(UTC),
        )

    def _result(self, answer: dict[str, str], account_number: str) -> LegacyResult:
        code = answer["39"]
        return LegacyResult(
            mti=answer["t"],
            approved=code == p.APPROVED,
            response_code=code,
            stan=answer["11"],
            rrn=answer.get("37", ""),
            approval_code=answer.get("38", ""),
            balance=self._balance_of(answer, account_number),
        )

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, attempt: Callable[[], T], *, retry: bool) -> T:
        """One logical call: admitted by the breaker, its attempts, its outcome recorded once."""
        probe = _gate.admit()
        try:
            if retry and self.attempts > 1:
                retrying = tenacity.Retrying(
                    stop=tenacity.stop_after_attempt(self.attempts),
                    wait=tenacity.wait_exponential_jitter(
                        multiplier=self.backoff, jitter=self.backoff, max=self.max_backoff
                    ),
                    retry=tenacity.retry_if_exception(_retryable),
                    reraise=True,
                    before_sleep=_log_retry,
                )
                result = retrying(attempt)
            else:
                result = attempt()
        except _PoolBusy:
            if probe:
                _gate.release_probe()
            raise
        except (LegacyUnavailable, LegacyTimeout, LegacyProtocolError) as exc:
            _gate.record(probe=probe, failure=exc)
            raise
        except BaseException:
            _gate.record(probe=probe, failure=None)  # an answer (a refusal) or our own bug
            raise
        _gate.record(probe=probe, failure=None)
        return result

    def _exchange(
        self, request: dict[str, str], *, rrn: str | None, original: OriginalRequest | None
    ) -> dict[str, str]:
        """Send one request and return its answer (MTI, STAN and, when given, RRN matched)."""
        frame = p.encode(request)
        expected_mti, stan = p.RESPONSE_MTI[request["t"]], request["11"]
        deadline = time.monotonic() + self.timeout
        conn = self._pool.acquire(deadline)
        try:
            conn.sock.sendall(frame)
        except OSError as exc:
            # Not all of the frame reached the kernel: the core cannot have a complete request.
            self._pool.discard(conn)
            raise LegacyUnavailable(f"legacy core connection failed while sending: {exc}") from exc
        try:
            while True:
                body = conn.frames.read_body(conn.sock, deadline)
                answer = p.decode_body(body)
                if (
                    answer["t"] == expected_mti
                    and answer.get("11") == stan
                    and (rrn is None or answer.get("37", rrn) == rrn)
                ):
                    missing = p.missing_fields(answer)
                    if missing and answer.get("39") != p.FORMAT_ERROR:
                        raise p.ProtocolError(f"{answer['t']} lacks field(s) {', '.join(missing)}")
                    if "39" not in answer:
                        raise p.ProtocolError(f"{answer['t']} has no response code")
                    break
                with self._stray_lock:
                    self.stray_answers += 1
                logger.info(
                    "legacy core: discarded a stray %s stan=%s rrn=%s (waiting for stan=%s)",
                    answer.get("t"),
                    answer.get("11"),
                    answer.get("37", ""),
                    stan,
                )
        except TimeoutError:
            # The connection stays in step (partial bytes buffered): back to the pool. A late
            # answer that arrives on it later is discarded by the next caller.
            self._pool.release(conn)
            raise LegacyTimeout(
                f"legacy core: no answer to {request['t']} stan={stan} within {self.timeout}s", original=original
            ) from None
        except ConnectionError as exc:
            self._pool.discard(conn)
            if original is not None:
                raise LegacyTimeout(
                    f"legacy core closed the connection before answering {request['t']} stan={stan}",
                    original=original,
                ) from exc
            raise LegacyUnavailable(f"legacy core closed the connection: {exc}") from exc
        except p.ProtocolError as exc:
            self._pool.discard(conn)
            raise LegacyProtocolError(f"legacy core answered garbage: {exc}", original=original) from exc
        self._pool.release(conn)
        return answer


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (LegacyUnavailable, LegacyTimeout, LegacyProtocolError)) and not isinstance(exc, _PoolBusy)


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome.exception() if state.outcome else None
    logger.info("legacy core call failed (attempt %s), retrying: %s", state.attempt_number, outcome)


_default_lock = threading.Lock()
_default: LegacyCoreClient | None = None


def default_client() -> LegacyCoreClient:
    """The process's client of LEGACY_CORE_ADDRESS (one pool per process; ValueError when the
    address is not configured). Rebuilt when the setting changes (tests)."""
    global _default
    with _default_lock:
        if _default is None or _default.address != settings.LEGACY_CORE_ADDRESS:
            if _default is not None:
                _default.close()
            _default = LegacyCoreClient.from_settings()
        return _default

"""HTTP client of the payment gateway: plain values in, plain values out.

Every call has a connect and read timeout, retries what is safe to retry (exponential backoff
with jitter, a few attempts) and goes through ONE circuit breaker per process
(`gateway_breaker`). Retries happen inside one breaker call, so a logical call that fails
after all its attempts counts once; after PAYMENT_GATEWAY_BREAKER_FAILURES consecutive
failures the circuit opens and calls raise GatewayUnavailable at once, without touching the
network, until PAYMENT_GATEWAY_BREAKER_RESET_SECONDS have passed; then one probe call decides
(success closes it, failure opens it again).

Only GatewayUnavailable (network error, timeout, 5xx) counts as a failure: a rejection (4xx),
an unknown message or an invalid document is an answer, and the gateway is up.

pybreaker holds its lock for the duration of a call, so calls through the breaker are
serialised within a process; settlement makes one call at a time per worker process anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import pybreaker
import requests
import tenacity
from django.conf import settings

from bankcore import circuits

from .errors import GatewayRejected, GatewayUnavailable, UnknownMessage
from .iso20022 import parse_camt053, parse_pain002
from .messages import Statement, StatusReport, SubmissionReceipt

CIRCUIT_NAME = "payment_gateway"
logger = logging.getLogger(__name__)
T = TypeVar("T")


class _GaugeListener(pybreaker.CircuitBreakerListener):
    """Mirrors every state change into bankcore_circuit_state and the log."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        circuits.record(CIRCUIT_NAME, new_state.name)
        logger.warning(
            "payment gateway circuit %s -> %s", getattr(old_state, "name", None), new_state.name
        )


gateway_breaker = pybreaker.CircuitBreaker(
    fail_max=settings.PAYMENT_GATEWAY_BREAKER_FAILURES,
    reset_timeout=settings.PAYMENT_GATEWAY_BREAKER_RESET_SECONDS,
    # Answers are not failures: only an unreachable or failing gateway opens the circuit.
    exclude=[lambda exc: not isinstance(exc, GatewayUnavailable)],
    listeners=[_GaugeListener()],
    name=CIRCUIT_NAME,
)


def circuit_state() -> str:
    """The breaker's state: "closed", "half-open" or "open" (bankcore.circuits' names)."""
    return str(gateway_breaker.current_state)


class GatewayClient:
    """One gateway at `base_url`. Thread-safe enough for one Celery task at a time per instance
    (a requests Session is not shared across threads).

    `timeout` is the connect and read timeout in seconds (a float for both, or a pair);
    `attempts`, `backoff` and `max_backoff` shape the retries (exponential, with jitter).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | tuple[float, float] | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("payment gateway base URL is not configured (PAYMENT_GATEWAY_URL)")
        self.base_url = base_url.rstrip("/")
        chosen = settings.PAYMENT_GATEWAY_TIMEOUT if timeout is None else timeout
        self.timeout: tuple[float, float] = chosen if isinstance(chosen, tuple) else (float(chosen), float(chosen))
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls, **kwargs: Any) -> GatewayClient:
        """The gateway of PAYMENT_GATEWAY_URL (ValueError when it is not configured)."""
        return cls(settings.PAYMENT_GATEWAY_URL, **kwargs)

    # --- the calls ------------------------------------------------------------------------

    def submit(self, batch_xml: bytes, *, message_id: str) -> SubmissionReceipt:
        """POST a pain.001. Safe to repeat: the gateway deduplicates by message id, so a retry
        after a lost answer returns a duplicate receipt and executes nothing twice.

        Raises GatewayRejected (4xx: refused as sent, not retried) or GatewayUnavailable
        (no usable answer after the retries, or the circuit is open: the outcome is unknown,
        resubmit the same message id later).
        """

        def attempt() -> SubmissionReceipt:
            response = self._request(
                "POST",
                "/pain.001",
                data=batch_xml,
                headers={"Content-Type": "application/xml", "X-Message-Id": message_id},
            )
            if response.status_code in (200, 201, 202):
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                if body.get("message_id", message_id) != message_id:
                    raise GatewayRejected(response.status_code, f"receipt names another message {body!r}")
                return SubmissionReceipt(
                    message_id=message_id,
                    accepted=True,
                    duplicate=bool(body.get("duplicate", response.status_code == 200)),
                )
            raise GatewayRejected(response.status_code, _short(response))

        return self._call(attempt)

    def status_report(self, message_id: str) -> StatusReport | None:
        """GET the pain.002 of `message_id`: the report, or None while the gateway has none yet.

        Raises UnknownMessage (404: never received; submit it again), InvalidMessage (the
        report does not validate), GatewayRejected (other 4xx) or GatewayUnavailable.
        """

        def attempt() -> StatusReport | None:
            response = self._request("GET", f"/pain.002/{requests.utils.quote(message_id, safe='')}")
            if response.status_code == 200:
                return parse_pain002(response.content)
            if response.status_code in (202, 204):
                return None
            if response.status_code == 404:
                raise UnknownMessage(message_id)
            raise GatewayRejected(response.status_code, _short(response))

        return self._call(attempt)

    def statement(self, day: date) -> Statement:
        """GET the camt.053 of the bank's account at the gateway for `day` (validated)."""

        def attempt() -> Statement:
            response = self._request("GET", "/camt.053", params={"date": day.isoformat()})
            if response.status_code == 200:
                return parse_camt053(response.content)
            raise GatewayRejected(response.status_code, _short(response))

        return self._call(attempt)

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, attempt: Callable[[], T]) -> T:
        """One logical call: the retries inside one breaker call."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential_jitter(initial=self.backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception_type(GatewayUnavailable),
            reraise=True,
            before_sleep=_log_retry,
        )
        try:
            return gateway_breaker.call(retrying, attempt)
        except pybreaker.CircuitBreakerError as exc:
            # Either open already (no network call made) or this very failure opened it.
            cause = exc.__context__ if isinstance(exc.__context__, GatewayUnavailable) else None
            raise GatewayUnavailable(f"payment gateway circuit is open ({cause or exc})") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP exchange; network errors, timeouts and 5xx become GatewayUnavailable."""
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise GatewayUnavailable(f"{method} {path}: timed out ({exc.__class__.__name__})") from exc
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{method} {path}: {response.status_code} {_short(response)}")
        return response


def _short(response: requests.Response) -> str:
    return response.text[:300].strip() or response.reason or ""


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome.exception() if state.outcome else None
    logger.info("payment gateway call failed (attempt %s), retrying: %s", state.attempt_number, outcome)

"""A payment gateway simulator: ANOTHER bank's system, reached over HTTP with ISO 20022.

It keeps its own store, never bankcore's database: an append-only JSON-lines journal in its
data directory, fsync'd per record and replayed at start, so a restarted simulator remembers
every message, its report, every incoming credit and every webhook delivery.

Endpoints (the contract our client speaks):

- POST /pain.001 (XML): XSD-validated (400 with a short text otherwise). A new message id
  answers 202 `{"message_id", "status": "received", "duplicate": false}`; one already received
  answers 200 with `duplicate: true` and executes nothing. Each transfer is decided on
  receipt: RJCT with `reject_reason` when its creditor IBAN matches `reject_iban_pattern`,
  otherwise accepted and booked (ACSC) on the day of receipt (UTC). An end-to-end id decided
  before is never executed again: its status repeats the first outcome.
- GET /pain.002/<message id>: 200 the status report (group ACCP/PART/RJCT), 202 while it is
  not ready (`report_delay_seconds`), 404 for a message never received.
- GET /camt.053?date=YYYY-MM-DD: the bank's account at the gateway that day: one debit per
  transfer executed, one credit per incoming credit, planted entries; balances consistent.
- POST /_control/credits `{"iban", "amount", "currency", "debtor": {"name", "iban"},
  "remittance_information"}`: books an incoming credit and delivers the signed webhook
  (X-Signature, webhooks.sign) to the webhook URL from a background thread, retrying with
  backoff until a 2xx (delivered state is journalled; pending ones resume after a restart).
- POST /_control/faults (JSON, merged; `{"reset": true}` restores the defaults), GET
  /_control/state (counts, for tests), POST /_control/statement-entry (plant a camt.053 entry).

Fault switches live in memory only (a restarted simulator starts without faults):
`delay_seconds` (sleep before answering a business request), `fail_next` (the next N business
requests answer `fail_status`, default 503), `reject_iban_pattern` + `reject_reason`,
`duplicate_webhooks` (every new credit is delivered twice), `crash_after_accept` (journal the
next new pain.001, then die with os._exit before answering), `report_delay_seconds`,
`answer_delay_seconds` (journal a new pain.001, then sleep before answering: the sender can be
killed while the gateway already has the message).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from bankcore.money import InvalidAmount, parse_amount
from integrations.simulation import Journal

from . import iso20022, webhooks
from .errors import InvalidMessage
from .messages import CreditNotification, Party, StatementEntry, TransactionStatus

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
CRASH_EXIT_CODE = 17


@dataclass
class Faults:
    delay_seconds: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    reject_iban_pattern: str = ""
    reject_reason: str = "AC04"
    duplicate_webhooks: bool = False
    crash_after_accept: bool = False
    report_delay_seconds: float = 0.0
    # Sleep AFTER journalling a new pain.001, before answering: the message is accepted (and
    # survives) while the sender still waits for its receipt (delay_seconds sleeps before).
    answer_delay_seconds: float = 0.0

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
            elif isinstance(current, float):
                value = float(value)
            else:
                value = str(value or "")
                if name == "reject_iban_pattern" and value:
                    re.compile(value)
            setattr(self, name, value)


class GatewaySimulator:
    """The simulated gateway's state and rules; HTTP lives in _Handler."""

    def __init__(
        self,
        *,
        data_dir: Path,
        account_iban: str,
        currency: str = "EUR",
        opening_balance: int = 100_000_000,
        webhook_url: str = "",
        webhook_secret: str = "",
        webhook_backoff: float = 0.2,
        webhook_max_backoff: float = 10.0,
    ) -> None:
        self.account_iban = account_iban
        self.currency = currency
        self.opening_balance = opening_balance
        self.faults = Faults()
        self.lock = threading.RLock()
        self.messages: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}  # end-to-end id -> first outcome
        self.credits: dict[str, dict[str, Any]] = {}
        self.delivered: dict[str, int] = {}
        self.delivery_attempts = 0
        self.planted: list[dict[str, Any]] = []
        self.journal = Journal(data_dir, owner="gateway simulator")
        for record in self.journal.records():
            self._apply(record)
        self.deliverer = WebhookDeliverer(
            self, url=webhook_url, secret=webhook_secret, backoff=webhook_backoff, max_backoff=webhook_max_backoff
        )
        for notification_id, credit in self.credits.items():
            for copy in range(self.delivered.get(notification_id, 0), credit["copies"]):
                self.deliverer.enqueue(notification_id, copy)

    # --- journal -------------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        """Journal first (durable), then apply to memory. Call with self.lock held."""
        self.journal.append(record)
        self._apply(record)

    def _apply(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "message":
            self.messages[record["message_id"]] = record
            for outcome in record["outcomes"]:
                self.decisions.setdefault(outcome["end_to_end_id"], {**outcome, "message_id": record["message_id"]})
        elif kind == "credit":
            self.credits[record["notification"]["id"]] = record
        elif kind == "delivery":
            self.delivery_attempts += 1
            if record["ok"]:
                self.delivered[record["id"]] = self.delivered.get(record["id"], 0) + 1
        elif kind == "statement_entry":
            self.planted.append(record)

    # --- pain.001 / pain.002 -------------------------------------------------------------

    def receive_pain001(self, xml: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, receipt) for a pain.001; InvalidMessage when it does not validate."""
        batch = iso20022.parse_pain001(xml)
        payment_info_id = iso20022.pain001_payment_information_id(xml)
        with self.lock:
            if batch.message_id in self.messages:
                return 200, {"message_id": batch.message_id, "status": "received", "duplicate": True}
            now = time.time()
            pattern = self.faults.reject_iban_pattern
            outcomes = []
            decided: dict[str, dict[str, Any]] = {}
            for transfer in batch.transfers:
                e2e = transfer.end_to_end_id
                prior = decided.get(e2e) or self.decisions.get(e2e)
                creditor = asdict(transfer.creditor)
                base = {
                    "end_to_end_id": e2e,
                    "amount": transfer.amount,
                    "currency": transfer.currency,
                    "creditor": creditor,
                }
                if prior is not None:
                    outcome = {
                        **base,
                        "status": prior["status"],
                        "reason_code": prior["reason_code"],
                        "executed": False,
                    }
                elif pattern and re.search(pattern, transfer.creditor.iban):
                    outcome = {**base, "status": "RJCT", "reason_code": self.faults.reject_reason, "executed": False}
                else:
                    outcome = {**base, "status": "ACSC", "reason_code": "", "executed": True}
                decided.setdefault(e2e, outcome)
                outcomes.append(outcome)
            record = {
                "type": "message",
                "message_id": batch.message_id,
                "payment_information_id": payment_info_id,
                "received_at": now,
                "day": datetime.fromtimestamp(now, UTC).date().isoformat(),
                "report_id": "STS" + uuid.uuid4().hex[:24],
                "report_ready_at": now + self.faults.report_delay_seconds,
                "outcomes": outcomes,
            }
            self._record(record)
            if self.faults.crash_after_accept:
                logger.error("fault crash_after_accept: message %s journalled, dying now", batch.message_id)
                os._exit(CRASH_EXIT_CODE)
            return 202, {"message_id": batch.message_id, "status": "received", "duplicate": False}

    def pain002(self, message_id: str) -> tuple[int, bytes]:
        with self.lock:
            message = self.messages.get(message_id)
        if message is None:
            return 404, b"unknown message"
        if time.time() < message["report_ready_at"]:
            return 202, b""
        statuses = [
            TransactionStatus(end_to_end_id=o["end_to_end_id"], status=o["status"], reason_code=o["reason_code"])
            for o in message["outcomes"]
        ]
        rejected = sum(1 for s in statuses if s.rejected)
        group = "RJCT" if rejected == len(statuses) else "PART" if rejected else "ACCP"
        xml = iso20022.build_pain002(
            message_id=message["report_id"],
            original_message_id=message_id,
            group_status=group,
            transactions=statuses,
            original_payment_information_id=message.get("payment_information_id", ""),
            created_at=datetime.fromtimestamp(message["report_ready_at"], UTC),
        )
        return 200, xml

    # --- camt.053 --------------------------------------------------------------------------

    def _entries(self) -> list[StatementEntry]:
        """Every booking on the bank's account, in journal order."""
        entries: list[StatementEntry] = []
        with self.lock:
            for message in self.messages.values():
                for outcome in message["outcomes"]:
                    if outcome["executed"]:
                        entries.append(
                            StatementEntry(
                                reference=outcome["end_to_end_id"],
                                amount=outcome["amount"],
                                currency=outcome["currency"],
                                credit=False,
                                booking_date=date.fromisoformat(message["day"]),
                                counterparty=Party(**outcome["creditor"]),
                            )
                        )
            for credit in self.credits.values():
                n = credit["notification"]
                entries.append(
                    StatementEntry(
                        reference=n["id"],
                        amount=parse_amount(n["amount"], n["currency"]),
                        currency=n["currency"],
                        credit=True,
                        booking_date=date.fromisoformat(credit["day"]),
                        counterparty=Party(name=n["debtor"]["name"], iban=n["debtor"]["iban"]),
                    )
                )
            for planted in self.planted:
                counterparty = planted.get("counterparty")
                entries.append(
                    StatementEntry(
                        reference=planted["reference"],
                        amount=planted["amount"],
                        currency=planted["currency"],
                        credit=planted["credit"],
                        booking_date=date.fromisoformat(planted["day"]),
                        counterparty=Party(**counterparty) if counterparty else None,
                    )
                )
        return [e for e in entries if e.currency == self.currency]

    def camt053(self, day: date) -> bytes:
        entries = self._entries()
        before = sum(e.amount if e.credit else -e.amount for e in entries if e.booking_date < day)
        return iso20022.build_camt053(
            statement_id=f"STMT-{day:%Y%m%d}",
            account_iban=self.account_iban,
            day=day,
            currency=self.currency,
            opening_balance=self.opening_balance + before,
            entries=[e for e in entries if e.booking_date == day],
        )

    # --- incoming credits and their webhooks ---------------------------------------------

    def book_credit(self, data: dict[str, Any]) -> dict[str, Any]:
        """Book an incoming credit and queue its webhook; the notification body. ValueError on bad input."""
        debtor = data.get("debtor") or {}
        booked_at = datetime.now(UTC).replace(microsecond=0)
        body = {
            "id": "NTF" + uuid.uuid4().hex[:20],
            "type": "credit",
            "iban": data.get("iban"),
            "amount": data.get("amount"),
            "currency": data.get("currency", "EUR"),
            "debtor": {"name": debtor.get("name"), "iban": debtor.get("iban")},
            "remittance_information": data.get("remittance_information", ""),
            "booked_at": booked_at.isoformat(),
        }
        notification = CreditNotification.from_json(json.dumps(body).encode())  # the contract, checked
        body = notification.to_dict()
        with self.lock:
            copies = 2 if self.faults.duplicate_webhooks else 1
            self._record(
                {"type": "credit", "notification": body, "copies": copies, "day": booked_at.date().isoformat()}
            )
        for copy in range(copies):
            self.deliverer.enqueue(body["id"], copy)
        return body

    def record_delivery(self, notification_id: str, *, ok: bool, status: int | None) -> None:
        with self.lock:
            self._record({"type": "delivery", "id": notification_id, "ok": ok, "status": status, "at": time.time()})

    def plant_entry(self, data: dict[str, Any]) -> dict[str, Any]:
        currency = str(data.get("currency", self.currency))
        try:
            amount = parse_amount(data.get("amount"), currency)
        except InvalidAmount as exc:
            raise ValueError(f"amount: {exc}") from None
        counterparty = data.get("counterparty")
        record = {
            "type": "statement_entry",
            "reference": str(data.get("reference") or "PLANTED" + uuid.uuid4().hex[:12]),
            "amount": amount,
            "currency": currency,
            "credit": bool(data.get("credit", False)),
            "day": date.fromisoformat(str(data.get("date") or datetime.now(UTC).date().isoformat())).isoformat(),
            "counterparty": {"name": counterparty["name"], "iban": counterparty["iban"]} if counterparty else None,
        }
        with self.lock:
            self._record(record)
        return record

    def state(self) -> dict[str, Any]:
        with self.lock:
            outcomes = [o for m in self.messages.values() for o in m["outcomes"]]
            copies = sum(c["copies"] for c in self.credits.values())
            delivered = sum(self.delivered.values())
            return {
                "messages": len(self.messages),
                "transfers_executed": sum(1 for o in outcomes if o["executed"]),
                "transfers_rejected": sum(1 for d in self.decisions.values() if d["status"] == "RJCT"),
                "credits": len(self.credits),
                "deliveries": delivered,
                "delivery_attempts": self.delivery_attempts,
                "pending_deliveries": copies - delivered,
                "faults": asdict(self.faults),
            }


class WebhookDeliverer:
    """One background thread delivering queued notification copies, each until a 2xx, with
    exponential backoff per copy. Without a URL nothing is sent (the copies stay pending)."""

    def __init__(self, simulator: GatewaySimulator, *, url: str, secret: str, backoff: float, max_backoff: float):
        self.simulator = simulator
        self.url = url
        self.secret = secret
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._queue: dict[tuple[str, int], tuple[float, int]] = {}  # (id, copy) -> (due, attempts)
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="webhook-deliverer", daemon=True)
        self._session = requests.Session()

    def start(self) -> None:
        if self.url:
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def enqueue(self, notification_id: str, copy: int) -> None:
        with self._cond:
            self._queue[(notification_id, copy)] = (time.monotonic(), 0)
            self._cond.notify_all()

    def _next_due(self) -> tuple[tuple[str, int], int] | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [(at, key) for key, (at, _) in self._queue.items() if at <= now]
                if due:
                    _, key = min(due)
                    _, attempts = self._queue.pop(key)
                    return key, attempts
                wait = min((at for at, _ in self._queue.values()), default=now + 60) - now
                self._cond.wait(timeout=max(wait, 0.01))
        return None

    def _run(self) -> None:
        while (item := self._next_due()) is not None:
            (notification_id, copy), attempts = item
            ok, status = self._deliver(notification_id)
            self.simulator.record_delivery(notification_id, ok=ok, status=status)
            if not ok:
                delay = min(self.backoff * 2**attempts, self.max_backoff)
                with self._cond:
                    self._queue[(notification_id, copy)] = (time.monotonic() + delay, attempts + 1)

    def _deliver(self, notification_id: str) -> tuple[bool, int | None]:
        with self.simulator.lock:
            body = json.dumps(self.simulator.credits[notification_id]["notification"], separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[webhooks.SIGNATURE_HEADER] = webhooks.sign(self.secret, body, int(time.time()))
        try:
            response = self._session.post(self.url, data=body, headers=headers, timeout=5)
        except requests.RequestException as exc:
            logger.info("webhook %s not delivered: %s", notification_id, exc.__class__.__name__)
            return False, None
        logger.info("webhook %s -> %s", notification_id, response.status_code)
        return 200 <= response.status_code < 300, response.status_code


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "bankcore-gateway-simulator/1"

    # --- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away before the answer (%s)", status)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        data = json.loads(self._body() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def _faults_pass(self) -> bool:
        """Apply fail_next and delay_seconds to a business request; False when it was answered."""
        sim = self.server.simulator
        with sim.lock:
            failing = sim.faults.fail_next > 0
            if failing:
                sim.faults.fail_next -= 1
            status, delay = sim.faults.fail_status, sim.faults.delay_seconds
        if failing:
            self._send(status, b"simulated failure")
            return False
        if delay > 0:
            time.sleep(delay)
        return True

    # --- routes ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        sim = self.server.simulator
        if url.path == "/_control/state":
            self._json(200, sim.state())
        elif url.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif url.path.startswith("/pain.002/"):
            if self._faults_pass():
                status, body = sim.pain002(unquote(url.path[len("/pain.002/") :]))
                self._send(status, body, "application/xml" if status == 200 else "text/plain; charset=utf-8")
        elif url.path == "/camt.053":
            try:
                day = date.fromisoformat(parse_qs(url.query).get("date", [""])[0])
            except ValueError:
                self._send(400, b"date=YYYY-MM-DD required")
                return
            if self._faults_pass():
                self._send(200, sim.camt053(day), "application/xml")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        sim = self.server.simulator
        try:
            if url.path == "/pain.001":
                body = self._body()
                if not self._faults_pass():
                    return
                try:
                    status, receipt = sim.receive_pain001(body)
                except InvalidMessage as exc:
                    self._send(400, str(exc)[:500].encode())
                    return
                with sim.lock:
                    answer_delay = sim.faults.answer_delay_seconds
                if status == 202 and answer_delay > 0:  # journalled already: the answer is late
                    time.sleep(answer_delay)
                self._json(status, receipt)
            elif url.path == "/_control/faults":
                with sim.lock:
                    sim.faults.update(self._json_body())
                    self._json(200, asdict(sim.faults))
            elif url.path == "/_control/credits":
                self._json(201, sim.book_credit(self._json_body()))
            elif url.path == "/_control/statement-entry":
                self._json(201, sim.plant_entry(self._json_body()))
            else:
                self._send(404, b"not found")
        except (ValueError, KeyError, TypeError, re.error) as exc:
            self._send(400, f"bad request: {exc}"[:500].encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: GatewaySimulator


def make_server(simulator: GatewaySimulator, host: str, port: int) -> _Server:
    server = _Server((host, port), _Handler)
    server.simulator = simulator
    return server


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    account_iban: str,
    webhook_url: str = "",
    webhook_secret: str = "",
    webhook_backoff: float = 0.2,
) -> None:
    """Run the simulator until interrupted (SIGTERM/SIGINT). Everything acknowledged is journalled."""
    simulator = GatewaySimulator(
        data_dir=data_dir,
        account_iban=account_iban,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_backoff=webhook_backoff,
    )
    # Compile the schemas before the first request, not during it.
    for name in (iso20022.PAIN001, iso20022.PAIN002, iso20022.CAMT053):
        iso20022.schema(name)
    server = make_server(simulator, host, port)
    simulator.deliverer.start()
    logger.info("payment gateway simulator on http://%s:%s (data %s)", host, server.server_port, data_dir)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass  # Ctrl-C: stop serving and close the journal below
    finally:
        simulator.deliverer.stop()
        server.server_close()
        with contextlib.suppress(OSError):
            simulator.journal.close()

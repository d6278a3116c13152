"""Real servers on loopback standing in for the bank's providers in tests.

- `SmtpSink`: an aiosmtpd SMTP server that keeps every message it receives.
- `HttpProvider`: a threaded HTTP server answering like an SMS gateway or FCM HTTP v1;
  tests script its next answers (status, body, delay) and read what it received.
  As an SMS gateway it honours `Idempotency-Key` like idempotent payment/messaging APIs:
  a key it already accepted answers the stored answer (same message id) and the text is
  not sent again. As FCM it does not dedupe (FCM v1 has no idempotency key) but keeps
  what each device would show: a notification with the same tag / collapse id replaces
  the one already shown.
  With `dedupe = False` (reset() turns it back on) neither does anything of the kind:
  every accepted request is a message the customer gets (an SMS gateway that ignores
  `Idempotency-Key`, a device that ignores the collapse key), so "sent once" proves what
  bankcore guarantees by itself.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from bankcore.testing import free_port


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.rcpt_answers: dict[str, str] = {}  # address -> SMTP reply to RCPT TO, e.g. "550 ..."
        self.delay_next_reply = 0.0  # once: keep the next message, but answer DATA this much later
        self.in_flight = 0  # messages kept and not yet answered
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        answer = self.rcpt_answers.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            delay, self.delay_next_reply = self.delay_next_reply, 0.0
            self.in_flight += 1
        try:
            await asyncio.sleep(delay)
        finally:
            with self.lock:
                self.in_flight -= 1
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.rcpt_answers.clear()
            self.delay_next_reply = 0.0

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]


class HttpProvider:
    """kind: 'sms' answers 201 {"id"}; 'push' answers 200 {"name"} and 404 UNREGISTERED for bad tokens."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.requests: list[Received] = []
        self.script: deque[Answer] = deque()
        self.invalid_tokens: set[str] = set()
        self.lock = threading.Lock()
        self.counter = 0
        self.delay = 0.0  # before answering an unscripted request (after accepting it)
        self.dedupe = True  # False: no Idempotency-Key replay (SMS), no collapsing on the device (push)
        self.in_flight = 0  # requests received and not yet answered
        self.accepted_keys: dict[str, Answer] = {}  # SMS: Idempotency-Key -> the answer given
        self.replayed: list[Received] = []  # SMS: requests answered from accepted_keys, not sent
        self.shown: dict[tuple[str, str], Received] = {}  # push: (token, tag) -> what the device shows
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                answer = provider._answer(self.path, dict(self.headers), payload)
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                    raw = json.dumps(answer.body).encode()
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test) or died (crash test)
                finally:
                    with provider.lock:
                        provider.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, path: str, headers: dict[str, str], payload: dict[str, Any]) -> Answer:
        with self.lock:
            self.in_flight += 1
            key = headers.get("Idempotency-Key")
            if self.kind == "sms" and self.dedupe and key and key in self.accepted_keys:
                self.replayed.append(Received(path, headers, payload))
                return self.accepted_keys[key]
            self.counter += 1
            scripted = self.script.popleft() if self.script else None
            token = payload.get("message", {}).get("token")
            if scripted is None and self.kind == "push" and token in self.invalid_tokens:
                scripted = Answer(
                    404,
                    {
                        "error": {
                            "code": 404,
                            "message": "Requested entity was not found.",
                            "status": "NOT_FOUND",
                            "details": [
                                {
                                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                    "errorCode": "UNREGISTERED",
                                }
                            ],
                        }
                    },
                )
            answer = scripted or (
                Answer(201, {"id": f"sms-{self.counter}"}, self.delay)
                if self.kind == "sms"
                else Answer(200, {"name": f"projects/bankcore/messages/{self.counter}"}, self.delay)
            )
            # Only what the provider accepted counts as received.
            if 200 <= answer.status < 300:
                received = Received(path, headers, payload)
                self.requests.append(received)
                if self.kind == "sms" and key:
                    self.accepted_keys[key] = Answer(answer.status, answer.body)
                if self.kind == "push":
                    message = payload.get("message", {})
                    tag = message.get("android", {}).get("notification", {}).get("tag") if self.dedupe else None
                    tag = tag or f"#{self.counter}"
                    self.shown[(message.get("token"), tag)] = received
            else:
                self.rejected.append(Received(path, headers, payload))
            return answer

    rejected: list[Received]

    def start(self) -> HttpProvider:
        self.rejected = []
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.rejected.clear()
            self.script.clear()
            self.invalid_tokens.clear()
            self.accepted_keys.clear()
            self.replayed.clear()
            self.shown.clear()
            self.delay = 0.0
            self.dedupe = True

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

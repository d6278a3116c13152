"""The bank's side of a chaos test: customers seeded through the services an operator uses, and
mobile-app clients that move money over HTTP and retry the way the API contract tells them to.

A client makes one transfer at a time under a fresh Idempotency-Key and keeps that key until it
gets a final answer: a 2xx (acknowledged) or a 4xx the app would show (refused). Everything else
is retried with the same key and the same body, as an app does:
- 503 (`unavailable`, `maintenance`): after Retry-After (capped, so a test stays short);
- 409 `idempotency_in_progress`: the first try still runs on the server;
- no answer at all (connection refused or reset, timeout): the outcome is unknown
  (indeterminate), and only the retry under the same key can tell.
Every try is recorded, so a test can check what the clients saw against what the bank did.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from bankcore.testing import BASE_DIR

PASSWORD = "chaos-monkey-passphrase-1"
# Longest a client honours Retry-After: an app would wait all of it, a test has no time to.
RETRY_AFTER_CAP = 0.5
# A transfer still without a final answer this long after its first try is left unresolved.
GIVE_UP_AFTER = 90.0

# Runs in a fresh bankcore process on the private server, as the runtime role: the customers,
# their funded accounts (the teller deposit an operator makes with `manage.py deposit`), a
# login session each and, with `push`, a registered phone with a push token.
_SEED = """
import base64, json, sys
import django
django.setup()
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth import get_user_model
from accounts.models import LoginSession
from accounts.services.bank_accounts import bank_account_open
from accounts.services.devices import device_register
from accounts.services.sessions import session_start
from transactions.services.cash import cash_deposit

count, balance = int(sys.argv[1]), int(sys.argv[2])
push, password, label = sys.argv[3] == "push", sys.argv[4], sys.argv[5]
customers = []
for n in range(count):
    user = get_user_model().objects.create_user(
        email=f"{label}-{n}@chaos.test", password=password, full_name=f"Chaos Customer {n}",
        phone=f"+49151999{n:05d}",
    )
    account = bank_account_open(owner=user, kind="current", currency="EUR", name="Main")
    cash_deposit(iban=account.iban, amount=balance, reference="chaos funding", actor="operator:deposit")
    token = ""
    if push:
        token = f"chaos-push-{label}-{n}"
        key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        device_register(user=user, name="Phone", platform="android", app_version="2.3.1",
                        public_key=base64.b64encode(key).decode(), push_token=token)
    _, pair = session_start(user=user, method=LoginSession.Method.PASSWORD, device=None)
    customers.append({"user_id": str(user.pk), "email": user.email, "account_id": str(account.pk),
                      "iban": account.iban, "access": pair["access"], "push_token": token})
print("SEED " + json.dumps(customers))
"""


@dataclass(frozen=True)
class Customer:
    user_id: str
    email: str
    account_id: str
    iban: str
    access: str
    push_token: str


def seed_customers(
    env: dict[str, str], *, count: int, balance: int, push: bool = False, label: str = "c"
) -> list[Customer]:
    result = subprocess.run(
        [sys.executable, "-c", _SEED, str(count), str(balance), "push" if push else "-", PASSWORD, label],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("SEED ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"seeding failed:\n{result.stdout}\n{result.stderr}")
    return [Customer(**item) for item in json.loads(lines[-1][5:])]


@dataclass(frozen=True)
class Try:
    """One HTTP attempt: its status (None: no answer - refused, reset, timed out), error code,
    Retry-After and the monotonic times it started and ended."""

    status: int | None
    code: str | None
    retry_after: str | None
    started: float
    ended: float
    error: str = ""
    replayed: bool = False  # the answer of an earlier try under the same key (Idempotent-Replayed)

    @property
    def indeterminate(self) -> bool:
        return self.status is None

    @property
    def answer(self) -> str:
        """What the client saw, in a word or two: "201", "503 unavailable", "ConnectionError"."""
        return f"{self.status} {self.code or ''}".strip() if self.status else self.error


@dataclass
class Intent:
    """One transfer a customer wants made, under one Idempotency-Key, and every try of it."""

    key: str
    source: Customer
    destination: Customer
    amount: int  # minor units
    tries: list[Try] = field(default_factory=list)
    transfer_id: str | None = None
    final_status: int | None = None

    @property
    def acknowledged(self) -> bool:
        return self.final_status is not None and 200 <= self.final_status < 300

    @property
    def resolved(self) -> bool:
        return self.final_status is not None

    def body(self) -> dict[str, str]:
        # The key rides in the description too: the ledger then says which intent each transfer is.
        return {
            "source_account": self.source.account_id,
            "destination": self.destination.iban,
            "amount": str(Decimal(self.amount).scaleb(-2)),
            "currency": "EUR",
            "description": self.key,
        }


def _retry_after(response: requests.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "0")), RETRY_AFTER_CAP)
    except ValueError:
        return RETRY_AFTER_CAP


def _error_code(response: requests.Response) -> str | None:
    try:
        return response.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None


class AppClients:
    """`threads` mobile-app clients, each sending transfers from its own customers' accounts
    (so no two clients spend from one account and the expected balances are exact), until stopped."""

    def __init__(
        self, base_url: str, customers: list[Customer], *, threads: int, pause: float = 0.0, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url
        self.customers = customers
        self.threads = threads
        self.pause = pause
        self.timeout = timeout
        self.intents: list[Intent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> AppClients:
        for n in range(self.threads):
            own = self.customers[n :: self.threads]
            worker = threading.Thread(target=self._run, args=(own,), name=f"app-client-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, timeout: float = GIVE_UP_AFTER + 15) -> None:
        """No new transfers; wait for those under way to reach a final answer (or give up)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _run(self, own: list[Customer]) -> None:
        rng = random.Random()
        session = requests.Session()
        while not self._stop.is_set():
            source = rng.choice(own)
            destination = rng.choice([c for c in self.customers if c is not source])
            intent = Intent(
                key=f"chaos-{uuid.uuid4().hex}", source=source, destination=destination, amount=rng.randint(1, 500)
            )
            with self._lock:
                self.intents.append(intent)
            self.complete(intent, session)
            if self.pause:
                time.sleep(self.pause)

    def complete(self, intent: Intent, session: requests.Session) -> None:
        """Send `intent` until it has a final answer, retrying with the same key and body."""
        first = time.monotonic()
        while time.monotonic() - first < GIVE_UP_AFTER:
            started = time.monotonic()
            try:
                response = session.post(
                    f"{self.base_url}/api/v1/transfers",
                    json=intent.body(),
                    headers={"Authorization": f"Bearer {intent.source.access}", "Idempotency-Key": intent.key},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                intent.tries.append(Try(None, None, None, started, time.monotonic(), error=type(exc).__name__))
                session = requests.Session()  # a fresh connection, as an app's HTTP stack would
                time.sleep(0.2)
                continue
            ended = time.monotonic()
            code = _error_code(response) if response.status_code >= 300 else None
            intent.tries.append(
                Try(
                    response.status_code,
                    code,
                    response.headers.get("Retry-After"),
                    started,
                    ended,
                    replayed=response.headers.get("Idempotent-Replayed") == "true",
                )
            )
            status = response.status_code
            if 200 <= status < 300:
                intent.transfer_id = response.json()["id"]
                intent.final_status = status
                return
            if status == 503 or (status == 409 and code == "idempotency_in_progress"):
                time.sleep(_retry_after(response) or 0.2)
                continue
            if 400 <= status < 500:
                intent.final_status = status  # the app shows it; the customer decides
                return
            time.sleep(0.2)  # 500 and other surprises: recorded (the test fails on them), retried


def tries(intents: Iterable[Intent]) -> list[Try]:
    return [attempt for intent in intents for attempt in intent.tries]


def describe(attempt: Try, origin: float) -> str:
    return f"{attempt.answer} Retry-After={attempt.retry_after} at +{attempt.started - origin:.1f}s"


def expected_balances(customers: list[Customer], intents: Iterable[Intent], funding: int) -> dict[str, int]:
    """Each account's balance if exactly the acknowledged transfers were made, once each."""
    balances = {c.account_id: funding for c in customers}
    for intent in intents:
        if intent.acknowledged:
            balances[intent.source.account_id] -= intent.amount
            balances[intent.destination.account_id] += intent.amount
    return balances


def login(base_url: str, customer: Customer, timeout: float = 10.0) -> requests.Response:
    """The app's password sign-in."""
    return requests.post(
        f"{base_url}/api/v1/auth/token", json={"email": customer.email, "password": PASSWORD}, timeout=timeout
    )


def wait_until(
    predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "condition", strict: bool = True
) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes: then
    AssertionError, or with strict=False its last (falsy) value, for the test to report."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if not strict:
                return value
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)

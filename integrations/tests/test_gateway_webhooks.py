"""The simulator delivers signed credit webhooks to a real HTTP receiver, until a 2xx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bankcore.testing import free_port
from integrations.gateway import webhooks
from integrations.gateway.messages import CreditNotification
from integrations.gateway.testing import GatewaySimulatorProcess

SECRET = "webhook-test-secret"


class Receiver:
    """A tiny webhook endpoint: records every delivery; answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str | None, bytes]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.deliveries.append((self.headers.get("X-Signature"), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/v1/integrations/gateway/webhook"

    def delivered(self, notification_id: str) -> list[tuple[str | None, bytes]]:
        with self.lock:
            return [d for d in self.deliveries if notification_id.encode() in d[1]]

    def wait_for(self, notification_id: str, count: int, timeout: float = 10) -> list[tuple[str | None, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.delivered(notification_id)) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{count} deliveries of {notification_id} expected, got {self.delivered(notification_id)}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(scope="module")
def webhook_gateway(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySimulatorProcess]:
    simulator = GatewaySimulatorProcess(
        tmp_path_factory.mktemp("gateway-webhooks"), webhook_url=receiver.url, webhook_secret=SECRET
    )
    with simulator:
        yield simulator


def book_credit(gateway: GatewaySimulatorProcess) -> dict:
    return gateway.credit(
        iban="DE02120300000000202051",
        amount="12.50",
        currency="EUR",
        debtor={"name": "Jane Doe", "iban": "FR1420041010050500013M02606"},
        remittance_information="Rent January",
    )


def test_a_booked_credit_is_delivered_as_a_signed_webhook_and_redelivered_until_2xx(webhook_gateway, receiver):
    webhook_gateway.reset_faults()
    receiver.statuses[:] = [500, 503]
    credit = book_credit(webhook_gateway)

    deliveries = receiver.wait_for(credit["id"], 3)
    time.sleep(0.3)  # nothing more once a 2xx came back

    assert len(receiver.delivered(credit["id"])) == 3
    for header, body in deliveries:
        webhooks.verify(SECRET, header, body, now=time.time())
        notification = CreditNotification.from_json(body)
        assert notification.id == credit["id"] and notification.amount == 1250
        assert notification.iban == "DE02120300000000202051" and notification.remittance_information == "Rent January"
    state = webhook_gateway.state()
    assert state["pending_deliveries"] == 0


def test_under_duplicate_webhooks_every_notification_is_delivered_twice(webhook_gateway, receiver):
    webhook_gateway.faults(duplicate_webhooks=True)
    credit = book_credit(webhook_gateway)

    first, second = receiver.wait_for(credit["id"], 2)
    time.sleep(0.3)

    assert len(receiver.delivered(credit["id"])) == 2
    assert first[1] == second[1]  # the same notification, the same id: the receiver applies it once
    webhook_gateway.reset_faults()


def test_pending_deliveries_survive_a_simulator_restart(receiver, tmp_path):
    port = free_port()
    dead_url = f"http://127.0.0.1:{port}/nobody-listens"
    first = GatewaySimulatorProcess(tmp_path / "gw", webhook_url=dead_url, webhook_secret=SECRET).start()
    try:
        credit = book_credit(first)
        time.sleep(0.3)
        assert first.state()["pending_deliveries"] == 1 and first.state()["delivery_attempts"] >= 1
    finally:
        first.stop()

    with GatewaySimulatorProcess(
        tmp_path / "gw", port=first.port, webhook_url=receiver.url, webhook_secret=SECRET
    ) as restarted:
        [(header, body)] = receiver.wait_for(credit["id"], 1)
        webhooks.verify(SECRET, header, body, now=time.time())
        deadline = time.monotonic() + 5
        while restarted.state()["pending_deliveries"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarted.state()["pending_deliveries"] == 0 and restarted.state()["credits"] == 1

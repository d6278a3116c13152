"""POST /api/v1/integrations/gateway/webhook: signed incoming credits, each applied once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client

from accounts.services.bank_accounts import internal_account
from bankcore.testing import GunicornServer, process_env
from integrations.gateway.webhooks import sign
from notifications.models import Notification
from transactions.models import IncomingCredit, Transaction
from transactions.selectors import account_history, counterparty_of, history_page
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.gateway_sim import GatewaySimulatorProcess
from transactions.tests.snapshots import assert_unchanged, ledger_snapshot

pytestmark = [pytest.mark.postgres]

URL = "/api/v1/integrations/gateway/webhook"
SECRET = "whsec-test-secret"


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.GATEWAY_WEBHOOK_SECRET = SECRET


def notification_body(iban: str, amount: str = "12.50", notification_id: str | None = None, **extra) -> bytes:
    body = {
        "id": notification_id or f"NTF{uuid.uuid4().hex[:20]}",
        "type": "credit",
        "iban": iban,
        "amount": amount,
        "currency": "EUR",
        "debtor": {"name": "ACME SARL", "iban": "FR1420041010050500013M02606"},
        "remittance_information": "Invoice 77",
        "booked_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        **extra,
    }
    return json.dumps(body).encode()


def deliver(body: bytes, *, secret: str = SECRET, at: float | None = None, header: str | None = None, client=None):
    signature = header if header is not None else sign(secret, body, int(at if at is not None else time.time()))
    headers = {"HTTP_X_SIGNATURE": signature} if signature else {}
    return (client or Client()).post(URL, body, content_type="application/json", **headers)


@pytest.mark.django_db
def test_a_signed_credit_is_posted_to_the_customers_account_and_the_customer_told(customer):
    account = open_account(customer)
    body = notification_body(account.iban, "12.50")
    response = deliver(body)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "applied"}
    account.refresh_from_db()
    assert account.balance == 1_250
    credit = IncomingCredit.objects.get()
    assert (credit.status, credit.account_id, credit.amount) == ("posted", account.pk, 1_250)
    assert credit.debtor_name == "ACME SARL" and credit.remittance_information == "Invoice 77"
    clearing = internal_account(purpose="settlement_clearing", currency="EUR")
    clearing.refresh_from_db()
    assert clearing.balance == -1_250
    assert "ACME SARL" in credit.transaction.description and "Invoice 77" in credit.transaction.description
    [entry] = history_page(entries=account_history(account=account), before=None, limit=1)
    assert counterparty_of(entry) == {"name": "ACME SARL", "iban": credit.debtor_iban}
    send_pending_notices()
    alert = Notification.objects.get(user=customer, event="payment_received")
    assert "12.50" in alert.body
    assert ledger_verify().ok


@pytest.mark.django_db
def test_the_same_notification_delivered_twice_is_credited_once(customer):
    account = open_account(customer)
    body = notification_body(account.iban, "5.00")
    assert deliver(body).json() == {"status": "applied"}
    # A redelivery is signed afresh (another timestamp): still the same notification.
    assert deliver(body, at=time.time() + 1).json() == {"status": "duplicate"}
    account.refresh_from_db()
    assert account.balance == 500
    assert IncomingCredit.objects.count() == 1 and Transaction.objects.filter(kind="deposit").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_notification_credit_once():
    account = open_account(CustomerFactory())
    body = notification_body(account.iban, "7.00")
    answers: list[str] = []
    start = threading.Barrier(6)

    def deliver_in_thread() -> None:
        try:
            start.wait()
            answers.append(deliver(body).json()["status"])
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_in_thread) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == ["applied"] + ["duplicate"] * 5
    account.refresh_from_db()
    assert account.balance == 700
    assert IncomingCredit.objects.count() == 1
    assert ledger_verify().ok


@pytest.mark.django_db
@pytest.mark.parametrize(
    "how",
    ["missing", "wrong_secret", "stale", "future", "tampered", "malformed"],
)
def test_a_bad_signature_answers_401_and_posts_nothing(customer, how):
    account = open_account(customer)
    body = notification_body(account.iban)
    before = ledger_snapshot()
    if how == "missing":
        response = deliver(body, header="")
    elif how == "wrong_secret":
        response = deliver(body, secret="not-the-secret")
    elif how == "stale":
        response = deliver(body, at=time.time() - 301)
    elif how == "future":
        response = deliver(body, at=time.time() + 301)
    elif how == "tampered":
        header = sign(SECRET, body, int(time.time()))
        response = deliver(body.replace(b"12.50", b"99.50"), header=header)
    else:
        response = deliver(body, header="v1=abc")
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_signature"
    assert_unchanged(before, ledger_snapshot())
    assert IncomingCredit.objects.count() == 0


@pytest.mark.django_db
def test_no_configured_secret_refuses_every_webhook(settings, customer):
    settings.GATEWAY_WEBHOOK_SECRET = ""
    account = open_account(customer)
    response = deliver(notification_body(account.iban), secret=SECRET)
    assert response.status_code == 401 and IncomingCredit.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", notification_body("DE89370400440532013000", type="debit"), notification_body("X", "-1")],
)
def test_a_signed_but_unreadable_body_answers_400_and_posts_nothing(body):
    before = ledger_snapshot()
    response = deliver(body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert_unchanged(before, ledger_snapshot())


@pytest.mark.django_db
def test_a_credit_for_an_unknown_iban_goes_to_suspense():
    body = notification_body("DE02120300000000202051", "40.00")
    assert deliver(body).json() == {"status": "applied"}
    credit = IncomingCredit.objects.get()
    assert credit.status == "suspense" and credit.account is None
    suspense = internal_account(purpose="suspense", currency="EUR")
    suspense.refresh_from_db()
    assert suspense.balance == 4_000
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_credit_for_a_frozen_or_closed_account_goes_to_suspense(customer):
    from accounts.services.bank_accounts import bank_account_set_status

    account = open_account(customer)
    bank_account_set_status(account=account, status="frozen", actor="system:test")
    assert deliver(notification_body(account.iban, "1.00")).json() == {"status": "applied"}
    assert IncomingCredit.objects.get().status == "suspense"
    account.refresh_from_db()
    assert account.balance == 0


@pytest.mark.django_db(transaction=True)
def test_the_simulator_delivers_a_signed_credit_twice_to_gunicorn_and_it_is_credited_once(tmp_path):
    account = open_account(CustomerFactory())
    with GunicornServer(env=process_env(GATEWAY_WEBHOOK_SECRET=SECRET)) as server:
        webhook_url = f"{server.url}{URL}"
        with GatewaySimulatorProcess(data_dir=tmp_path / "gw", webhook_url=webhook_url, webhook_secret=SECRET) as sim:
            sim.control("faults", {"duplicate_webhooks": True})
            booked = sim.control(
                "credits",
                {
                    "iban": account.iban,
                    "amount": "33.30",
                    "currency": "EUR",
                    "debtor": {"name": "Other Bank Customer", "iban": "FR1420041010050500013M02606"},
                    "remittance_information": "Thanks",
                },
            )
            deadline = time.monotonic() + 30
            state = sim.state()
            while time.monotonic() < deadline and not (state["deliveries"] == 2 and state["pending_deliveries"] == 0):
                time.sleep(0.1)
                state = sim.state()
            assert (state["deliveries"], state["pending_deliveries"]) == (2, 0), state
    account.refresh_from_db()
    assert account.balance == 3_330
    credit = IncomingCredit.objects.get()
    assert (credit.notification_id, credit.status) == (booked["id"], "posted")
    assert ledger_verify().ok

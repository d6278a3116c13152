"""POST/GET /api/v1/transfers and /api/v1/limits: the contract's statuses and codes."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import BankAccount
from notifications.models import Notification
from transactions.models import CustomerLimit, Transaction
from transactions.services.verify import ledger_verify
from transactions.tests.conftest import client_for, send_pending_notices
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.snapshots import assert_refusal_moved_nothing, ledger_snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def accounts(customer):
    return open_account(customer, balance=500_000), open_account(CustomerFactory(), balance=0)


def send(client, source, destination, amount="10.00", currency="EUR", key=None, **extra):
    body = {"source_account": str(source), "destination": destination, "amount": amount, "currency": currency, **extra}
    return client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def error_code(response):
    return response.json()["error"]["code"]


def refused(client, source, destination, amount="10.00", currency="EUR", *, status=422, code, **extra):
    """Send a transfer that must be refused with `status` and `code`, and prove it changed nothing:
    balances, journal, entries, limit usage, alerts, audit, step-up tokens and idempotency keys."""
    key = uuid.uuid4().hex
    before = ledger_snapshot()
    response = send(client, source, destination, amount, currency, key=key, **extra)
    assert (response.status_code, error_code(response)) == (status, code), response.content
    assert_refusal_moved_nothing(before, response, key=key)
    return response


def test_transfer_posts_and_moves_both_balances(customer, customer_client, accounts):
    source, destination = accounts
    response = send(customer_client, source.pk, destination.iban, "12.50", description="Rent share")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "posted" and body["amount"] == "12.50" and body["destination"] == destination.iban
    assert body["source_account"] == str(source.pk) and body["description"] == "Rent share"
    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (500_000 - 1_250, 1_250)
    assert customer_client.get(f"/api/v1/transfers/{body['id']}").json() == body
    assert customer_client.get("/api/v1/transfers").json()["results"] == [body]
    send_pending_notices()
    assert Notification.objects.filter(user=customer, event="transfer_sent").exists()
    received = Notification.objects.get(user=destination.owner, event="transfer_received")
    assert destination.iban not in received.body and source.iban not in received.body
    assert ledger_verify().ok


def test_destination_iban_may_have_spaces(customer_client, accounts):
    source, destination = accounts
    spaced = " ".join(destination.iban[i : i + 4] for i in range(0, len(destination.iban), 4))
    assert send(customer_client, source.pk, spaced).status_code == 201


@pytest.mark.parametrize("amount", ["0", "0.00", "-5.00", "1.005", "abc", "1e3", "", "99999999999999999", 12.5, None])
def test_malformed_amounts_answer_400_and_move_nothing(customer_client, accounts, amount):
    source, destination = accounts
    # The key is released with a 400 (checked by `refused`): the client may fix the body and retry.
    response = refused(customer_client, source.pk, destination.iban, amount, status=400, code="invalid_request")
    assert "amount" in response.json()["error"]["details"]


def test_invalid_or_unknown_destination_answers_400(customer_client, accounts):
    source, _ = accounts
    response = refused(customer_client, source.pk, "DE00370400440532013000", status=400, code="invalid_request")
    assert "destination" in response.json()["error"]["details"]
    # A valid IBAN, not ours.
    response = refused(customer_client, source.pk, "DE89370400440532013000", status=400, code="invalid_request")
    assert "destination" in response.json()["error"]["details"]


@pytest.mark.parametrize("purpose", ["cash_vault", "fees_income", "suspense", "settlement_clearing", "adjustments"])
def test_a_transfer_to_one_of_the_banks_internal_accounts_is_refused_and_moves_nothing(
    customer_client, accounts, purpose
):
    """The bank's own books are not payees: paying into the cash vault or the fees account would
    hide money from the customer ledger. Answered like an IBAN we do not know."""
    from accounts.services.bank_accounts import internal_account

    source, _ = accounts
    internal = internal_account(purpose=purpose, currency="EUR")
    response = refused(customer_client, source.pk, internal.iban, status=400, code="invalid_request")
    assert "destination" in response.json()["error"]["details"]
    # Above the step-up threshold too: no second factor is asked for a payee that does not exist.
    refused(customer_client, source.pk, internal.iban, "1500.00", status=400, code="invalid_request")


def test_a_transfer_to_a_closed_account_is_refused_and_moves_nothing(customer_client, accounts):
    from accounts.services.bank_accounts import bank_account_set_status

    source, destination = accounts
    bank_account_set_status(account=destination, status="closed", actor="system:test")
    response = refused(customer_client, source.pk, destination.iban, status=400, code="invalid_request")
    assert "destination" in response.json()["error"]["details"]
    refused(customer_client, source.pk, destination.iban, "1500.00", status=400, code="invalid_request")


def test_source_account_of_another_customer_answers_404(customer_client, accounts):
    _, destination = accounts
    theirs = open_account(CustomerFactory(), balance=100_000)
    response = send(customer_client, theirs.pk, destination.iban)
    assert response.status_code == 404 and error_code(response) == "not_found"
    response = send(customer_client, uuid.uuid4(), destination.iban)
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.balance == 100_000


def test_another_customers_transfer_answers_404(customer_client, accounts):
    other = CustomerFactory()
    src, dst = open_account(other, balance=1_000), open_account(customer_client and CustomerFactory())
    transfer_id = send(client_for(other), src.pk, dst.iban, "1.00").json()["id"]
    assert customer_client.get(f"/api/v1/transfers/{transfer_id}").status_code == 404
    assert customer_client.get("/api/v1/transfers").json()["results"] == []


def test_insufficient_funds_answers_422_and_moves_nothing(customer, customer_client, accounts):
    source, destination = accounts
    # Above the step-up threshold: refused before any second factor is asked for.
    response = refused(customer_client, source.pk, destination.iban, "5000.01", code="insufficient_funds")
    assert response.json()["error"]["details"]["available"] == "5000.00"
    # Below it: refused by the posting itself.
    small = open_account(customer, balance=5_000)
    response = refused(customer_client, small.pk, destination.iban, "50.01", code="insufficient_funds")
    assert response.json()["error"]["details"]["available"] == "50.00"
    assert send(customer_client, small.pk, destination.iban, "50.00").status_code == 201


def test_frozen_source_answers_422_account_frozen_and_moves_nothing(customer_client, accounts):
    source, destination = accounts
    BankAccount.objects.filter(pk=source.pk).update(status="frozen")
    refused(customer_client, source.pk, destination.iban, code="account_frozen")
    refused(customer_client, source.pk, destination.iban, "1500.00", code="account_frozen")


def test_frozen_destination_answers_422_account_frozen_and_moves_nothing(customer_client, accounts):
    source, destination = accounts
    BankAccount.objects.filter(pk=destination.pk).update(status="frozen")
    refused(customer_client, source.pk, destination.iban, code="account_frozen")
    refused(customer_client, source.pk, destination.iban, "1500.00", code="account_frozen")


def test_currency_mismatch_answers_422_and_moves_nothing(customer, customer_client, accounts):
    source, destination = accounts
    refused(customer_client, source.pk, destination.iban, "10.00", "USD", code="currency_mismatch")
    usd = open_account(CustomerFactory(), currency="USD")
    refused(customer_client, source.pk, usd.iban, code="currency_mismatch")


def test_same_account_answers_422_and_moves_nothing(customer_client, accounts):
    source, _ = accounts
    refused(customer_client, source.pk, source.iban, code="same_account")


def test_per_transfer_limit_answers_422_limit_exceeded_and_moves_nothing(customer, customer_client, accounts):
    source, destination = accounts
    CustomerLimit.objects.create(user=customer, currency="EUR", per_transfer=5_000)
    response = refused(customer_client, source.pk, destination.iban, "50.01", code="limit_exceeded")
    assert response.json()["error"]["details"] == {"limit": "per_transfer", "per_transfer": "50.00"}
    assert send(customer_client, source.pk, destination.iban, "50.00").status_code == 201


def test_rolling_daily_limit_counts_the_last_24_hours(customer, customer_client, accounts):
    source, destination = accounts
    CustomerLimit.objects.create(user=customer, currency="EUR", daily=10_000)
    assert send(customer_client, source.pk, destination.iban, "60.00").status_code == 201
    # The refusal leaves the usage at 60.00 (the snapshot covers transactions_limitusage).
    response = refused(customer_client, source.pk, destination.iban, "40.01", code="limit_exceeded")
    assert response.json()["error"]["details"]["remaining_today"] == "40.00"
    assert send(customer_client, source.pk, destination.iban, "40.00").status_code == 201
    limits = customer_client.get("/api/v1/limits?currency=EUR").json()
    assert limits == {
        "currency": "EUR",
        "step_up_threshold": "1000.00",
        "per_transfer": "10000.00",
        "daily": "100.00",
        "used_today": "100.00",
        "remaining_today": "0.00",
    }


def test_limits_default_to_the_bank_settings(customer_client, accounts):
    assert customer_client.get("/api/v1/limits").json() == {
        "currency": "EUR",
        "step_up_threshold": "1000.00",
        "per_transfer": "10000.00",
        "daily": "20000.00",
        "used_today": "0.00",
        "remaining_today": "20000.00",
    }


def test_transfer_above_the_step_up_threshold_without_token_answers_403(customer_client, accounts):
    source, destination = accounts
    response = refused(customer_client, source.pk, destination.iban, "1000.01", status=403, code="step_up_required")
    details = response.json()["error"]["details"]
    assert (details["purpose"], details["amount"], details["currency"], details["payee"]) == (
        "transfer",
        "1000.01",
        "EUR",
        destination.iban,
    )
    assert send(customer_client, source.pk, destination.iban, "1000.00").status_code == 201


def test_step_up_token_bound_to_amount_and_payee_lets_the_transfer_post_once(customer, customer_client, accounts):
    from accounts.tests.factories import step_up_token_for

    source, destination = accounts
    token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    # Refused without spending the token (the snapshot covers step-up tokens).
    step_up = {"status": 403, "code": "step_up_required", "step_up_token": token}
    refused(customer_client, source.pk, destination.iban, "1500.01", **step_up)
    other_payee = open_account(CustomerFactory())
    refused(customer_client, source.pk, other_payee.iban, "1500.00", **step_up)
    ok = send(customer_client, source.pk, destination.iban, "1500.00", step_up_token=token)
    assert ok.status_code == 201, ok.content
    reused = send(customer_client, source.pk, destination.iban, "1500.00", step_up_token=token)
    assert reused.status_code == 403
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_step_up_token_is_not_asked_for_or_used_up_by_a_transfer_refused_before_it(customer, customer_client, accounts):
    """Rules that would refuse the transfer anyway are checked before the second factor.
    (A refusal *after* the token was consumed: test_step_up.py's post-consume failures.)"""
    from accounts.tests.factories import step_up_token_for

    source, destination = accounts
    BankAccount.objects.filter(pk=destination.pk).update(status="frozen")
    token = step_up_token_for(customer, amount="2000.00", currency="EUR", payee=destination.iban)
    refused(customer_client, source.pk, destination.iban, "2000.00", code="account_frozen", step_up_token=token)
    refused(customer_client, source.pk, destination.iban, "2000.00", code="account_frozen")  # no 403 either
    BankAccount.objects.filter(pk=destination.pk).update(status="active")
    assert send(customer_client, source.pk, destination.iban, "2000.00", step_up_token=token).status_code == 201


def test_missing_idempotency_key_answers_400(customer_client, accounts):
    source, destination = accounts
    body = {"source_account": str(source.pk), "destination": destination.iban, "amount": "1.00", "currency": "EUR"}
    response = customer_client.post("/api/v1/transfers", body, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert Transaction.objects.filter(kind="transfer").count() == 0


def test_same_key_same_body_replays_the_first_response(customer_client, accounts):
    source, destination = accounts
    first = send(customer_client, source.pk, destination.iban, "3.00", key="k-1")
    again = send(customer_client, source.pk, destination.iban, "3.00", key="k-1")
    assert again.status_code == 201 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_same_key_other_body_answers_422_key_reused(customer_client, accounts):
    source, destination = accounts
    send(customer_client, source.pk, destination.iban, "3.00", key="k-2")
    response = send(customer_client, source.pk, destination.iban, "4.00", key="k-2")
    assert response.status_code == 422 and error_code(response) == "idempotency_key_reused"
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_keys_are_scoped_per_user(customer_client, accounts):
    source, destination = accounts
    other = CustomerFactory()
    theirs = open_account(other, balance=1_000)
    assert send(customer_client, source.pk, destination.iban, "3.00", key="shared").status_code == 201
    assert send(client_for(other), theirs.pk, destination.iban, "3.00", key="shared").status_code == 201
    assert Transaction.objects.filter(kind="transfer").count() == 2


def test_business_rule_refusals_are_replayed_too(customer_client, accounts):
    source, destination = accounts
    first = send(customer_client, source.pk, destination.iban, "9999.00", key="k-3")
    assert first.status_code == 422
    from transactions.services.cash import cash_deposit

    cash_deposit(iban=source.iban, amount=10_000_000)
    again = send(customer_client, source.pk, destination.iban, "9999.00", key="k-3")
    assert again.status_code == 422 and again.json() == first.json()


def test_a_retry_with_a_fresh_step_up_token_under_the_same_key_replays_and_pays_once(
    customer, customer_client, accounts
):
    """The token is single use, so an app's retry after a lost answer carries a new one. It is
    a credential, not part of the request: the retry must replay, not answer 422 and push the
    app to a new key (and a second payment)."""
    from accounts.tests.factories import step_up_token_for

    source, destination = accounts
    first_token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    first = send(customer_client, source.pk, destination.iban, "1500.00", key="big-one", step_up_token=first_token)
    assert first.status_code == 201, first.content
    retry_token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    retry = send(customer_client, source.pk, destination.iban, "1500.00", key="big-one", step_up_token=retry_token)
    assert retry.status_code == 201 and retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert Transaction.objects.filter(kind="transfer").count() == 1
    # A business field that differs is still another request.
    other = send(customer_client, source.pk, destination.iban, "1500.01", key="big-one", step_up_token=retry_token)
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"


def test_a_transfer_request_costs_these_statements_and_no_savepoint(customer_client, accounts):
    """The request's round trips (issue 18): the key's claim with the locks and limits, the
    posting with the key's answer - the user and session come from the live-session cache after
    the first request. The idempotency layer adds no savepoint (the one SAVEPOINT seen here is
    the request's own transaction, nested in the test's)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    source, destination = accounts
    send(customer_client, source.pk, destination.iban, "1.00")  # warm: nothing lazy left to load
    with CaptureQueriesContext(connection) as queries:
        response = send(customer_client, source.pk, destination.iban, "1.00", key="counted")
    assert response.status_code == 201, response.content
    statements = [query["sql"].split("(")[0].split(" ")[0:4] for query in queries.captured_queries]
    kinds = [" ".join(words[:2]) if words[0] != "SELECT" else " ".join(words[:4]) for words in statements]
    savepoints = [kind for kind in kinds if "SAVEPOINT" in kind]
    assert len(savepoints) == 2, kinds  # SAVEPOINT + RELEASE SAVEPOINT of the request's own transaction
    assert [kind for kind in kinds if "SAVEPOINT" not in kind] == [
        "SELECT * FROM ledger_lock_transfer",
        "SELECT a.*, answered FROM",
    ], kinds
    # ... and they did claim and complete the key: a retry replays.
    replay = send(customer_client, source.pk, destination.iban, "1.00", key="counted")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == response.json()


def test_the_transfer_output_is_drf_s_own_rendering_of_its_declared_fields(customer_client, accounts):
    """TransferOutput builds its dict by hand (cheaper); the declared fields drive the schema.
    The two must agree, for a local transfer and for both directions of a legacy one."""
    from rest_framework import serializers

    from transactions.api.serializers import TransferOutput
    from transactions.models import LegacyRequest

    source, destination = accounts
    send(customer_client, source.pk, destination.iban, "3.21", description="Lunch")
    transfer = Transaction.objects.select_related("destination_account").get(kind="transfer")
    cases = [transfer]
    for direction in LegacyRequest.Direction.values:
        legacy = Transaction.objects.select_related("destination_account").get(pk=transfer.pk)
        request = LegacyRequest(direction=direction, link_id=4242, legacy_iban="DE89370400440532013000")
        Transaction.legacy_request.related.set_cached_value(legacy, request)
        cases.append(legacy)
    for case in cases:
        output = TransferOutput(case)
        generic = serializers.Serializer.to_representation(output, case)
        assert output.data == generic and list(output.data) == list(TransferOutput().fields)
    assert all(TransferOutput(case).data != TransferOutput(transfer).data for case in cases[1:])  # they differ

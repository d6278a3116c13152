"""A step-up token is spent only by a transfer that posts: a failure after `step_up_consume`
- in the posting itself, retried or not, through the API or not - leaves it usable."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from accounts.models import StepUpToken
from accounts.tests.factories import step_up_token_for
from transactions.models import Transaction
from transactions.services.transfers import transfer_create
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account
from transactions.tests.faults import journal_inserts_fail
from transactions.tests.snapshots import assert_refusal_moved_nothing, assert_unchanged, ledger_snapshot

pytestmark = [pytest.mark.postgres]


def _setup():
    customer = CustomerFactory()
    source, destination = open_account(customer, balance=500_000), open_account(CustomerFactory())
    token = step_up_token_for(customer, amount="1500.00", currency="EUR", payee=destination.iban)
    return customer, source, destination, token


def _transfer(customer, source, destination, token):
    return transfer_create(
        user=customer,
        source_account_id=source.pk,
        destination_iban=destination.iban,
        amount=150_000,
        currency="EUR",
        step_up_token=token,
    )


@pytest.mark.django_db(transaction=True)
def test_a_posting_that_fails_after_the_token_was_consumed_leaves_the_token_usable():
    """transfer_create called on its own (no enclosing transaction, as a task would): the token's
    consumption must roll back with the failed posting, not commit on its own."""
    customer, source, destination, token = _setup()
    before = ledger_snapshot()
    with journal_inserts_fail(sqlstate="P0001", times=1) as fault:
        with pytest.raises(DatabaseError, match="injected fault"):
            _transfer(customer, source, destination, token)
        assert fault.attempts() == 1  # the posting was reached: every check and the consume had passed
    assert_unchanged(before, ledger_snapshot())  # the token included: still unused

    journal = _transfer(customer, source, destination, token)
    assert journal.amount == 150_000
    assert StepUpToken.objects.get(user=customer).used_at is not None
    assert Transaction.objects.filter(kind="transfer").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_serialization_failure_after_the_token_was_consumed_is_retried_with_the_same_token():
    customer, source, destination, token = _setup()
    with journal_inserts_fail(sqlstate="40001", times=1) as fault:
        journal = _transfer(customer, source, destination, token)
        assert fault.attempts() == 2  # the first attempt failed at the posting, the retry posted
    assert Transaction.objects.filter(kind="transfer").get() == journal
    assert StepUpToken.objects.get(user=customer).used_at is not None
    source.refresh_from_db()
    assert source.balance == 500_000 - 150_000


@pytest.mark.django_db
def test_a_request_refused_after_its_token_was_consumed_answers_503_and_its_retry_posts_with_that_token():
    """Every attempt fails at the posting (a serialization failure each time): after the bounded
    retries the API answers 503 `unavailable` with nothing committed - not the token's use, not
    the idempotency key - so the app's retry under the same key and token posts once."""
    customer, source, destination, token = _setup()
    client = client_for(customer)
    body = {
        "source_account": str(source.pk),
        "destination": destination.iban,
        "amount": "1500.00",
        "currency": "EUR",
        "step_up_token": token,
    }
    before = ledger_snapshot()
    with journal_inserts_fail(sqlstate="40001") as fault:
        response = client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
        assert fault.attempts() == 5  # bounded: bankcore.idempotency._MAX_ATTEMPTS, each reaching the posting
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "unavailable"
    assert_refusal_moved_nothing(before, response, key="busy")

    retry = client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert retry.status_code == 201, retry.content
    assert StepUpToken.objects.get(user=customer).used_at is not None
    assert Transaction.objects.filter(kind="transfer").count() == 1

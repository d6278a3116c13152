"""Idempotency-Key lifecycle: in-flight 409, keys freed by 400/403/404, crashed-request takeover,
24 h expiry, malformed keys, and the bounded retry that ends in 503."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bankcore.models import IdempotencyKey
from bankcore.tasks import expire_idempotency_keys
from transactions.models import CustomerLimit, Transaction
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _send(client, source, destination, key, amount="5.00"):
    body = {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}
    return client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.fixture
def pair(customer):
    return open_account(customer, balance=10_000), open_account(CustomerFactory())


def _body(source, destination, amount="5.00"):
    return {"source_account": str(source.pk), "destination": destination.iban, "amount": amount, "currency": "EUR"}


def _leftover_claim(customer, key, body, lease_left):
    """What a first request leaves behind while it runs (lease ahead) or after it crashed (lease past)."""
    from types import SimpleNamespace

    from bankcore.idempotency import request_fingerprint

    now = timezone.now()
    fingerprint = request_fingerprint(SimpleNamespace(method="POST", path="/api/v1/transfers", data=body))
    IdempotencyKey.objects.create(
        user=customer,
        key=key,
        request_hash=fingerprint,
        claim_token="first-request",
        lease_until=now + lease_left,
        created_at=now,
        expires_at=now + timedelta(hours=24),
    )


def test_an_in_progress_claim_committed_by_an_earlier_version_answers_409_while_its_lease_runs(
    customer, customer_client, pair
):
    source, destination = pair
    _leftover_claim(customer, "inflight", _body(source, destination), timedelta(seconds=30))
    response = _send(customer_client, source, destination, "inflight")
    assert response.status_code == 409 and response.json()["error"]["code"] == "idempotency_in_progress"
    assert Transaction.objects.filter(kind="transfer").count() == 0
    assert IdempotencyKey.objects.get(key="inflight").claim_token == "first-request"  # untouched


def test_a_claim_left_by_a_crashed_request_is_taken_over_after_its_lease(customer, customer_client, pair):
    source, destination = pair
    # The first attempt claimed the key and died before its transaction committed: no transfer exists.
    _leftover_claim(customer, "crashed", _body(source, destination), -timedelta(seconds=1))
    response = _send(customer_client, source, destination, "crashed")
    assert response.status_code == 201, response.content
    assert Transaction.objects.filter(kind="transfer").count() == 1
    assert _send(customer_client, source, destination, "crashed").json() == response.json()
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_a_request_that_lost_its_claim_rolls_its_transfer_back(customer, pair):
    from rest_framework.response import Response

    from bankcore.idempotency import IdempotencyInProgress, run_idempotent
    from transactions.services.transfers import transfer_create

    source, destination = pair

    def handler():
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
        # Meanwhile our lease ran out and a retry took the key over.
        IdempotencyKey.objects.filter(key="lost").update(claim_token="the-retry")
        return Response({"ok": True}, status=201)

    with pytest.raises(IdempotencyInProgress):
        run_idempotent(user=customer, key="lost", fingerprint="f", handler=handler)
    assert Transaction.objects.filter(kind="transfer").count() == 0


def test_expired_keys_are_forgotten_by_the_beat_task(customer, customer_client, pair):
    source, destination = pair
    _send(customer_client, source, destination, "old")
    _send(customer_client, source, destination, "fresh")
    IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expire_idempotency_keys.apply().get() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    # The forgotten key is free again: a new request with it posts a new transfer.
    assert _send(customer_client, source, destination, "old").status_code == 201
    assert Transaction.objects.filter(kind="transfer").count() == 3


# --- A duplicate while the first request is inside its handler (real threads, real PostgreSQL) ---


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_while_the_first_request_is_held_in_its_handler_answers_409_at_once(monkeypatch):
    """The first request holds the key (its transaction's advisory lock, taken by the statement that
    also locks the customer and both accounts) while it is still posting: a duplicate must answer 409
    at once - not wait for the first request's row locks, not run a second time."""
    import threading

    from django.db import connection

    from transactions.services import transfers
    from transactions.tests.conftest import client_for

    customer = CustomerFactory()
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    client = client_for(customer)
    inside, release = threading.Event(), threading.Event()
    real_posting_write = transfers.posting_write

    def held_posting_write(*args, **kwargs):
        if not inside.is_set():  # only the first request is held, after its claim and locks
            inside.set()
            assert release.wait(30), "the test never released the first request"
        return real_posting_write(*args, **kwargs)

    monkeypatch.setattr(transfers, "posting_write", held_posting_write)
    responses = {}

    def request(name):
        try:
            responses[name] = _send(client, source, destination, "held")
        finally:
            connection.close()

    first = threading.Thread(target=request, args=("first",))
    first.start()
    try:
        assert inside.wait(30), "the first request never reached its handler"
        duplicate = threading.Thread(target=request, args=("duplicate",))
        duplicate.start()
        duplicate.join(10)
        assert not duplicate.is_alive(), "the duplicate waited for the first request instead of answering 409"
        assert first.is_alive()  # still held: the 409 came while it was in flight
    finally:
        release.set()
        first.join(30)
    assert responses["duplicate"].status_code == 409
    assert responses["duplicate"].json()["error"]["code"] == "idempotency_in_progress"
    assert responses["first"].status_code == 201, responses["first"].content
    assert Transaction.objects.filter(kind="transfer").count() == 1
    replay = _send(client, source, destination, "held")
    assert replay.status_code == 201 and replay.json() == responses["first"].json()
    assert Transaction.objects.filter(kind="transfer").count() == 1


# --- Answers the client fixes and retries with the same key: the key stays free ---


def test_the_same_key_posts_after_a_403_step_up_required(customer, customer_client, pair):
    from accounts.tests.factories import step_up_token_for

    source, destination = pair
    CustomerLimit.objects.create(user=customer, currency="EUR", step_up_threshold=1_000)
    first = _send(customer_client, source, destination, "big", amount="20.00")
    assert first.status_code == 403 and first.json()["error"]["code"] == "step_up_required"
    assert not IdempotencyKey.objects.filter(key="big").exists()
    token = step_up_token_for(customer, amount="20.00", currency="EUR", payee=destination.iban)
    body = {**_body(source, destination, "20.00"), "step_up_token": token}
    retry = customer_client.post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY="big")
    assert retry.status_code == 201, retry.content
    assert "Idempotent-Replayed" not in retry
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_the_same_key_posts_after_a_404_for_a_source_account_that_is_not_the_callers(customer_client, pair):
    source, destination = pair
    theirs = open_account(CustomerFactory(), balance=10_000)
    first = _send(customer_client, theirs, destination, "fixed")
    assert first.status_code == 404 and first.json()["error"]["code"] == "not_found"
    assert not IdempotencyKey.objects.filter(key="fixed").exists()
    retry = _send(customer_client, source, destination, "fixed")  # the app fixed the body, kept the key
    assert retry.status_code == 201, retry.content
    assert Transaction.objects.filter(kind="transfer").count() == 1


def test_an_expired_but_not_yet_swept_key_is_reclaimed_by_a_new_request(customer, customer_client, pair):
    source, destination = pair

    def expire():
        IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _send(customer_client, source, destination, "old", amount="1.00").status_code == 201
    expire()
    # The same body again: a new transfer, not a replay of the expired answer.
    again = _send(customer_client, source, destination, "old", amount="1.00")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    expire()
    # Another body under the expired key: a new request, not 422 key reused.
    other = _send(customer_client, source, destination, "old", amount="2.00")
    assert other.status_code == 201, other.content
    assert [t.amount for t in Transaction.objects.filter(kind="transfer").order_by("created_at")] == [100, 100, 200]
    row = IdempotencyKey.objects.get(key="old")
    assert row.expires_at > timezone.now() + timedelta(hours=23)
    assert row.response_body == other.json()


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\there", "new\nline", "del\x7f", "schl\u00fcssel", "\u043a\u043b\u044e\u0447"],
    ids=["empty", "256-chars", "tab", "newline", "DEL", "latin-1", "cyrillic"],
)
def test_a_malformed_key_answers_400_and_moves_nothing(customer, customer_client, pair, key):
    from transactions.tests.snapshots import assert_refusal_moved_nothing, ledger_snapshot

    source, destination = pair
    before = ledger_snapshot()
    response = _send(customer_client, source, destination, key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["error"]["details"]
    assert_refusal_moved_nothing(before, response, key=key)


@pytest.mark.parametrize("key", ["x" * 255, " ", "~", "a b:c/d=e+f"], ids=["255-chars", "space", "tilde", "mixed"])
def test_any_1_to_255_printable_ascii_characters_are_a_key(customer_client, pair, key):
    source, destination = pair
    assert _send(customer_client, source, destination, key).status_code == 201
    assert IdempotencyKey.objects.get().key == key


# --- Transient database failures: retried as a whole, then 503 with nothing kept ---


def test_a_deadlock_while_posting_is_retried_and_the_request_posts_once(customer_client, pair):
    from transactions.tests.faults import journal_inserts_fail

    source, destination = pair
    with journal_inserts_fail(sqlstate="40P01", times=2) as fault:
        response = _send(customer_client, source, destination, "retried")
        assert fault.attempts() == 3
    assert response.status_code == 201, response.content
    assert Transaction.objects.filter(kind="transfer").count() == 1
    assert IdempotencyKey.objects.get(key="retried").state == "completed"


def test_serialization_failures_on_every_attempt_end_in_503_unavailable_with_nothing_committed(customer_client, pair):
    from bankcore.idempotency import _MAX_ATTEMPTS
    from transactions.tests.faults import journal_inserts_fail
    from transactions.tests.snapshots import assert_refusal_moved_nothing, ledger_snapshot

    source, destination = pair
    before = ledger_snapshot()
    with journal_inserts_fail(sqlstate="40001") as fault:
        response = _send(customer_client, source, destination, "busy")
        assert fault.attempts() == _MAX_ATTEMPTS == 5  # bounded, and each attempt really ran
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    assert_refusal_moved_nothing(before, response, key="busy")  # no key kept: the retry may run
    assert _send(customer_client, source, destination, "busy").status_code == 201


def test_work_marked_for_rollback_inside_the_handler_stores_no_answer_and_leaves_the_key_free(customer, pair):
    """A handler whose work was marked unusable (a swallowed database error does this) must not
    get its answer stored as if the work had happened: the whole request is undone."""
    from django.db import transaction
    from rest_framework.response import Response

    from bankcore.idempotency import run_idempotent
    from transactions.services.transfers import transfer_create

    source, destination = pair

    def handler():
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=500, currency="EUR"
        )
        transaction.set_rollback(True)
        return Response({"ok": True}, status=201)

    with pytest.raises(transaction.TransactionManagementError):
        run_idempotent(user=customer, key="marked", fingerprint="f", handler=handler)
    assert not IdempotencyKey.objects.filter(key="marked").exists()
    assert not Transaction.objects.filter(kind="transfer").exists()
    source.refresh_from_db()
    assert source.balance == 10_000
    # The key is free: the retry runs afresh and posts once.
    retry = run_idempotent(
        user=customer,
        key="marked",
        fingerprint="f",
        handler=lambda: Response(
            {
                "id": str(
                    transfer_create(
                        user=customer,
                        source_account_id=source.pk,
                        destination_iban=destination.iban,
                        amount=500,
                        currency="EUR",
                    ).pk
                )
            },
            status=201,
        ),
    )
    assert retry.status_code == 201 and Transaction.objects.filter(kind="transfer").count() == 1


def test_a_stored_refusal_undoes_the_work_done_before_it_and_is_replayed(customer, pair):
    """A 422 raised after the handler wrote something: the work is rolled back (no savepoint: the
    whole transaction), the answer is stored in a transaction of its own and replayed."""
    from bankcore.idempotency import run_idempotent
    from transactions.exceptions import InsufficientFunds
    from transactions.services.transfers import transfer_create

    source, destination = pair
    calls = []

    def handler():
        calls.append(1)
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=300, currency="EUR"
        )
        raise InsufficientFunds(details={"available": "0.00"})

    with pytest.raises(InsufficientFunds):
        run_idempotent(user=customer, key="refused", fingerprint="f", handler=handler)
    assert not Transaction.objects.filter(kind="transfer").exists()
    source.refresh_from_db()
    assert source.balance == 10_000
    stored = IdempotencyKey.objects.get(key="refused")
    assert (stored.state, stored.response_status) == (IdempotencyKey.State.COMPLETED, 422)
    replay = run_idempotent(user=customer, key="refused", fingerprint="f", handler=handler)
    assert replay.status_code == 422 and replay.data["error"]["code"] == "insufficient_funds"
    assert replay["Idempotent-Replayed"] == "true" and len(calls) == 1


# --- A claim carried by the work's first statement (bankcore.idempotency, step 4) ---


def test_a_view_whose_claim_waits_for_a_statement_cannot_answer_without_making_it(customer):
    """A view declared claim="with_first_statement" must make its claim (a carrying statement or
    claim_now) before it answers; one that forgets is refused loudly, with nothing stored."""
    from django.db import transaction
    from rest_framework.response import Response

    from bankcore.idempotency import run_idempotent

    with pytest.raises(transaction.TransactionManagementError):
        run_idempotent(
            user=customer,
            key="never-claimed",
            fingerprint="f",
            handler=lambda: Response({"ok": True}, status=201),
            claim="with_first_statement",
        )
    assert not IdempotencyKey.objects.filter(key="never-claimed").exists()


def test_claim_now_holds_the_key_before_the_work_and_a_retry_replays_without_running_it(customer):
    """claim_now() (the transfer view calls it before the legacy core) claims at once; a retry's
    claim_now() finds the stored answer, undoes its attempt and replays - the work ran once."""
    from rest_framework.response import Response

    from bankcore.idempotency import IdempotencyKeyReused, claim_now, run_idempotent

    runs = []

    def handler():
        claim_now()
        assert IdempotencyKey.objects.filter(key="now").count() == 1  # claimed before the work
        runs.append(1)
        return Response({"run": len(runs)}, status=201)

    first = run_idempotent(user=customer, key="now", fingerprint="f", handler=handler, claim="with_first_statement")
    again = run_idempotent(user=customer, key="now", fingerprint="f", handler=handler, claim="with_first_statement")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.data == first.data == {"run": 1}
    assert runs == [1]
    with pytest.raises(IdempotencyKeyReused):
        run_idempotent(user=customer, key="now", fingerprint="other", handler=handler, claim="with_first_statement")
    assert runs == [1]


def test_a_transfer_refused_after_its_carried_claim_stores_the_refusal_and_replays_it(customer, customer_client):
    """The claim rode on the locks, then the transfer was refused (422): the refusal is stored in a
    transaction of its own and replayed; nothing moved."""
    source, destination = open_account(customer, balance=100), open_account(CustomerFactory())
    first = _send(customer_client, source, destination, "poor", amount="5.00")
    assert first.status_code == 422 and first.json()["error"]["code"] == "insufficient_funds"
    again = _send(customer_client, source, destination, "poor", amount="5.00")
    assert again.status_code == 422 and again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert not Transaction.objects.filter(kind="transfer").exists()
    source.refresh_from_db()
    assert source.balance == 100

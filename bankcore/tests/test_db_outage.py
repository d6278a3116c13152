"""A database that cannot serve answers 503 `unavailable` (Retry-After, request id, the one error
shape) on every API path, is logged once as a WARNING, and costs the next request nothing; an
unexpected database error stays 500. All against the real PostgreSQL: a backend terminated
mid-request, a closed port, a lock held past lock_timeout, a commit whose answer is lost."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from django.db import close_old_connections, connection, transaction
from django.urls import path

from accounts.models import BankAccount
from bankcore.api.errors import DB_UNAVAILABLE, database_unavailable_cause
from bankcore.app_config import app_config_cache_clear
from bankcore.tests.outage import (
    CommitDroppingProxy,
    app_database,
    blocked_backend,
    closed_port,
    terminate_backend,
    with_options,
)
from bankcore.tests.test_conventions import _urlconf_with
from transactions.models import Transaction
from transactions.tests.conftest import client_for
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def assert_unavailable(response: Any) -> dict[str, Any]:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unavailable", body
    assert int(response["Retry-After"]) > 0
    assert response["X-Request-ID"] and body["error"]["details"]["request_id"] == response["X-Request-ID"]
    return body


def _in_thread(fn: Callable[[], Any]) -> threading.Thread:
    """Run `fn` as a request would: in a thread of its own, with its own connection."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised by _join()
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.result = result  # type: ignore[attr-defined]
    thread.start()
    return thread


def _join(thread: threading.Thread) -> Any:
    thread.join(30)
    assert not thread.is_alive()
    result = thread.result  # type: ignore[attr-defined]
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def bank() -> dict[str, Any]:
    customer = CustomerFactory()
    source = open_account(customer, balance=100_000)
    destination = open_account(CustomerFactory())
    return {"customer": customer, "client": client_for(customer), "source": source, "destination": destination}


def _transfer(bank: dict[str, Any], key: str | None = None, amount: str = "10.00") -> Any:
    body = {
        "source_account": str(bank["source"].pk),
        "destination": bank["destination"].iban,
        "amount": amount,
        "currency": "EUR",
    }
    return bank["client"].post("/api/v1/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


def _unavailable_count(cause: str) -> float:
    return DB_UNAVAILABLE.labels(cause=cause)._value.get()


@pytest.fixture
def warnings_and_errors(caplog: Any) -> Any:
    caplog.set_level(logging.WARNING)
    return caplog


def _outage_lines(caplog: Any) -> list[logging.LogRecord]:
    names = ("bankcore.api.errors", "django.request")
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name in names]


def test_a_connection_terminated_mid_request_answers_503_and_the_next_request_reconnects(bank, warnings_and_errors):
    # psycopg2 reads the server's FATAL 57P01 or, if the socket closed first, reports the loss itself.
    before = _unavailable_count("57P01") + _unavailable_count("connection")
    holder = psycopg2.connect(**{**connection.get_connection_params(), "cursor_factory": None})
    try:
        with holder.cursor() as cursor:  # an operator's lock on the customer's account row
            cursor.execute("SELECT pg_backend_pid()")
            holder_pid = cursor.fetchone()[0]
            cursor.execute(f"SELECT 1 FROM {BankAccount._meta.db_table} WHERE id = %s FOR UPDATE", [bank["source"].pk])
        waiting = _in_thread(lambda: _transfer(bank))
        terminate_backend(blocked_backend(holder_pid))  # the app's connection, while it waits mid-request
        response = _join(waiting)
    finally:
        holder.rollback()
        holder.close()

    assert_unavailable(response)
    assert Transaction.objects.filter(kind="transfer").count() == 0
    assert _unavailable_count("57P01") + _unavailable_count("connection") == before + 1
    lines = _outage_lines(warnings_and_errors)
    assert [(r.levelname, r.name) for r in lines] == [("WARNING", "bankcore.api.errors")], lines
    assert "POST /api/v1/transfers answered 503" in lines[0].getMessage()

    def two_requests() -> tuple[int, int]:
        # The same thread's connection, as a worker serves request after request.
        first = _transfer(bank).status_code
        close_old_connections()  # what Django does when a request ends
        return first, _transfer(bank).status_code

    assert _join(_in_thread(two_requests)) == (201, 201)


def test_a_database_refusing_connections_answers_503_from_authentication_and_from_middleware(bank):
    app_config_cache_clear()  # the app-version middleware reads its policy from the database
    bank["client"].raise_request_exception = False  # Django's handler answers, as in production
    with app_database(HOST="127.0.0.1", PORT=closed_port()):
        in_authentication = bank["client"].get("/api/v1/accounts")  # the JWT session check's query
        in_middleware = bank["client"].get("/api/v1/accounts", HTTP_X_APP_PLATFORM="ios", HTTP_X_APP_VERSION="1.0")
    assert_unavailable(in_authentication)
    assert_unavailable(in_middleware)
    assert bank["client"].get("/api/v1/accounts").status_code == 200


def test_a_lock_held_past_lock_timeout_answers_503_and_moves_nothing(bank):
    holder = psycopg2.connect(**{**connection.get_connection_params(), "cursor_factory": None})
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {BankAccount._meta.db_table} WHERE id = %s FOR UPDATE", [bank["source"].pk])
        with app_database(OPTIONS=with_options(lock_timeout=300)):
            response = _join(_in_thread(lambda: _transfer(bank)))
    finally:
        holder.rollback()
        holder.close()
    assert_unavailable(response)
    bank["source"].refresh_from_db()
    assert bank["source"].balance == 100_000 and Transaction.objects.filter(kind="transfer").count() == 0


def test_a_read_only_server_and_a_statement_past_statement_timeout_answer_503(bank):
    # A write on a standby, or on a primary being demoted during a fail-over: 25006.
    with app_database(OPTIONS=with_options(default_transaction_read_only="on")):
        refused_write = _transfer(bank)
        read = bank["client"].get("/api/v1/accounts")  # reads keep working
    assert_unavailable(refused_write)
    assert read.status_code == 200
    assert Transaction.objects.filter(kind="transfer").count() == 0

    def slow(request: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")

    from django.test import override_settings

    bank["client"].raise_request_exception = False
    with (
        override_settings(ROOT_URLCONF=_urlconf_with(path("api/v1/slow", slow))),
        app_database(OPTIONS=with_options(statement_timeout=200)),
    ):
        assert_unavailable(bank["client"].get("/api/v1/slow"))


@pytest.mark.django_db
def test_exhausted_retries_of_a_busy_database_answer_503_with_retry_after(bank):
    from transactions.tests.faults import journal_inserts_fail

    with journal_inserts_fail(sqlstate="40001"):
        response = _transfer(bank)
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_an_unexpected_database_error_stays_500(client):
    def broken(request: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM no_such_table")

    from django.test import override_settings

    client.raise_request_exception = False
    with override_settings(ROOT_URLCONF=_urlconf_with(path("api/v1/broken", broken))):
        response = client.get("/api/v1/broken")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"


@pytest.mark.django_db
def test_which_database_errors_mean_unavailable():
    def raised(sql: str) -> BaseException:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
        except Exception as exc:
            return exc
        raise AssertionError(sql)

    def sqlstate(code: str) -> str | None:
        return database_unavailable_cause(raised(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; END $$"))

    for code in ("57P01", "57P02", "57P03", "25006", "08006", "53300", "55P03", "57014"):
        assert sqlstate(code) == code
    for code in ("54000", "P0001", "42P01", "23505", "XX000"):  # bugs or broken data: 500
        assert sqlstate(code) is None, code
    assert database_unavailable_cause(raised("SELECT 1/0")) is None
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(host="127.0.0.1", port=closed_port(), dbname="x", connect_timeout=2)
    assert database_unavailable_cause(refused.value) == "connection"
    closed = psycopg2.connect(**{**connection.get_connection_params(), "cursor_factory": None})
    closed.close()
    with pytest.raises(psycopg2.InterfaceError) as already_closed:
        closed.cursor()
    assert database_unavailable_cause(already_closed.value) == "connection"
    assert database_unavailable_cause(RuntimeError("x")) is None


def test_a_commit_whose_answer_is_lost_is_resolved_by_the_retry_with_the_same_key(bank):
    """The connection drops after COMMIT reached the server: the client cannot know whether the
    transfer happened. It retries with the same Idempotency-Key and learns the truth."""
    settings_dict = connection.settings_dict
    proxy = CommitDroppingProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    options = {**settings_dict.get("OPTIONS", {}), "sslmode": "disable"}  # the proxy reads the protocol
    key = uuid.uuid4().hex
    try:
        with app_database(HOST="127.0.0.1", PORT=proxy.port, OPTIONS=options):
            bank["client"].get("/api/v1/accounts")  # connected and authenticated: the next COMMIT is the transfer's
            proxy.armed.set()
            first = _transfer(bank, key=key)
            assert proxy.dropped.is_set()
            close_old_connections()  # the request ends
            retry = _transfer(bank, key=key)
    finally:
        proxy.close()

    assert_unavailable(first)
    assert retry.status_code == 201, retry.content
    assert retry["Idempotent-Replayed"] == "true"
    transfers = Transaction.objects.filter(kind="transfer")
    assert transfers.count() == 1  # it had happened, once; the replay names it
    bank["source"].refresh_from_db()
    assert bank["source"].balance == 100_000 - 1_000
    assert retry.json()["id"] == str(transfers.get().pk) and retry.json()["amount"] == "10.00"

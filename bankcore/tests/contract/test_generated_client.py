"""A Python client generated from /api/schema/ (openapi-python-client), driven end to end against a
real gunicorn, as an app team would use it: every answer, success or error, must parse into the
generated models, and every business error must arrive as the typed error object with its `code`
as an enum value. A status the schema does not declare raises (raise_on_unexpected_status).

The one operator step, the teller deposit, is `manage.py deposit` (call_command, committed).
"""

from __future__ import annotations

import base64
import csv
import enum
import importlib
import io
import time
import uuid
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pyotp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command

from bankcore.tests.contract import CLIENT_PACKAGE

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.contract]

APP_HEADERS = {"X-App-Platform": "ios", "X-App-Version": "1.2.3"}
PASSWORD = "correct horse battery staple 42"
STEP_UP_PREFIX = "bankcore-step-up:v1"  # accounts.services.step_up.OPERATION_PREFIX, as the app signs it


def api(name: str) -> ModuleType:
    """An operation module of the generated client, e.g. api("transfers.transfers_create")."""
    return importlib.import_module(f"{CLIENT_PACKAGE}.api.{name}")


def model(name: str) -> Any:
    """A generated model class by its schema name, e.g. model("TransferInputRequest")."""
    return getattr(importlib.import_module(f"{CLIENT_PACKAGE}.models"), name)


def client(name: str) -> Any:
    """The generated `Client` (anonymous) or `AuthenticatedClient` class."""
    return getattr(importlib.import_module(CLIENT_PACKAGE), name)


def signed_in(base_url: str, access: str, headers: dict[str, str] = APP_HEADERS) -> Any:
    """A client sending `Authorization: Bearer <access>`; any status the schema does not declare raises."""
    return client("AuthenticatedClient")(
        base_url=base_url, token=access, headers=headers, raise_on_unexpected_status=True
    )


def body(name: str, fields: dict[str, Any]) -> Any:
    """A request body as the generated model `name`; every field must be one the model declares
    (from_dict would otherwise carry it along in additional_properties, hiding a model that lost it)."""
    built = model(name).from_dict(fields)
    assert built.additional_properties == {}, f"{name} lacks {sorted(built.additional_properties)}"
    return built


def ok(response: Any, status: int) -> Any:
    """The parsed body of a success: what the schema declares (None only for 204 No Content)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response.parsed is not None or status == 204, f"{status} is declared without a body schema"
    return response.parsed


def typed_error(response: Any, status: int, code: str) -> Any:
    """The error as the generated client hands it to app code: a generated model with
    `.error.code` an enum member (not a bare string), `.error.message` and `.error.details`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    parsed = response.parsed
    assert parsed is not None, f"{status} is declared without the error schema as its body"
    assert type(parsed).__module__.startswith(f"{CLIENT_PACKAGE}.models."), type(parsed)
    error = parsed.error
    assert isinstance(error.code, enum.Enum), f"`code` of a {status} parses as {type(error.code).__name__}, no enum"
    assert error.code.value == code, (error.code, error.message)
    assert isinstance(error.message, str) and error.message
    return error


def details(error: Any) -> dict[str, Any]:
    return error.details.to_dict()


def new_device_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair as the phone's secure enclave would make it; the public half as base64 DER SPKI."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, message: str) -> str:
    return base64.b64encode(private.sign(message.encode(), ec.ECDSA(hashes.SHA256()))).decode()


def unused_totp_code(authenticator: pyotp.TOTP, used_step: int) -> str:
    """A code the server has not seen yet. A code is single use per 30 s step, and the server
    accepts one step of clock drift either way (accounts TOTP_TOLERANCE): an authenticator whose
    clock runs up to 30 s ahead shows the next step's code, which signs in at once - no test wait."""
    now = time.time()
    if int(now) // 30 <= used_step:
        return authenticator.at(now + 30)
    return authenticator.now()


class App:
    """What the app keeps: the generated client, signed in or not."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.anonymous = client("Client")(base_url=base_url, headers=APP_HEADERS, raise_on_unexpected_status=True)
        self.client: Any = None

    def sign_in(self, tokens: Any) -> None:
        self.client = signed_in(self.base_url, tokens.access)

    def register(self, email: str, full_name: str) -> Any:
        registration = body(
            "RegisterInputRequest",
            {"email": email, "phone": "+4915112345678", "full_name": full_name, "password": PASSWORD},
        )
        return ok(api("identity.auth_register_create").sync_detailed(client=self.anonymous, body=registration), 201)

    def password_login(self, email: str, password: str = PASSWORD) -> Any:
        credentials = body("TokenInputRequest", {"email": email, "password": password})
        return api("identity.auth_token_create").sync_detailed(client=self.anonymous, body=credentials)

    def open_account(self, currency: str = "EUR", name: str = "Everyday") -> Any:
        opening = body("BankAccountInputRequest", {"kind": "current", "currency": currency, "name": name})
        return ok(api("accounts.accounts_create").sync_detailed(client=self.client, body=opening), 201)

    def transfer(self, key: str, **fields: Any) -> Any:
        order = body("TransferInputRequest", fields)
        return api("transfers.transfers_create").sync_detailed(client=self.client, body=order, idempotency_key=key)


def deposit(iban: str, amount: str) -> None:
    """The operator's teller deposit, exactly as run from a shell (manage.py deposit IBAN AMOUNT)."""
    call_command("deposit", iban, amount, "--reference", "contract test funding", stdout=io.StringIO())


def test_generated_client_end_to_end(api_server, generated_client, transactional_db):
    from accounts.models import User
    from bankcore.idempotency import _lock_id

    app = App(api_server.url)
    suffix = uuid.uuid4().hex[:10]
    email = f"ada.{suffix}@example.com"

    # --- register, sign in, enrol TOTP (pyotp is the authenticator app) ---------------------------
    user = app.register(email, "Ada Lovelace")
    assert user.email == email and user.totp_enabled is False
    app.sign_in(ok(app.password_login(email), 200))
    enrolment = ok(api("identity.auth_totp_create").sync_detailed(client=app.client), 201)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/") and "<svg" in enrolment.qr_svg
    authenticator = pyotp.TOTP(enrolment.secret)
    shown_at = time.time()  # the app shows the code of this moment's step; the server records that step
    confirmed_step = int(shown_at) // 30
    confirm = body("CodeInputRequest", {"code": authenticator.at(shown_at)})
    backup_codes = ok(api("identity.auth_totp_confirm_create").sync_detailed(client=app.client, body=confirm), 200)
    assert len(backup_codes.backup_codes) == 10
    # Enrolled already: a second enrolment is a conflict, typed.
    typed_error(api("identity.auth_totp_create").sync_detailed(client=app.client), 409, "totp_already_enabled")

    # --- register this phone: a device key, a challenge signed with it, a device session ------------
    private_key, public_key = new_device_key()
    device_body = body(
        "DeviceInputRequest",
        {"name": "Ada's iPhone", "platform": "ios", "app_version": "1.2.3", "public_key": public_key},
    )
    device = ok(api("identity.devices_create").sync_detailed(client=app.client, body=device_body), 201)
    challenge_body = body("DeviceChallengeInputRequest", {"device_id": str(device.id)})
    challenge = ok(
        api("identity.auth_device_challenge_create").sync_detailed(client=app.anonymous, body=challenge_body), 200
    )
    device_login = body(
        "DeviceTokenInputRequest",
        {
            "device_id": str(device.id),
            "challenge": challenge.challenge,
            "signature": sign(private_key, challenge.challenge),
        },
    )
    app.sign_in(
        ok(api("identity.auth_device_token_create").sync_detailed(client=app.anonymous, body=device_login), 200)
    )
    devices = ok(api("identity.devices_list").sync_detailed(client=app.client), 200)
    assert [d.id for d in devices.results] == [device.id]

    # --- accounts, and money from the teller -----------------------------------------------------
    main = app.open_account(name="Everyday")
    savings = app.open_account(name="Rainy day")
    dollars = app.open_account(currency="USD", name="Travel")
    deposit(main.number, "2000.00")
    main = ok(api("accounts.accounts_retrieve").sync_detailed(main.id, client=app.client), 200)
    assert (main.balance, main.available) == ("2000.00", "2000.00")
    listed = ok(api("accounts.accounts_list").sync_detailed(client=app.client), 200)
    assert {a.id for a in listed.results} >= {main.id, savings.id, dollars.id}

    # --- a transfer with Idempotency-Key, and its replay ---------------------------------------------
    key = f"coffee-{suffix}"
    fields = {
        "source_account": str(main.id),
        "destination": savings.number,
        "amount": "100.00",
        "currency": "EUR",
        "description": "to savings",
    }
    first = app.transfer(key, **fields)
    sent = ok(first, 201)
    assert sent.status == "posted"
    assert (sent.amount, sent.destination) == ("100.00", savings.number)
    replay = app.transfer(key, **fields)
    assert ok(replay, 201).to_dict() == sent.to_dict()
    assert replay.headers.get("Idempotent-Replayed") == "true"

    # --- every business error, typed ------------------------------------------------------------------
    # Same key, another body: 422 idempotency_key_reused.
    typed_error(app.transfer(key, **{**fields, "amount": "100.01"}), 422, "idempotency_key_reused")
    # A duplicate while the first is still running (its advisory lock is held): 409. None of the refusals
    # here books anything: the history below has exactly the postings that succeeded.
    running_key = f"running-{suffix}"
    lock = _lock_id(User.objects.get(pk=user.id), running_key)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [lock])
        try:
            typed_error(app.transfer(running_key, **{**fields, "amount": "1.00"}), 409, "idempotency_in_progress")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
    # Bad input: 400 invalid_request naming the field; no key at all: 400 too.
    error = typed_error(app.transfer(f"bad-{suffix}", **{**fields, "amount": "1.001"}), 400, "invalid_request")
    assert "amount" in details(error)
    typed_error(app.transfer("", **fields), 400, "invalid_request")
    # Above the step-up threshold without a step-up token: 403 step_up_required.
    big = {**fields, "amount": "1500.00", "description": "new sofa"}
    typed_error(app.transfer(f"sofa-{suffix}", **big), 403, "step_up_required")
    # ...approved on the phone with its device key (purpose, amount, currency and payee signed), then sent.
    challenge = ok(
        api("identity.auth_device_challenge_create").sync_detailed(client=app.anonymous, body=challenge_body), 200
    )
    operation = "|".join([STEP_UP_PREFIX, "transfer", "1500.00", "EUR", savings.number, challenge.challenge])
    step_up_body = body(
        "StepUpInputRequest",
        {
            "purpose": "transfer",
            "amount": "1500.00",
            "currency": "EUR",
            "payee": savings.number,
            "device_id": str(device.id),
            "challenge": challenge.challenge,
            "signature": sign(private_key, operation),
        },
    )
    step_up = ok(api("identity.auth_step_up_create").sync_detailed(client=app.client, body=step_up_body), 200)
    ok(app.transfer(f"sofa-{suffix}", **big, step_up_token=step_up.step_up_token), 201)
    # 400.00 left: 600.00 is too much. The done criterion: insufficient_funds, typed.
    error = typed_error(app.transfer(f"rent-{suffix}", **{**fields, "amount": "600.00"}), 422, "insufficient_funds")
    assert details(error) == {"available": "400.00"}
    typed_error(app.transfer(f"self-{suffix}", **{**fields, "destination": main.number}), 422, "same_account")
    typed_error(app.transfer(f"usd-{suffix}", **{**fields, "currency": "USD"}), 422, "currency_mismatch")
    typed_error(app.transfer(f"huge-{suffix}", **{**fields, "amount": "10000.01"}), 422, "limit_exceeded")
    # Not signed in: 401.
    stranger = signed_in(api_server.url, "not-a-token")
    typed_error(api("accounts.accounts_list").sync_detailed(client=stranger), 401, "not_authenticated")
    typed_error(app.password_login(email, "wrong password"), 401, "invalid_credentials")
    # Another customer's account and transfer: 404, exactly as if they did not exist.
    other = App(api_server.url)
    other_email = f"bob.{suffix}@example.com"
    other.register(other_email, "Bob Builder")
    other.sign_in(ok(other.password_login(other_email), 200))
    theirs = other.open_account()
    typed_error(api("accounts.accounts_retrieve").sync_detailed(main.id, client=other.client), 404, "not_found")
    typed_error(api("transfers.transfers_retrieve").sync_detailed(sent.id, client=other.client), 404, "not_found")
    typed_error(other.transfer(f"steal-{suffix}", **{**fields, "destination": theirs.number}), 404, "not_found")

    # --- history, page by page (cursor), newest first ---------------------------------------------------
    for n in range(3):
        ok(app.transfer(f"small-{n}-{suffix}", **{**fields, "amount": f"1.0{n}"}), 201)
    entries: list[Any] = []
    cursor: Any = None
    pages = 0
    history = api("accounts.accounts_transactions_list")
    while True:
        page = ok(
            history.sync_detailed(main.id, client=app.client, limit=2, **({"cursor": cursor} if cursor else {})), 200
        )
        pages += 1
        assert len(page.results) <= 2
        entries += page.results
        if not page.next_:
            break
        cursor = page.next_
    # deposit, 100.00, 1500.00 and three small ones: six entries on three pages, newest first.
    assert pages == 3
    assert [e.amount for e in entries] == ["-1.02", "-1.01", "-1.00", "-1500.00", "-100.00", "2000.00"]
    assert entries[0].balance_after == "396.97"
    assert len({e.id for e in entries}) == 6

    # --- statement download -------------------------------------------------------------------------------
    month = datetime.now(UTC).strftime("%Y-%m")
    statement = api("accounts.accounts_statement_retrieve").sync_detailed(main.id, client=app.client, month=month)
    text = ok(statement, 200)  # CSV is declared as text: the generated client hands over a str
    assert statement.headers["content-type"].startswith("text/csv")
    assert isinstance(text, str)
    rows = list(csv.reader(io.StringIO(text)))
    assert any("2000.00" in row for row in rows) and any("-1500.00" in row for row in rows)
    error = typed_error(
        api("accounts.accounts_statement_retrieve").sync_detailed(main.id, client=app.client, month="2026-13"),
        400,
        "invalid_request",
    )
    assert "month" in details(error)

    # --- the notifications inbox -------------------------------------------------------------------------------
    # What the server wrote as it answered (transfer alerts come later, through the ledger's outbox and a
    # Celery worker: transactions/tests cover that path; this test starts no worker, for time).
    inbox = ok(api("notifications.notifications_list").sync_detailed(client=app.client, limit=100), 200)
    events = [n.event for n in inbox.results]
    assert sorted(events) == ["new_device", "two_factor_changed"], events
    assert inbox.unread == 2 and inbox.next_ is None
    first_unread = inbox.results[0]
    ok(api("notifications.notifications_read").sync_detailed(first_unread.id, client=app.client), 204)
    inbox = ok(api("notifications.notifications_list").sync_detailed(client=app.client, unread=True), 200)
    assert inbox.unread == 1 and first_unread.id not in {n.id for n in inbox.results} and len(inbox.results) == 1
    ok(api("notifications.notifications_read_all").sync_detailed(client=app.client), 204)
    assert ok(api("notifications.notifications_list").sync_detailed(client=app.client), 200).unread == 0
    typed_error(
        api("notifications.notifications_read").sync_detailed(uuid.uuid4(), client=app.client), 404, "not_found"
    )

    # --- an app too old for the API: 426 upgrade_required with the store's URL ----------------------------------
    from bankcore.app_config import version_policy_set

    store = "https://play.google.com/store/apps/details?id=bank.example"
    version_policy_set(
        platform="android", min_supported_version="2.0.0", latest_version="2.1.0", store_url=store, actor=None
    )
    old_app = signed_in(api_server.url, app.client.token, {"X-App-Platform": "android", "X-App-Version": "1.9.9"})
    error = typed_error(api("accounts.accounts_list").sync_detailed(client=old_app), 426, "upgrade_required")
    assert details(error)["store_url"] == store

    # --- the public service status ----------------------------------------------------------------------------
    status = ok(api("status.service_status").sync_detailed(client=app.anonymous), 200)
    assert status.state.value == "operational"
    assert status.incidents == []

    # --- last, on a new phone: password, then the authenticator app (MFA) -------------------------------
    error = typed_error(app.password_login(email), 401, "mfa_required")
    mfa_token = details(error)["mfa_token"]
    code = unused_totp_code(authenticator, confirmed_step)
    mfa = body("MfaTokenInputRequest", {"mfa_token": mfa_token, "code": code})
    app.sign_in(ok(api("identity.auth_token_mfa_create").sync_detailed(client=app.anonymous, body=mfa), 200))
    me = ok(api("identity.me_retrieve").sync_detailed(client=app.client), 200)
    assert me.totp_enabled is True

"""Idempotency-Key for every money-moving POST.

    class TransferListCreate(APIView):
        @idempotent
        def post(self, request): ...

Semantics (API.md): the key (1-255 printable ASCII characters) is required; it is
scoped to the authenticated user and lives 24 hours. The same key with the same
request replays the first response (status and body, plus `Idempotent-Replayed:
true`); with another request it answers 422 `idempotency_key_reused`; while the first
request is still running it answers 409 `idempotency_in_progress`.

How exactly-once is kept:
1. one database transaction holds the whole request. It starts by *claiming* the key
   in one statement: a transaction-scoped advisory lock on (user, key) - taken with
   try-lock, so a concurrent duplicate answers 409 at once instead of waiting - the
   lookup of an earlier row, and the insert of this request's row (unique per
   user+key, state in_progress, a random claim token). Nobody else sees that row
   before COMMIT; the advisory lock is what tells them a request is in flight.
2. the view runs in that transaction, and the response is written to the key row in
   the same transaction (conditional on still holding the claim). So the money moves if
   and only if the response is stored; a crash at any point rolls back everything and
   frees the lock, and a retry runs afresh. On the happy path a request costs the claim,
   the view's own statements, the completion and one COMMIT - no savepoint.
3. Successful (2xx) and business-rule (422) answers are stored and replayed. A 422's work
   is undone by rolling the whole transaction back; its answer is then stored in a short
   transaction of its own that claims the key again (a duplicate that got in between is
   answered as usual: replay or 409). Answers the client is expected to fix and retry with
   the same key - 400 bad input, 403 step-up required, 404 - roll the claim back with the
   work, as does an unexpected error.
A committed row is always completed; an in_progress row left by an earlier version
(claim committed on its own, with a lease) is still honoured: 409 while its lease
runs, taken over after. Transient deadlock/serialization failures restart the
whole transaction (bounded), then answer 503.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from bankcore.api.errors import error_body
from bankcore.api.exceptions import BankError, BusinessRuleViolation, Conflict, ServiceUnavailable
from bankcore.db.retry import is_transient
from bankcore.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_KEY_SYNTAX = re.compile(r"^[\x20-\x7e]{1,255}$")
_MAX_ATTEMPTS = 5


class IdempotencyKeyMissing(BankError):
    status_code = 400
    code = "invalid_request"
    default_message = "This request needs an Idempotency-Key header (1-255 printable characters)."


class IdempotencyKeyReused(BusinessRuleViolation):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request."


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    default_message = "A request with this Idempotency-Key is still being processed."


# Single-use credentials that ride in a money-moving body. A retry carries a fresh one (the
# first was spent or expired), so they are not part of "the same request" (API.md).
CREDENTIAL_FIELDS = frozenset({"step_up_token"})


def request_fingerprint(request: Request) -> str:
    """sha256 over method, path and the parsed body's business fields in canonical JSON."""
    data = request.data
    if isinstance(data, dict):
        data = {name: value for name, value in data.items() if name not in CREDENTIAL_FIELDS}
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def _stored(status_code: int) -> bool:
    return 200 <= status_code < 300 or status_code == 422


# The happy path is one plain INSERT (cheap to plan): it claims the advisory lock and the row
# together, and inserts nothing if either is taken.
_CLAIM_SQL = (
    "INSERT INTO bankcore_idempotencykey"
    " (user_id, key, request_hash, state, claim_token, lease_until, created_at, expires_at)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s WHERE pg_try_advisory_xact_lock(%s)"
    " ON CONFLICT (user_id, key) DO NOTHING RETURNING id"
)
# Otherwise: was it the lock, and what row is there? (Re-taking a lock we hold succeeds.)
_LOOK_SQL = (
    "SELECT pg_try_advisory_xact_lock(%s), k.id, k.request_hash, k.state, k.claim_token, k.lease_until,"
    " k.response_status, k.response_body, k.expires_at FROM (SELECT 1) AS one"
    " LEFT JOIN bankcore_idempotencykey k ON k.user_id = %s AND k.key = %s"
)


def _lock_id(user: Any, key: str) -> int:
    """A signed 64-bit advisory lock id for (user, key). A collision only costs a spurious 409."""
    digest = hashlib.sha256(f"idempotency\n{user.pk}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _claim(*, user: Any, key: str, fingerprint: str) -> tuple[Any, Response | None]:
    """Claim the key inside the current transaction, or return the response to give instead (replay).

    Raises IdempotencyKeyReused (another request under this key) or IdempotencyInProgress.
    """
    user_id = IdempotencyKey._meta.get_field("user").get_db_prep_value(user.pk, connection)
    for _ in range(3):
        now = timezone.now()
        token = secrets.token_hex(16)
        lock_id = _lock_id(user, key)
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_SQL,
                [
                    user_id,
                    key,
                    fingerprint,
                    IdempotencyKey.State.IN_PROGRESS.value,
                    token,
                    now + settings.IDEMPOTENCY_LEASE,
                    now,
                    now + settings.IDEMPOTENCY_KEY_TTL,
                    lock_id,
                ],
            )
            claimed = cursor.fetchone()
            if claimed is not None:
                return IdempotencyKey(pk=claimed[0], user=user, key=key, claim_token=token), None
            cursor.execute(_LOOK_SQL, [lock_id, user_id, key])
            got, *existing = cursor.fetchone()
        if existing[0] is None:
            if not got:
                raise IdempotencyInProgress()
            continue  # committed by another request after our snapshot: look again
        row_id, request_hash, state, claim_token, lease_until, response_status, response_body, expires_at = existing
        if isinstance(response_body, str):
            response_body = json.loads(response_body)
        if expires_at <= now:
            if not got:
                raise IdempotencyInProgress()
            # Past its 24 hours but not yet swept: the key is free again.
            IdempotencyKey.objects.filter(pk=row_id, expires_at__lte=now).delete()
            continue
        if request_hash != fingerprint:
            raise IdempotencyKeyReused()
        if state == IdempotencyKey.State.COMPLETED:
            response = Response(response_body, status=response_status)
            response[REPLAY_HEADER] = "true"
            return None, response
        if not got or lease_until > now:
            raise IdempotencyInProgress()
        # A claim committed by an earlier version whose request died: take over (we hold the lock).
        taken = IdempotencyKey.objects.filter(pk=row_id, claim_token=claim_token, state=state).update(
            claim_token=token, lease_until=now + settings.IDEMPOTENCY_LEASE
        )
        if not taken:
            raise IdempotencyInProgress()
        return IdempotencyKey(pk=row_id, user=user, key=key, claim_token=token), None
    raise IdempotencyInProgress()


def _complete(row: Any, status_code: int, body: Any) -> None:
    """Store the response; must run in the transaction that did the work."""
    # Hand-written: one per request; the body is adapted exactly as the ORM would.
    prepared = IdempotencyKey._meta.get_field("response_body").get_db_prep_save(body, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE bankcore_idempotencykey SET state = %s, response_status = %s, response_body = %s"
            " WHERE id = %s AND claim_token = %s",
            [IdempotencyKey.State.COMPLETED.value, status_code, prepared, row.pk, row.claim_token],
        )
        updated = cursor.rowcount
    if not updated:
        # Our lease ran out and another request took over: undo our work.
        raise IdempotencyInProgress()


class _Refused(Exception):
    """Carries a stored-answer refusal out of the transaction, which rolls its work back."""

    def __init__(self, error: BankError) -> None:
        self.error = error


def _run_claimed(*, user: Any, key: str, fingerprint: str, handler: Callable[[], Response]) -> Response:
    """One transaction: claim, run the handler, store its answer. Raises _Refused for a stored refusal."""
    with transaction.atomic():
        row, replay = _claim(user=user, key=key, fingerprint=fingerprint)
        if replay is not None:
            return replay
        try:
            response = handler()
        except BankError as exc:
            if not _stored(exc.status_code) or isinstance(exc, IdempotencyInProgress):
                raise  # rolls the claim back with the work: the key stays free
            raise _Refused(exc) from exc  # rolls the work back; the answer is stored after
        # Something inside that swallowed a database error leaves the transaction marked for
        # rollback: the work is then unusable, so the whole request is undone rather than an
        # answer stored for work that did not happen.
        if transaction.get_rollback():
            raise transaction.TransactionManagementError("The request's work was marked for rollback.")
        if _stored(response.status_code):
            _complete(row, response.status_code, response.data)
        return response


def _store_refusal(*, user: Any, key: str, fingerprint: str, error: BankError) -> Response | None:
    """Store a refusal's answer under the key, its work already rolled back. Returns the
    response to give instead if another request under this key completed in between."""
    with transaction.atomic():
        row, replay = _claim(user=user, key=key, fingerprint=fingerprint)
        if replay is not None:
            return replay
        _complete(row, error.status_code, error_body(error.code, error.message, error.details))
    return None


def run_idempotent(*, user: Any, key: str | None, fingerprint: str, handler: Callable[[], Response]) -> Response:
    """Run `handler` (which builds the response) at most once per (user, key) with exactly-once effects."""
    if not key or not _KEY_SYNTAX.match(key):
        raise IdempotencyKeyMissing(details={HEADER: ["Required: 1-255 printable ASCII characters."]})
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            try:
                return _run_claimed(user=user, key=key, fingerprint=fingerprint, handler=handler)
            except _Refused as refused:
                replay = _store_refusal(user=user, key=key, fingerprint=fingerprint, error=refused.error)
                if replay is not None:
                    return replay
                raise refused.error from None  # committed with its stored answer
        except OperationalError as exc:
            if not is_transient(exc):
                raise
            if attempt == _MAX_ATTEMPTS:
                raise ServiceUnavailable("The bank is busy; please retry.") from exc
    raise AssertionError("unreachable")


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an APIView's post() so it honours Idempotency-Key (see module docstring)."""

    @wraps(view_method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        return run_idempotent(
            user=request.user,
            key=request.headers.get(HEADER),
            fingerprint=request_fingerprint(request),
            handler=lambda: view_method(view, request, *args, **kwargs),
        )

    return wrapper

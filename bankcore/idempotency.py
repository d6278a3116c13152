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
4. A view whose work starts with one locking statement may let that statement carry the
   claim (`@idempotent(claim="with_first_statement")`: one round trip less per request), and
   the statement that writes its outcome carry the completion (`answer=`: the view returns
   its service's result and `answer` turns it into the response, rendered before that write
   and given as stored).
   The claim then runs first in that statement, and the statement's own work only if the
   claim succeeds, so a duplicate still answers 409 at once; a claim that does not succeed
   undoes the attempt and the request is run again with the claim of step 1, which gives
   the replay, 409 or 422. Such a view calls `claim_now()` before anything it does outside
   this database transaction (another system, a message): until its claim is made, its
   work may be undone and run again.
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
from contextvars import ContextVar
from functools import wraps
from typing import Any, Literal

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


# idempotency_claim() (migration bankcore 0013): the advisory lock and the row together; the row's
# id, or NULL if either is taken. A function, so its plan is cached per database session.
_CLAIM_CALL = "idempotency_claim(%s, %s, %s, %s, %s, %s, %s, %s)"
_CLAIM_SQL = f"SELECT {_CLAIM_CALL}"
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


def _user_id(user: Any) -> Any:
    return IdempotencyKey._meta.get_field("user").get_db_prep_value(user.pk, connection)


def _claim_params(*, user: Any, key: str, fingerprint: str) -> tuple[list[Any], str]:
    """_CLAIM_SQL's parameters for a fresh claim, and its claim token."""
    now = timezone.now()
    token = secrets.token_hex(16)
    params = [
        _user_id(user),
        key,
        fingerprint,
        token,
        now + settings.IDEMPOTENCY_LEASE,
        now,
        now + settings.IDEMPOTENCY_KEY_TTL,
        _lock_id(user, key),
    ]
    return params, token


def _claim(*, user: Any, key: str, fingerprint: str) -> tuple[Any, Response | None]:
    """Claim the key inside the current transaction, or return the response to give instead (replay).

    Raises IdempotencyKeyReused (another request under this key) or IdempotencyInProgress.
    """
    user_id = _user_id(user)
    for _ in range(3):
        now = timezone.now()
        params, token = _claim_params(user=user, key=key, fingerprint=fingerprint)
        lock_id = params[-1]
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, params)
            (claimed,) = cursor.fetchone()
            if claimed is not None:
                return IdempotencyKey(pk=claimed, user=user, key=key, claim_token=token), None
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
        cursor.execute("SELECT idempotency_complete(%s, %s, %s, %s)", [row.pk, row.claim_token, status_code, prepared])
        (updated,) = cursor.fetchone()
    if not updated:
        # Our lease ran out and another request took over: undo our work.
        raise IdempotencyInProgress()


class _Refused(Exception):
    """Carries a stored-answer refusal out of the transaction, which rolls its work back."""

    def __init__(self, error: BankError) -> None:
        self.error = error


class _ClaimNotMade(Exception):
    """A claim carried by the work's first statement did not succeed: undo and run with the claim first."""


ClaimMode = Literal["first", "with_first_statement"]


class CarriedClaim:
    """The request's claim, waiting for the work's first statement to carry it (see step 4 above).

    That statement passes `arguments` to idempotency_claim() (migration bankcore 0013) - e.g.
    ledger_lock_transfer() does - and hands its result to `made`."""

    def __init__(
        self, *, user: Any, key: str, fingerprint: str, answer: Callable[[Any], Response] | None = None
    ) -> None:
        self.user, self.key, self.fingerprint = user, key, fingerprint
        self.row: Any = None  # the claimed IdempotencyKey, once made
        self.offered = False  # a statement took it (or claim_now made it)
        self.answer = answer  # the view's answer from its service's result, if it may be carried
        self.answered: Response | None = None  # the answer a statement stored
        self.answered_result: Any = None  # the result it was rendered from
        self._token = ""

    def arguments(self) -> list[Any]:
        """idempotency_claim()'s arguments after the user: key, request hash, claim token, lease
        end, claim time, expiry, lock id. Once: the statement that takes them must carry them."""
        assert not self.offered, "a claim is carried by one statement"
        self.offered = True
        params, self._token = _claim_params(user=self.user, key=self.key, fingerprint=self.fingerprint)
        return params[1:]

    def made(self, claimed_id: int | None) -> None:
        """What idempotency_claim() returned. Raises _ClaimNotMade (handled by the idempotency layer:
        the attempt is undone and the request runs claim-first) if it did not claim."""
        if claimed_id is None:
            raise _ClaimNotMade()
        self.row = IdempotencyKey(pk=claimed_id, user=self.user, key=self.key, claim_token=self._token)


_carried: ContextVar[CarriedClaim | None] = ContextVar("idempotency_carried_claim", default=None)


def carried_claim(*, user_id: Any) -> CarriedClaim | None:
    """The current request's claim if it waits for a statement to carry it, for `user_id`'s work."""
    carried = _carried.get()
    if carried is None or carried.offered or carried.user.pk != user_id:
        return None
    return carried


def carried_answer_call(result: Any) -> tuple[str, list[Any]] | None:
    """The idempotency_complete() call that stores the current request's answer - the view's
    `answer` rendered now from `result` - for the statement that writes the request's outcome to
    fold in (one round trip less), with its parameters; None if there is none to carry. Pass what
    the call returned to `carried_answer_stored`."""
    carried = _carried.get()
    if carried is None or carried.row is None or carried.answer is None or carried.answered is not None:
        return None
    response = carried.answer(result)
    if not _stored(response.status_code):
        return None
    carried.answered, carried.answered_result = response, result
    body = IdempotencyKey._meta.get_field("response_body").get_db_prep_save(response.data, connection)
    return "idempotency_complete(%s, %s, %s, %s)", [carried.row.pk, carried.row.claim_token, response.status_code, body]


def carried_answer_stored(stored: bool) -> None:
    """What the carried idempotency_complete() returned: false if another request took the claim
    over (an earlier version's lease ran out), which undoes this one's work."""
    if not stored:
        raise IdempotencyInProgress()


def claim_now() -> None:
    """Make the current request's claim now if it still waits for a statement to carry it: call
    before any effect outside the database transaction (step 4 above). Otherwise a no-op."""
    carried = _carried.get()
    if carried is None or carried.offered:
        return
    carried.offered = True
    row, replay = _claim(user=carried.user, key=carried.key, fingerprint=carried.fingerprint)
    if replay is not None or row is None:
        raise _ClaimNotMade()  # undo; the claim-first run answers with the replay
    carried.row = row


def _run_handler(handler: Callable[[], Any]) -> Any:
    """The view, in the request's transaction; stored refusals come out as _Refused."""
    try:
        result = handler()
    except BankError as exc:
        if not _stored(exc.status_code) or isinstance(exc, IdempotencyInProgress):
            raise  # rolls the claim back with the work: the key stays free
        raise _Refused(exc) from exc  # rolls the work back; the answer is stored after
    # Something inside that swallowed a database error leaves the transaction marked for
    # rollback: the work is then unusable, so the whole request is undone rather than an
    # answer stored for work that did not happen.
    if transaction.get_rollback():
        raise transaction.TransactionManagementError("The request's work was marked for rollback.")
    return result


def _run_claimed(
    *,
    user: Any,
    key: str,
    fingerprint: str,
    handler: Callable[[], Any],
    claim: ClaimMode = "first",
    answer: Callable[[Any], Response] | None = None,
) -> Response:
    """One transaction: claim, run the handler, store its answer. Raises _Refused for a stored refusal,
    _ClaimNotMade when a carried claim did not succeed. With `answer`, the handler returns its
    service's result and `answer(result)` is the response."""
    with transaction.atomic():
        carried = None
        if claim == "first":
            row, replay = _claim(user=user, key=key, fingerprint=fingerprint)
            if replay is not None:
                return replay
        else:
            carried = CarriedClaim(user=user, key=key, fingerprint=fingerprint, answer=answer)
        reset = _carried.set(carried)
        try:
            result = _run_handler(handler)
        finally:
            _carried.reset(reset)
        if carried is not None and carried.answered is not None:  # stored with the work's last statement
            if carried.answered_result is not result:
                raise transaction.TransactionManagementError("An answer was stored for another result.")
            return carried.answered
        response = answer(result) if answer is not None else result
        if carried is not None:
            row = carried.row
            if row is None and _stored(response.status_code):
                raise transaction.TransactionManagementError("The view answered without making its claim.")
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


def run_idempotent(
    *,
    user: Any,
    key: str | None,
    fingerprint: str,
    handler: Callable[[], Any],
    claim: ClaimMode = "first",
    answer: Callable[[Any], Response] | None = None,
) -> Response:
    """Run `handler` (which builds the response) at most once per (user, key) with exactly-once effects."""
    if not key or not _KEY_SYNTAX.match(key):
        raise IdempotencyKeyMissing(details={HEADER: ["Required: 1-255 printable ASCII characters."]})
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return _run_once(user=user, key=key, fingerprint=fingerprint, handler=handler, claim=claim, answer=answer)
        except OperationalError as exc:
            if not is_transient(exc):
                raise
            if attempt == _MAX_ATTEMPTS:
                raise ServiceUnavailable("The bank is busy; please retry.") from exc
    raise AssertionError("unreachable")


def _run_once(
    *,
    user: Any,
    key: str,
    fingerprint: str,
    handler: Callable[[], Any],
    claim: ClaimMode,
    answer: Callable[[Any], Response] | None = None,
) -> Response:
    """One attempt: the request's transaction, then a stored refusal's own."""
    try:
        return _run_claimed(user=user, key=key, fingerprint=fingerprint, handler=handler, claim=claim, answer=answer)
    except _ClaimNotMade:
        # Another request holds or used the key; its attempt is undone. Claim first: that answers.
        return _run_once(user=user, key=key, fingerprint=fingerprint, handler=handler, claim="first", answer=answer)
    except _Refused as refused:
        replay = _store_refusal(user=user, key=key, fingerprint=fingerprint, error=refused.error)
        if replay is not None:
            return replay
        raise refused.error from None  # committed with its stored answer


def idempotent(
    view_method: Callable[..., Response] | None = None,
    *,
    claim: ClaimMode = "first",
    answer: Callable[[Any], Response] | None = None,
) -> Any:
    """Decorate an APIView's post() so it honours Idempotency-Key (see module docstring).

    `claim="with_first_statement"`: the view's first locking statement carries the claim. With
    `answer`, the view returns its service's result, `answer(result)` is the response, and the
    statement that writes the outcome may store it (step 4)."""

    def decorate(method: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(method)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            return run_idempotent(
                user=request.user,
                key=request.headers.get(HEADER),
                fingerprint=request_fingerprint(request),
                handler=lambda: method(view, request, *args, **kwargs),
                claim=claim,
                answer=answer,
            )

        return wrapper

    return decorate(view_method) if view_method is not None else decorate

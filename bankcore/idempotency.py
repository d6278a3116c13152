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
1. the key is *claimed* in its own short committed transaction (unique per user+key,
   state in_progress, a random claim token and a lease);
2. the view runs inside one database transaction, and the response is written to the
   key row *in that same transaction* (conditional on still holding the claim). So the
   money moves if and only if the response is stored; a crash in between leaves only an
   in-progress claim whose lease runs out, and no transfer.
3. Successful (2xx) and business-rule (422) answers are stored and replayed. Answers
   the client is expected to fix and retry with the same key - 400 bad input, 403
   step-up required, 404 - release the key instead, as does an unexpected error.
Transient deadlock/serialization failures restart step 2 (bounded).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from contextlib import nullcontext
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from bankcore.api.errors import error_body
from bankcore.api.exceptions import BankError, BusinessRuleViolation, Conflict, ServiceUnavailable

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


def request_fingerprint(request: Request) -> str:
    """sha256 over method, path and the parsed body in canonical JSON."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def _stored(status_code: int) -> bool:
    return 200 <= status_code < 300 or status_code == 422


def _claim(*, user: Any, key: str, fingerprint: str) -> tuple[Any, Response | None]:
    """Claim the key, or return the response to give instead (replay). Own transaction."""
    from transactions.models import IdempotencyKey

    now = timezone.now()
    token = secrets.token_hex(16)
    # Committed on its own (autocommit) before the work starts; a savepoint only if a caller's transaction is open.
    claim_scope = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with claim_scope:
            row = IdempotencyKey.objects.create(
                user=user,
                key=key,
                request_hash=fingerprint,
                claim_token=token,
                lease_until=now + settings.IDEMPOTENCY_LEASE,
                created_at=now,
                expires_at=now + settings.IDEMPOTENCY_KEY_TTL,
            )
        return row, None
    except IntegrityError:
        pass
    existing = IdempotencyKey.objects.filter(user=user, key=key).first()
    if existing is None:  # expired and deleted in between: try once more
        return _claim(user=user, key=key, fingerprint=fingerprint)
    row = existing
    if row.expires_at <= now:
        # Past its 24 hours but not yet swept: the key is free again.
        IdempotencyKey.objects.filter(pk=row.pk, expires_at__lte=now).delete()
        return _claim(user=user, key=key, fingerprint=fingerprint)
    if row.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    if row.state == IdempotencyKey.State.COMPLETED:
        response = Response(row.response_body, status=row.response_status)
        response[REPLAY_HEADER] = "true"
        return row, response
    if row.lease_until > now:
        raise IdempotencyInProgress()
    # The first request died without committing (its response would be stored): take over.
    taken = IdempotencyKey.objects.filter(pk=row.pk, claim_token=row.claim_token, state=row.state).update(
        claim_token=token, lease_until=now + settings.IDEMPOTENCY_LEASE
    )
    if not taken:
        raise IdempotencyInProgress()
    row.claim_token = token
    return row, None


def _complete(row: Any, status_code: int, body: Any) -> None:
    """Store the response; must run in the transaction that did the work."""
    from transactions.models import IdempotencyKey

    updated = IdempotencyKey.objects.filter(pk=row.pk, claim_token=row.claim_token).update(
        state=IdempotencyKey.State.COMPLETED, response_status=status_code, response_body=body
    )
    if not updated:
        # Our lease ran out and another request took over: undo our work.
        raise IdempotencyInProgress()


def _release(row: Any) -> None:
    from transactions.models import IdempotencyKey

    IdempotencyKey.objects.filter(
        pk=row.pk, claim_token=row.claim_token, state=IdempotencyKey.State.IN_PROGRESS
    ).delete()


def run_idempotent(*, user: Any, key: str | None, fingerprint: str, handler: Callable[[], Response]) -> Response:
    """Run `handler` (which builds the response) at most once per (user, key) with exactly-once effects."""
    from transactions.db import is_transient

    if not key or not _KEY_SYNTAX.match(key):
        raise IdempotencyKeyMissing(details={HEADER: ["Required: 1-255 printable ASCII characters."]})
    row, replay = _claim(user=user, key=key, fingerprint=fingerprint)
    if replay is not None:
        return replay
    try:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    response = handler()
                    if _stored(response.status_code):
                        _complete(row, response.status_code, response.data)
                    return response
            except OperationalError as exc:
                if not is_transient(exc) or attempt == _MAX_ATTEMPTS:
                    raise
        raise ServiceUnavailable("The bank is busy; please retry.")
    except BankError as exc:
        if _stored(exc.status_code) and not isinstance(exc, IdempotencyInProgress):
            with transaction.atomic():
                _complete(row, exc.status_code, error_body(exc.code, exc.message, exc.details))
        else:
            _release(row)
        raise
    except BaseException:
        _release(row)
        raise


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

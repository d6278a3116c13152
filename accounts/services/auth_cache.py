"""The live-session cache: what every authenticated request needs, without a database query.

Each API request needs the user row and whether the token's login session is still live
(accounts.api.authentication). For a live session that answer is kept in the shared cache
(Redis) for `ENTRY_SECONDS`, stamped with the user's *generation*. Anything that changes the
user row or one of their sessions (a save or delete of either, through the model signals
connected in accounts.apps, or `auth_state_changed()` after a queryset update) sets a new
generation - once at once and once more after COMMIT - which retires every entry of theirs.

A request reads the generation with the entry (one round trip) and stores what it read from
the database under the generation it saw *before* reading it. So an answer read just before a
revocation committed is stored under a retired generation and never served: a revocation
(logout, refresh-token reuse, password change, device revocation, a deactivated user) takes
effect on the next request, as without the cache. If the after-COMMIT step cannot reach the
cache (the one before COMMIT did, or the change would have failed), an answer read during the
change may live on for at most `ENTRY_SECONDS`; that is logged.

Redis is used directly, through the process's one client kept open (bankcore/redis_client.py:
Django's cache builds a redis-py client object per call, which costs more CPU than the query it
would save). Without REDIS_URL (development) every request reads the database. The
cached row leaves out the password hash, the lockout state and the encrypted columns: they
stay deferred and load from the database only if read.
"""

from __future__ import annotations

import logging
import pickle
import secrets
from typing import Any, cast

import redis
from django.conf import settings
from django.db import transaction

from bankcore.api.exceptions import ServiceUnavailable
from bankcore.redis_client import shared_redis

logger = logging.getLogger(__name__)

ENTRY_SECONDS = 60
# A generation outlives every entry stamped before it was replaced (entry lifetime + a slow request).
GENERATION_SECONDS = 2 * ENTRY_SECONDS + 60
_NO_GENERATION = b"0"


def _prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'bankcore')}:auth"


def _generation_key(user_id: Any) -> str:
    return f"{_prefix()}:generation:{user_id}"


def _entry_key(session_id: Any) -> str:
    return f"{_prefix()}:session:{session_id}"


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def cached_user_row(*, user_id: Any, session_id: Any) -> tuple[bytes, tuple[Any, ...] | None]:
    """(the user's current generation, the cached user row of this live session or None).

    A Redis that does not answer reads as a miss: the caller reads the database.
    """
    try:
        stored, entry = shared_redis().mget([_generation_key(user_id), _entry_key(session_id)])
    except redis.RedisError:
        logger.warning("auth cache unreachable; reading the session from the database", exc_info=True)
        return b"", None
    generation = cast(bytes, stored) if stored else _NO_GENERATION  # no decode_responses: bytes
    if entry is None:
        return generation, None
    # Our own Redis, written only by cache_user_row below.
    stamped, cached_user_id, row = pickle.loads(cast(bytes, entry))  # noqa: S301
    if stamped != generation or cached_user_id != str(user_id):
        return generation, None
    return generation, row


def cache_user_row(*, generation: bytes, user_id: Any, session_id: Any, row: tuple[Any, ...]) -> None:
    """Keep a live session's user row under the generation read before the row was."""
    if not generation:
        return  # Redis did not answer the read: do not write either
    try:
        entry = pickle.dumps((generation, str(user_id), row), protocol=pickle.HIGHEST_PROTOCOL)
        shared_redis().set(_entry_key(session_id), entry, ex=ENTRY_SECONDS)
    except redis.RedisError:
        logger.warning("auth cache unreachable; session not cached", exc_info=True)


def _new_generation(user_id: Any) -> None:
    shared_redis().set(_generation_key(user_id), secrets.token_hex(8).encode(), ex=GENERATION_SECONDS)


# Changes that cannot make a cached answer wrong: a new user or session (nothing is cached yet), a
# refresh rotation (the access check reads only whether the session is live) and the sign-in
# bookkeeping (failure count, lockout state and last login are not in the cached row).
_HARMLESS_FIELDS = {
    "loginsession": frozenset({"current_refresh_jti", "last_refreshed_at"}),
    "user": frozenset({"failed_auth_attempts", "locked_until", "lock_count", "last_login"}),
}


def auth_state_changed(user_id: Any, *, revokes: bool = True) -> None:
    """Retire every cached answer of `user_id`'s sessions: now and again after COMMIT (an
    answer read from the database in between is retired with it).

    A change that `revokes` (or may revoke) access fails with 503 `unavailable` when the cache
    does not answer, rather than commit while a cached answer could still let the session in.
    Any other change goes on with a warning: during a Redis outage sign-ins and failure counting
    keep working on the database alone.
    """
    if not enabled():
        return
    try:
        _new_generation(user_id)
    except redis.RedisError as exc:
        if revokes:
            raise ServiceUnavailable("Sign-in services are temporarily unavailable.") from exc
        logger.warning("auth cache unreachable; a non-revoking change of %s goes on", user_id)
        return

    def after_commit() -> None:
        try:
            _new_generation(user_id)
        except redis.RedisError:  # committed already; an entry read meanwhile lives <= ENTRY_SECONDS
            logger.error("auth cache unreachable after a session or user change of %s", user_id, exc_info=True)

    transaction.on_commit(after_commit)


def user_or_session_changed(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """post_save / post_delete receiver for User and LoginSession (connected in accounts.apps)."""
    model = sender._meta.model_name
    update_fields = kwargs.get("update_fields")
    harmless = created or (update_fields is not None and frozenset(update_fields) <= _HARMLESS_FIELDS[model])
    auth_state_changed(instance.pk if model == "user" else instance.user_id, revokes=not harmless)

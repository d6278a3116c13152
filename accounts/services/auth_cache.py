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

Only a cache shared by every process (Redis) is used; with the per-process fallback cache
(no REDIS_URL, development) every request reads the database. The cached row leaves out the
password hash, the lockout state and the encrypted columns: they stay deferred and load from the
database only if read.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction

logger = logging.getLogger(__name__)

ENTRY_SECONDS = 60
# A generation outlives every entry stamped before it was replaced (entry lifetime + a slow request).
GENERATION_SECONDS = 2 * ENTRY_SECONDS + 60
_NO_GENERATION = "0"


def _generation_key(user_id: Any) -> str:
    return f"auth:generation:{user_id}"


def _entry_key(session_id: Any) -> str:
    return f"auth:session:{session_id}"


def enabled() -> bool:
    return isinstance(caches[DEFAULT_CACHE_ALIAS], RedisCache)


def cached_user_row(*, user_id: Any, session_id: Any) -> tuple[str, tuple[Any, ...] | None]:
    """(the user's current generation, the cached user row of this live session or None).

    A cache that does not answer reads as a miss: the caller reads the database.
    """
    try:
        got = cache.get_many([_generation_key(user_id), _entry_key(session_id)])
    except Exception:  # the cache is an optimisation; the database answers
        logger.warning("auth cache unreachable; reading the session from the database", exc_info=True)
        return "", None
    generation = got.get(_generation_key(user_id), _NO_GENERATION)
    entry = got.get(_entry_key(session_id))
    if entry is None or entry[0] != generation or entry[1] != str(user_id):
        return generation, None
    return generation, entry[2]


def cache_user_row(*, generation: str, user_id: Any, session_id: Any, row: tuple[Any, ...]) -> None:
    """Keep a live session's user row under the generation read before the row was."""
    if not generation:
        return  # the cache did not answer the read: do not write either
    try:
        cache.set(_entry_key(session_id), (generation, str(user_id), row), timeout=ENTRY_SECONDS)
    except Exception:  # the cache is an optimisation
        logger.warning("auth cache unreachable; session not cached", exc_info=True)


def _new_generation(user_id: Any) -> None:
    cache.set(_generation_key(user_id), secrets.token_hex(8), timeout=GENERATION_SECONDS)


def auth_state_changed(user_id: Any) -> None:
    """Retire every cached answer of `user_id`'s sessions: now (raises if the cache does not
    answer, so the change fails rather than commits unseen) and again after COMMIT (an answer
    read from the database in between is retired with it)."""
    if not enabled():
        return
    _new_generation(user_id)

    def after_commit() -> None:
        try:
            _new_generation(user_id)
        except Exception:  # committed already; an entry read meanwhile lives <= ENTRY_SECONDS
            logger.error("auth cache unreachable after a session or user change of %s", user_id, exc_info=True)

    transaction.on_commit(after_commit)


def user_or_session_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save / post_delete receiver for User and LoginSession (connected in accounts.apps)."""
    auth_state_changed(instance.pk if sender._meta.model_name == "user" else instance.user_id)

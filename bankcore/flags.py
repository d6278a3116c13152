"""Flags shared by every process of the bank (API, workers, beat), kept in Redis.

One Redis client per process, kept open: a flag check is one round trip. (Django's
cache builds a client object per call, which cost more than the round trip itself on
the transfer path.) Without REDIS_URL nothing is shared: every flag reads as clear,
so `flag_raise` always answers True (the caller does the work itself).
"""

from __future__ import annotations

import redis
from django.conf import settings

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        # redis-py's pool notices a fork and reconnects in the child.
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def _key(name: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'bankcore')}:flag:{name}"


def flag_raise(name: str, *, ttl_seconds: int) -> bool:
    """Raise the flag unless it is up already (SET NX with expiry). True if this call raised it."""
    if not settings.REDIS_URL:
        return True
    return bool(_redis().set(_key(name), b"1", nx=True, ex=ttl_seconds))


def flag_lower(name: str) -> None:
    if settings.REDIS_URL:
        _redis().delete(_key(name))

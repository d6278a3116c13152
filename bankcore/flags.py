"""Flags shared by every process of the bank (API, workers, beat), kept in Redis.

Through the process's one Redis client (bankcore/redis_client.py): a flag check is one
round trip. Without REDIS_URL nothing is shared: every flag reads as clear, so
`flag_raise` always answers True (the caller does the work itself).
"""

from __future__ import annotations

from django.conf import settings

from bankcore.redis_client import shared_redis


def _key(name: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'bankcore')}:flag:{name}"


def flag_raise(name: str, *, ttl_seconds: int) -> bool:
    """Raise the flag unless it is up already (SET NX with expiry). True if this call raised it."""
    if not settings.REDIS_URL:
        return True
    return bool(shared_redis().set(_key(name), b"1", nx=True, ex=ttl_seconds))


def flag_lower(name: str) -> None:
    if settings.REDIS_URL:
        shared_redis().delete(_key(name))

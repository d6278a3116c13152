"""The process's one client to the bank's Redis (settings.REDIS_URL), kept open.

For the hot paths that talk to Redis directly (bankcore/flags.py, the live-session cache in
accounts/services/auth_cache.py): Django's cache builds a redis-py client object per call,
which cost more CPU than the round trip itself on the transfer path.
"""

from __future__ import annotations

import redis
from django.conf import settings

_client: redis.Redis | None = None


def shared_redis() -> redis.Redis:
    """The client, made on first use (redis-py's pool notices a fork and reconnects in the child)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def forget_shared_redis() -> None:
    """Drop the client, so the next use connects to settings.REDIS_URL afresh (tests change it)."""
    global _client
    _client = None

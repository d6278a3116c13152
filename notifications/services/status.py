"""The status banner's cache (read by notifications.selectors.service_status)."""

from __future__ import annotations

import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)

STATUS_CACHE_KEY = "notifications:status:v1"


def status_cache_clear() -> None:
    try:
        cache.delete(STATUS_CACHE_KEY)
    except Exception:  # noqa: BLE001 - a cache outage only delays the banner by the TTL
        logger.warning("could not clear the status cache")

"""The client's IP address: derived once per request, from the socket and the proxies we trust.

Every use (throttles, audit rows, login sessions and new-login alerts) reads this one value,
so a client cannot pick the address it is counted, recorded or reported under.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings

_CACHE_KEY = "bankcore.client_ip"


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: Any) -> str:
    """The address the request came from, as far as it can be trusted.

    TRUSTED_PROXY_COUNT = 0 (the default): the socket address; X-Forwarded-For is the
    client's own say and is ignored. With N trusted proxies in front, each appending the
    address it was connected from, the client is the N-th entry of X-Forwarded-For from the
    right; anything further left was written by the client. A header with fewer entries, or
    an entry that is not an IP address, falls back to the socket address.
    """
    meta = request.META
    cached = meta.get(_CACHE_KEY)
    if cached is not None:
        return str(cached)
    address = meta.get("REMOTE_ADDR", "") or ""
    trusted = int(settings.TRUSTED_PROXY_COUNT)
    if trusted > 0:
        hops = [hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= trusted:
            address = _valid_ip(hops[-trusted]) or address
    meta[_CACHE_KEY] = address
    return address

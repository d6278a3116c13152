"""The client's IP address, derived in one place for throttles, audit rows and alerts.

For now the socket address: a value the client cannot choose. Deployments behind
proxies get a trusted-proxy count here (TRUSTED_PROXY_COUNT, issue 11 point 4);
callers keep calling `client_ip(request)`.
"""

from __future__ import annotations

from typing import Any


def client_ip(request: Any) -> str:
    """The address of the peer that opened the connection (REMOTE_ADDR); "" when unknown."""
    return str(request.META.get("REMOTE_ADDR") or "")

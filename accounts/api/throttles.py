"""Rate limits for the authentication endpoints, counted in the shared cache (Redis).

Two scopes: per client IP (`auth_ip`) and per account (`auth_user`: the e-mail or
device being signed in to, or the signed-in user). They slow down guessing and
spraying; the lockout in the database is the security boundary, not these.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from bankcore.api.client_ip import client_ip


class _LiveRateThrottle(SimpleRateThrottle):
    scope: str

    def get_rate(self) -> str | None:
        # Read the rates now, not at import, so settings can change them (tests, reloads).
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope)

    def get_ident(self, request: Any) -> str:
        # Not DRF's: it trusts X-Forwarded-For unless NUM_PROXIES is set, and is a second source.
        return client_ip(request)


class AuthIPThrottle(_LiveRateThrottle):
    scope = "auth_ip"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AuthUserThrottle(_LiveRateThrottle):
    scope = "auth_user"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            data = request.data if isinstance(request.data, dict) else {}
            subject = data.get("email") or data.get("device_id") or data.get("mfa_token")
            if not isinstance(subject, str) or not subject:
                return None
            ident = "subject:" + hashlib.sha256(subject.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


AUTH_THROTTLES = [AuthIPThrottle, AuthUserThrottle]

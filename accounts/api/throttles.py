"""Rate limits for the authentication endpoints, counted in the shared cache (Redis).

Two scopes: per client IP (`auth_ip`) and per account (`auth_user`: the e-mail or
device being signed in to, or the signed-in user). They slow down guessing and
spraying; the lockout in the database is the security boundary, not these.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from bankcore.api.client_ip import client_ip

logger = logging.getLogger(__name__)


class _LiveRateThrottle(SimpleRateThrottle):
    scope: str

    def allow_request(self, request: Any, view: Any) -> bool:
        # While Redis cannot be reached nothing is counted and the attempt goes through: the
        # lockout in the database still guards the accounts, and refusing (500) every sign-in and
        # token refresh for the outage would lock every customer out of the app.
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            logger.warning("rate limit %s not counted: the cache is unreachable (%s)", self.scope, exc)
            return True

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
            ident = subject_ident(subject)
        return self.cache_format % {"scope": self.scope, "ident": ident}


def subject_ident(subject: str) -> str:
    """The per-account throttle identity of an e-mail (or device id): case- and space-insensitive."""
    return "subject:" + hashlib.sha256(subject.strip().lower().encode()).hexdigest()


AUTH_THROTTLES = [AuthIPThrottle, AuthUserThrottle]


class _AdminLoginIPThrottle(AuthIPThrottle):
    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class _AdminLoginUserThrottle(AuthUserThrottle):
    def get_cache_key(self, request: Any, view: Any) -> str | None:
        email = request.POST.get("username")
        if not isinstance(email, str) or not email.strip():
            return None
        return self.cache_format % {"scope": self.scope, "ident": subject_ident(email)}


def admin_login_wait(request: HttpRequest) -> float | None:
    """Count one staff sign-in attempt (a POST to the admin's login page) against the API's budgets.

    The same scopes, rates and Redis keys as the API's login (`auth_ip` per client IP,
    `auth_user` per e-mail), so guesses spread over the API and the admin share one
    budget. Returns the seconds to wait when over either budget, else None.
    """
    waits = []
    for throttle in (_AdminLoginIPThrottle(), _AdminLoginUserThrottle()):
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]  # reads only META and POST
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None

"""Request-level conventions: X-Request-ID on every response, a cap on body size, the app
version check (426), and the browser-only middleware that /api/ requests skip."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import django_prometheus.middleware
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django_otp.middleware import OTPMiddleware

from bankcore.api.client_ip import client_ip
from bankcore.api.errors import error_response
from bankcore.api.logging import RequestMeta, request_meta_var

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIDMiddleware:
    """Echo a sane client X-Request-ID or make one; expose it to logs and the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        meta = RequestMeta(
            request_id=request_id,
            ip=client_ip(request) or None,
            user_agent=request.headers.get("User-Agent", "")[:512],
        )
        # Not reset on the way out: Django logs the response after the middleware chain
        # returns, and that line should carry the id too. The next request overwrites it.
        request_meta_var.set(meta)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class BodySizeLimitMiddleware:
    """Refuse bodies over API_MAX_BODY_BYTES with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "invalid_request", "Content-Length is not a number.")
        if length > settings.API_MAX_BODY_BYTES:
            return error_response(
                413,
                "request_too_large",
                "The request body is too large.",
                {"max_bytes": settings.API_MAX_BODY_BYTES},
            )
        return self.get_response(request)


API_PATH_PREFIX = "/api/"

# What an app too old for everything else may still call: its config (to learn it must update),
# the service status, and the token refresh (so the update does not also log the customer out).
APP_VERSION_EXEMPT_PATHS = frozenset({"/api/v1/app-config", "/api/v1/status", "/api/v1/auth/token/refresh"})


class AppVersionMiddleware:
    """426 `upgrade_required` (with `details.store_url`) for an API request whose `X-App-Version`
    is below the minimum of its `X-App-Platform`, except APP_VERSION_EXEMPT_PATHS.

    Requests without both headers (scripts, partners, the admin), or from a platform without a
    policy, pass: the check protects old apps from a changed API, it is no access control. A
    version that is not a version number answers 400 `invalid_request`. The policy comes from
    a per-process copy refreshed every few seconds (bankcore.app_config), so this costs no query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(API_PATH_PREFIX) and path.rstrip("/") not in APP_VERSION_EXEMPT_PATHS:
            platform = request.headers.get("X-App-Platform", "").strip().lower()
            version = request.headers.get("X-App-Version", "").strip()
            if platform and version:
                from bankcore.api.exceptions import BankError
                from bankcore.app_config import upgrade_check

                try:
                    upgrade_check(platform=platform, version=version)
                except BankError as exc:
                    return error_response(exc.status_code, exc.code, exc.message, exc.details)
        return self.get_response(request)


class _BrowserOnly:
    """Skip this middleware for /api/ requests.

    The API authenticates every request with a bearer JWT and answers JSON, so sessions,
    the session user, the OTP-verified user and messages are for the admin's browser pages
    only; on the API they were work per request that nothing read (DRF sets the request's
    user when it authenticates). CSRF protection is left as it was for every path.
    """

    get_response: Any  # set by the middleware class it is mixed into

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PATH_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    """Django's sessions, for the admin's pages only."""


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    """The session user, for the admin's pages only (DRF authenticates API requests)."""


class BrowserOTPMiddleware(_BrowserOnly, OTPMiddleware):
    """django-otp's verified user, for the admin's pages only."""


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    """Flash messages, for the admin's pages only."""


class PrometheusAfterMiddleware(django_prometheus.middleware.PrometheusAfterMiddleware):
    """django_prometheus's per-request metrics, unchanged, with each labelled child looked up once.

    `metric.labels(...)` validates and converts the labels and takes a lock on every call;
    a request makes about ten of them. The children are the same objects every time, so
    they are kept in a dict (bounded like the label space itself: view x method x status).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        self._children: dict[tuple[int, tuple[tuple[str, Any], ...]], Any] = {}

    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: Any) -> Any:
        if not labels:
            return metric
        key = (id(metric), tuple(labels.items()))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child

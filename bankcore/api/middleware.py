"""Request-level conventions: X-Request-ID on every response, a cap on body size."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

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
            ip=request.META.get("REMOTE_ADDR"),
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

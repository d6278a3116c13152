"""The one error shape: {"error": {"code", "message", "details"}}.

`exception_handler` is DRF's EXCEPTION_HANDLER; `handler404`/`handler500` cover Django's
own errors so nothing under /api/ ever answers HTML or a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from bankcore.api.exceptions import BankError

logger = logging.getLogger(__name__)

# DRF exception class -> our stable code.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ParseError: "invalid_request",
    drf.ValidationError: "invalid_request",
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "not_authenticated",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "throttled",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status_code: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def _flatten(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _flatten(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_flatten(item) for item in value]
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, BankError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if not isinstance(exc, drf.APIException):
        return None  # a bug: Django's handler500 answers with the error shape

    set_rollback()
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
    details: dict[str, Any] = {}
    if isinstance(exc, drf.ValidationError):
        message = "The request is invalid."
        details = _validation_details(exc.detail)
    elif isinstance(exc, drf.ParseError):
        message = f"Malformed request body: {exc.detail}"
    else:
        message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else str(exc.default_detail)
        if isinstance(exc.detail, dict):
            details = _flatten(exc.detail)
    if isinstance(exc, drf.Throttled):
        wait = getattr(exc, "wait", None)
        details = {"retry_after": int(wait) if wait is not None else None}
    if code is None:
        code = getattr(exc, "default_code", "error")
    return Response(error_body(code, str(message), details), status=exc.status_code, headers=headers)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return error_response(404, "not_found", "No such resource.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_response(500, "internal_error", "Something went wrong on our side. It has been logged.")
    from django.views.defaults import server_error

    return server_error(request)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return error_response(400, "invalid_request", "Bad request.")
    from django.views.defaults import bad_request

    return bad_request(request, exception)  # type: ignore[arg-type]


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return error_response(403, "permission_denied", "Forbidden.")
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)  # type: ignore[arg-type]

"""The one error shape: {"error": {"code", "message", "details"}}.

`exception_handler` is DRF's EXCEPTION_HANDLER; `handler404`/`handler500` cover Django's
own errors so nothing under /api/ ever answers HTML or a stack trace.

A database that cannot serve right now (down, restarting, failing over, a connection lost
mid-request, a lock or statement timeout) is no bug of ours: it answers 503 `unavailable`
with Retry-After (`database_unavailable_cause` says which errors), from a view through
`exception_handler` and from middleware or anything else through `handler500`, logged once
as a WARNING and counted in `bankcore_db_unavailable_total`. Django closes the errored
connection when the request ends, so the next request connects afresh.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import psycopg2
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, InternalError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import Counter
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


# SQLSTATEs that mean "the database cannot serve this now; retry shortly". An error without a
# SQLSTATE (connection refused, server closed the connection, connect timeout, a connection
# psycopg2 already knows is closed) is one too. Any other database error stays a 500: a bug.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception (lost, refused, protocol)
        "53",  # insufficient resources: too many connections, out of memory, disk full
    }
)
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: server stopping, or pg_terminate_backend
        "57P02",  # crash_shutdown: another backend crashed, the server restarts
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "57P05",  # idle_session_timeout
        "25006",  # read_only_sql_transaction: a write reached a standby (failover in progress)
        "25P03",  # idle_in_transaction_session_timeout ended the connection
        "55P03",  # lock_not_available: lock_timeout
        "57014",  # query_canceled: statement_timeout
        "40001",  # serialization_failure ) retried in-request (bankcore.db.retry); if one still
        "40P01",  # deadlock_detected     ) escapes, the client's retry is the right answer
    }
)

_CONNECTION_ERRORS = (OperationalError, InterfaceError, psycopg2.OperationalError, psycopg2.InterfaceError)

DB_UNAVAILABLE = Counter(
    "bankcore_db_unavailable",
    "Requests answered 503 unavailable because the database could not serve them, by cause "
    "(a SQLSTATE, or `connection` for a connection that failed or was lost without one).",
    ["cause"],
)


def database_unavailable_cause(exc: BaseException | None) -> str | None:
    """The cause (a SQLSTATE, or "connection") if `exc` means the database is unavailable, else None.

    Follows the chain, since Django wraps psycopg2's errors and callers re-raise with `from`.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (OperationalError, InterfaceError, InternalError, psycopg2.Error)):
            pgcode = getattr(exc.__cause__, "pgcode", None) or getattr(exc, "pgcode", None)
            if pgcode is None:
                if isinstance(exc, _CONNECTION_ERRORS):
                    return "connection"
            elif pgcode in _UNAVAILABLE_SQLSTATES or pgcode[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
                return str(pgcode)
            return None
        exc = exc.__cause__ or exc.__context__
    return None


def retry_after_seconds() -> int:
    return int(settings.DATABASE_UNAVAILABLE_RETRY_AFTER)


def _unavailable_body(request: Any) -> dict[str, Any]:
    return error_body(
        "unavailable",
        "The service is temporarily unavailable. Please retry shortly (with the same Idempotency-Key).",
        {"retry_after": retry_after_seconds(), "request_id": getattr(request, "request_id", None)},
    )


def _note_unavailable(request: Any, cause: str, exc: BaseException, response: HttpResponse) -> HttpResponse:
    """Retry-After, one WARNING naming the cause, the metric; and no second (ERROR) line from Django."""
    response["Retry-After"] = str(retry_after_seconds())
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    logger.warning(
        "database unavailable (%s): %s %s answered 503: %s",
        cause,
        getattr(request, "method", ""),
        getattr(request, "path", ""),
        first_line,
        extra={"db_unavailable_cause": cause},
    )
    DB_UNAVAILABLE.labels(cause=cause).inc()
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


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
        bank_headers = {"Retry-After": str(retry_after_seconds())} if exc.status_code == 503 else None
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=bank_headers)
    cause = database_unavailable_cause(exc)
    if cause is not None:
        set_rollback()
        request = context.get("request")
        return _note_unavailable(request, cause, exc, Response(_unavailable_body(request), status=503))  # type: ignore[return-value]
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
    # Called while Django handles the exception (a middleware's, or a view's DRF did not map).
    exc = sys.exc_info()[1]
    cause = database_unavailable_cause(exc)
    if cause is not None and exc is not None:
        if _is_api(request):
            response: HttpResponse = JsonResponse(_unavailable_body(request), status=503)
        else:
            response = HttpResponse(
                "Service temporarily unavailable; please retry shortly.\n", status=503, content_type="text/plain"
            )
        return _note_unavailable(request, cause, exc, response)
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

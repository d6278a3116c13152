"""OpenAPI: every operation declares every error status it can answer, with a typed body.

App teams generate their clients from /api/schema/, so an error that is not in the schema is
an error their app cannot parse. Two sources, one each:

- What every operation shares comes from the request pipeline itself (`BankAutoSchema`): 400
  (any malformed request), 401 where authentication is required, 404 where the path names an
  object, 406 where the Accept header is negotiated, 413/415 where there is a body, 426 outside
  the app-version check's exempt paths, 429 where the view is throttled, 503 everywhere (a
  database outage; `maintenance` too for the writes maintenance mode refuses), and the
  Idempotency-Key errors of every `@idempotent` view.
- What a view's services refuse is declared next to the view with `@raises(InsufficientFunds,
  ...)`, naming the exception classes; their `status_code`, `code` and `default_message` give
  the status, the `code` enum and the description, so nothing is written twice.

Each status's body is the one error shape with `error.code` as an enum of exactly the codes this
operation can answer there (component `<Code>Error` for one code, `<A>Or<B>Error` for two or
three, `<OperationId><status>Error` for more).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework.fields import CharField
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny

from bankcore.api.exceptions import BankError, ServiceUnavailable
from bankcore.api.maintenance import SAFE_METHODS, WRITES_ALLOWED_DURING_MAINTENANCE
from bankcore.api.middleware import APP_VERSION_EXEMPT_PATHS
from bankcore.api.pagination import KeysetPagination
from bankcore.app_config import UpgradeRequired
from bankcore.idempotency import (
    _KEY_SYNTAX,
    IdempotencyInProgress,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    idempotent,
)
from bankcore.idempotency import HEADER as IDEMPOTENCY_HEADER

F = TypeVar("F", bound=Callable[..., Any])

# Statuses with a reason phrase for the descriptions (and nothing else: the codes carry the meaning).
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    426: "Upgrade Required",
    429: "Too Many Requests",
    503: "Service Unavailable",
}

# Codes the pipeline answers (DRF, the middleware, bankcore.api.errors), with what they mean.
_PIPELINE_CODES = {
    "invalid_request": "The request is malformed; `details` names each field's problems.",
    "not_authenticated": "No, an expired or a revoked access token: log in (or refresh) again.",
    "not_found": "No such object (also for another customer's object).",
    "not_acceptable": "The Accept header names no type this endpoint answers.",
    "request_too_large": "The body exceeds the server's limit (`details.max_bytes`).",
    "unsupported_media_type": "Send the body as application/json.",
    "throttled": "Too many requests; retry after `Retry-After` seconds (`details.retry_after`).",
    "maintenance": "The bank is in maintenance; changes are paused (`details.until`, `Retry-After`). Reads work.",
}

# One code per status from the pipeline; the maintenance code joins 503 only for refused writes.
_PIPELINE_STATUS = {
    "invalid_request": 400,
    "not_authenticated": 401,
    "not_found": 404,
    "not_acceptable": 406,
    "request_too_large": 413,
    "unsupported_media_type": 415,
    "throttled": 429,
    "maintenance": 503,
}

# What @idempotent adds to a view (bankcore.idempotency); its wrapper's code object identifies it.
IDEMPOTENCY_ERRORS: tuple[type[BankError], ...] = (IdempotencyKeyMissing, IdempotencyKeyReused, IdempotencyInProgress)
_IDEMPOTENT_WRAPPER_CODE = idempotent(lambda view, request: None).__code__  # type: ignore[arg-type,return-value]

_IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": IDEMPOTENCY_HEADER,
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _KEY_SYNTAX.pattern},
    "description": "1-255 printable ASCII characters. The same key with the same body within 24 h replays the "
    "first response (header `Idempotent-Replayed: true`); with another body: 422 `idempotency_key_reused`; "
    "while the first is still running: 409 `idempotency_in_progress`.",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
_HAS_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


# Query parameters whose syntax the views check, so the schema says what they accept.
MONTH = {"type": "string", "pattern": r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$", "example": "2026-03"}
_DAY = r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?"
DATE_OR_DATETIME = {"type": "string", "pattern": f"^({_DAY}([T ]{_TIME})?)?$", "example": "2026-03-01"}


# A positive decimal string with at most 3 decimals (any currency; per-currency rules narrow it).
POSITIVE_AMOUNT = r"^([1-9][0-9]{0,15}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$"
# DRF's CharField refuses NUL in every request string (ProhibitNullCharactersValidator).
_NO_NUL = r"^[^\u0000]*$"


def page_parameters() -> list[OpenApiParameter]:
    """`cursor` and `limit` as KeysetPagination declares and checks them (for views that paginate by hand)."""
    return [
        OpenApiParameter(p["name"], p["schema"], description=p["description"])
        for p in KeysetPagination().get_schema_operation_parameters(None)
    ]


def raises(*errors: type[BankError]) -> Callable[[F], F]:
    """Declare the domain errors a view method can answer (besides what every operation shares).

    Put it on the method next to `@extend_schema`; name the exception classes its services raise.
    """

    def decorator(func: F) -> F:
        func.api_errors = (*getattr(func, "api_errors", ()), *errors)  # type: ignore[attr-defined]
        return func

    return decorator


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", text) if part)


class BankAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses (see the module docstring)."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        if self._is_idempotent():
            # Declared here for every @idempotent view, with the syntax bankcore.idempotency checks.
            parameters = [
                p
                for p in operation.get("parameters", [])
                if not (p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER)
            ]
            operation["parameters"] = [_IDEMPOTENCY_PARAMETER, *parameters]
        responses = operation["responses"]
        for status_code, codes in sorted(self.error_codes(path, method, "requestBody" in operation).items()):
            name = self._component_name(operation["operationId"], status_code, codes)
            registry.register_on_missing(
                ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=_error_schema(codes))
            )
            response: dict[str, Any] = {
                "description": _description(status_code, codes),
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            }
            if status_code in (429, 503):
                response["headers"] = _RETRY_AFTER
            responses[str(status_code)] = response
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _map_serializer(self, serializer: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        """Plus the cross-field rules an input serializer states in `openapi_request_constraints()`
        (e.g. an amount's decimals depend on its currency), so the schema is as strict as validate()."""
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and getattr(serializer, "openapi_closed", False):
            schema["additionalProperties"] = False  # the view refuses keys it does not know (400)
        constraints = getattr(serializer, "openapi_request_constraints", None)
        if direction == "request" and constraints is not None:
            # Under allOf, never at the top: a top-level anyOf/oneOf makes generated clients' request
            # models unions of anonymous types.
            rules = constraints()
            if rules:
                schema["allOf"] = rules
        return schema

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        """A PATCH whose view validates the body whole (`openapi_whole_patch` on the input) keeps its
        required fields: drf-spectacular otherwise documents every PATCH body as partial."""
        if self.method == "PATCH" and getattr(serializer, "openapi_whole_patch", False):
            self.method = "PUT-like PATCH"  # anything but PATCH: the body is not made partial
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and isinstance(field, CharField) and schema.get("type") == "string":
            schema.setdefault("pattern", _NO_NUL)
        return schema

    def _view_method(self) -> Any:
        return getattr(self.view, self.method.lower(), None)

    def _is_idempotent(self) -> bool:
        return getattr(self._view_method(), "__code__", None) is _IDEMPOTENT_WRAPPER_CODE

    def declared_errors(self) -> tuple[type[BankError], ...]:
        errors: tuple[type[BankError], ...] = tuple(getattr(self._view_method(), "api_errors", ()))
        if self._is_idempotent():
            errors += IDEMPOTENCY_ERRORS
        return errors

    def error_codes(self, path: str, method: str, has_body: bool) -> dict[int, dict[str, list[str]]]:
        """{status: {code: [descriptions]}} of every error this operation can answer."""
        found: dict[int, dict[str, list[str]]] = {}

        def add(status_code: int, code: str, description: str) -> None:
            descriptions = found.setdefault(status_code, {}).setdefault(code, [])
            if description not in descriptions:
                descriptions.append(description)

        def pipeline(code: str) -> None:
            add(_PIPELINE_STATUS[code], code, _PIPELINE_CODES[code])

        view = self.view
        pipeline("invalid_request")  # a malformed body, query, header or Content-Length
        if not all(isinstance(permission, AllowAny) for permission in view.get_permissions()):
            pipeline("not_authenticated")
        if _HAS_PATH_PARAMETER.search(path):
            pipeline("not_found")
        if type(view.get_content_negotiator()).select_renderer is DefaultContentNegotiation.select_renderer:
            pipeline("not_acceptable")
        if has_body:
            pipeline("request_too_large")
            pipeline("unsupported_media_type")
        if path.rstrip("/") not in APP_VERSION_EXEMPT_PATHS:
            add(UpgradeRequired.status_code, UpgradeRequired.code, UpgradeRequired.default_message)
        if view.get_throttles():
            pipeline("throttled")
        # A database outage answers 503 `unavailable` on every path (bankcore.api.errors).
        add(ServiceUnavailable.status_code, ServiceUnavailable.code, ServiceUnavailable.default_message)
        if method.upper() not in SAFE_METHODS and not WRITES_ALLOWED_DURING_MAINTENANCE.match(path):
            pipeline("maintenance")
        for error in self.declared_errors():
            add(error.status_code, error.code, error.default_message)
        return found

    @staticmethod
    def _component_name(operation_id: str, status_code: int, codes: Iterable[str]) -> str:
        ordered = sorted(codes)
        if len(ordered) <= 3:
            return "Or".join(_camel(code) for code in ordered) + "Error"
        return f"{_camel(operation_id)}{status_code}Error"


def _error_schema(codes: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The one error shape; `code` is one of the codes this response can carry.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(codes)},
                    "message": {"type": "string", "description": "Human text, for logs; show your own."},
                    "details": {
                        "type": "object",
                        "additionalProperties": True,
                        "description": "Per-field messages for `invalid_request`; otherwise code-specific.",
                    },
                },
            }
        },
    }


def _description(status_code: int, codes: dict[str, list[str]]) -> str:
    lines = [f"{_REASONS.get(status_code, 'Error')}:"]
    for code in sorted(codes):
        lines.append(f"- `{code}`: {' / '.join(codes[code])}")
    return "\n".join(lines)

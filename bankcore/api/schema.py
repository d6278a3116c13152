"""OpenAPI post-processing: every operation documents the shared error shape."""

from __future__ import annotations

from typing import Any

_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_COMMON = {
    "400": "Malformed request (`invalid_request`, with per-field `details`).",
    "401": "`not_authenticated` / `invalid_credentials` / `mfa_required`.",
    "403": "`permission_denied` / `account_locked` / `step_up_required`.",
    "404": "`not_found` (also for another customer's object).",
    "429": "`throttled`; see `Retry-After`.",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status_code, description in _COMMON.items():
                operation["responses"].setdefault(status_code, {"description": description, "content": _ERROR_REF})
    return result

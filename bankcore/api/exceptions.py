"""Domain errors. Each carries its API code and status, mapped once by the exception handler.

Services raise these (or subclasses in each app's exceptions.py); views never build
error responses by hand.
"""

from __future__ import annotations

from typing import Any


class BankError(Exception):
    """An expected failure with a stable API code."""

    status_code = 400
    code = "invalid_request"
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class BusinessRuleViolation(BankError):
    """422: the request was well formed but a business rule refuses it."""

    status_code = 422
    code = "business_rule_violation"


class NotFound(BankError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(BankError):
    status_code = 409
    code = "conflict"


class PermissionDenied(BankError):
    status_code = 403
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class ServiceUnavailable(BankError):
    status_code = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable."

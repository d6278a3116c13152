"""Domain errors of notifications, each with its API code."""

from __future__ import annotations

from bankcore.api.exceptions import BankError, BusinessRuleViolation, NotFound


class InvalidNotificationRequest(BankError):
    """400 invalid_request with per-field details; nothing was changed."""


class NotificationNotFound(NotFound):
    default_message = "No such notification."


class IncidentNotFound(NotFound):
    default_message = "No such incident."


class IncidentAlreadyResolved(BusinessRuleViolation):
    code = "incident_resolved"
    default_message = "The incident is already resolved."

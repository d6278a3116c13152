"""Staff permissions and the maker-checker rule, checked by the services staff actions call.

The admin offers an action only to staff who hold its permission; the services check
again, so a hand-made request, a shell or a future screen cannot skip the rule.
"""

from __future__ import annotations

from typing import Any

from bankcore.api.exceptions import BusinessRuleViolation, PermissionDenied


class StaffPermissionDenied(PermissionDenied):
    default_message = "Your staff role does not allow this action."


class MakerCheckerViolation(BusinessRuleViolation):
    code = "maker_checker"
    default_message = "This must be approved by a different staff member than the one who proposed it."


class RequestNotPending(BusinessRuleViolation):
    code = "request_not_pending"
    default_message = "This request has already been decided."


def has_staff_permission(actor: Any, permission: str) -> bool:
    """Whether `actor` is an active staff member holding `permission` ("app_label.codename")."""
    return bool(getattr(actor, "is_active", False) and getattr(actor, "is_staff", False) and actor.has_perm(permission))


def require_staff_permission(*, actor: Any, permission: str) -> None:
    """Raise StaffPermissionDenied (403 permission_denied) unless has_staff_permission(actor, permission)."""
    if not has_staff_permission(actor, permission):
        raise StaffPermissionDenied(details={"permission": permission})

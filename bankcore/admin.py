"""Staff admin pieces shared by every app, and the audit log's screen."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from bankcore.models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the services write: staff see them, never add, edit or delete them here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows the services write, shown under their parent: never added, edited or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Who did what to which object, when and from where; hash-chained (manage.py verify_audit_log).

    The search is exact on indexed columns (target id, actor id): the log grows with every
    money movement, and the admin's usual case-insensitive LIKE would scan all of it.
    """

    list_display = ("id", "created_at", "actor_label", "action", "target_type", "target_id", "ip", "request_id")
    search_fields = ("target_id",)  # enables the search box; the lookup itself is below
    search_help_text = "An exact id: what happened to that object (transaction, account, user...) or by that user."
    ordering = ("-id",)
    show_full_result_count = False
    readonly_fields = [field.name for field in AuditEvent._meta.fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q(target_id=term)
        with contextlib.suppress(ValueError):  # else it is not a user id
            matches |= Q(actor_id=uuid.UUID(term))
        return queryset.filter(matches), False

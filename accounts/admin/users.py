"""Admin for customers and staff (identity). Every action goes through a service and is audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Device, LoginSession, User
from accounts.services.devices import device_revoke
from accounts.services.lockout import lock_account, unlock_account
from accounts.services.staff import staff_reset_two_factor, staff_revoke_devices
from bankcore.admin import ReadOnlyAdmin, ReadOnlyInline
from bankcore.audit import audit_record


class _AuditedAdmin(admin.ModelAdmin):
    """Staff edits made through admin forms land in the audit chain, not only Django's LogEntry."""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        audit_record(action="staff.admin_added", actor=request.user, target=obj, details={"change": str(message)})
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        audit_record(action="staff.admin_changed", actor=request.user, target=obj, details={"change": str(message)})
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            audit_record(action="staff.admin_deleted", actor=request.user, target=obj)
        return super().log_deletions(request, queryset)


class DeviceInline(ReadOnlyInline):
    model = Device
    fields = ("name", "platform", "app_version", "created_at", "last_login_at", "revoked_at")
    readonly_fields = fields


@admin.register(User)
class UserAdmin(_AuditedAdmin):
    list_display = ["email", "full_name", "phone", "is_staff", "is_active", "locked_until", "last_login"]
    list_filter = ["is_staff", "is_active", "email_verified"]
    search_fields = ["email", "full_name", "phone"]
    ordering = ["email"]
    fieldsets = [
        (None, {"fields": ["email", "full_name", "phone", "notification_email", "notification_phone"]}),
        ("Verification", {"fields": ["email_verified", "phone_verified"]}),
        ("Security", {"fields": ["is_active", "failed_auth_attempts", "locked_until", "lock_count", "last_login"]}),
        ("Staff", {"fields": ["is_staff", "is_superuser", "groups", "user_permissions", "date_joined"]}),
    ]
    readonly_fields = ["email", "failed_auth_attempts", "locked_until", "lock_count", "last_login", "date_joined"]
    filter_horizontal = ["groups", "user_permissions"]
    inlines = [DeviceInline]
    actions = ["lock_users", "unlock_users", "reset_two_factor", "revoke_all_devices"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers register in the app; staff accounts: manage.py createsuperuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a bank keeps its customers' records; deactivate instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:  # type: ignore[union-attr]
            fields += ["is_staff", "is_superuser", "groups", "user_permissions"]
        return fields

    @admin.action(description="Lock sign-in for 24 hours")
    def lock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.order_by("pk"):
            lock_account(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Locked {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Unlock sign-in")
    def unlock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.order_by("pk"):
            unlock_account(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Unlocked {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Reset two-factor authentication (TOTP and backup codes)")
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.order_by("pk"):
            staff_reset_two_factor(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Two-factor reset for {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Revoke all devices and end all sessions")
    def revoke_all_devices(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        actor = request.user
        assert isinstance(actor, User)
        revoked = sum(staff_revoke_devices(user=user, actor=actor) for user in queryset.order_by("pk"))
        self.message_user(request, f"Revoked {revoked} device(s).", messages.SUCCESS)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "platform", "app_version", "created_at", "last_login_at", "revoked_at"]
    list_filter = ["platform"]
    search_fields = ["user__email", "name"]
    readonly_fields = [
        "user",
        "name",
        "platform",
        "app_version",
        "public_key",
        "push_token",
        "created_at",
        "last_login_at",
        "revoked_at",
    ]
    actions = ["revoke_devices"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke device (ends its sessions)")
    def revoke_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            device_revoke(device=device, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, "Devices revoked.", messages.SUCCESS)


@admin.register(LoginSession)
class LoginSessionAdmin(ReadOnlyAdmin):
    list_display = ["user", "method", "device", "ip", "created_at", "last_refreshed_at", "revoked_at", "revoked_reason"]
    list_filter = ["method", "revoked_reason"]
    search_fields = ["user__email", "ip"]
    readonly_fields = [f.name for f in LoginSession._meta.fields]

"""Admin for customers and staff (identity). Every action needs its permission, goes through a
service and is audited; a two-factor reset needs a second staff member (maker-checker)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from accounts.models import Device, LoginSession, TwoFactorResetRequest, User
from accounts.services.devices import device_revoke
from accounts.services.lockout import lock_account, unlock_account
from accounts.services.staff import (
    staff_revoke_devices,
    two_factor_reset_approve,
    two_factor_reset_propose,
    two_factor_reset_reject,
)
from bankcore.admin import ReadOnlyAdmin, ReadOnlyInline, ask_reason, staff_action
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from bankcore.permissions import has_staff_permission


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
    actions = ["lock_users", "unlock_users", "propose_two_factor_reset", "revoke_all_devices"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers register in the app; staff accounts: manage.py createsuperuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a bank keeps its customers' records; deactivate instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:  # type: ignore[union-attr]
            fields += ["is_staff", "is_superuser", "groups", "user_permissions"]
        return fields

    def has_lock_user_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "accounts.lock_user")

    def has_reset_two_factor_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "accounts.reset_two_factor")

    def has_revoke_devices_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "accounts.revoke_devices")

    @staff_action(permission="accounts.lock_user", description="Lock sign-in for 24 hours")
    def lock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.order_by("pk"):
            lock_account(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Locked {queryset.count()} user(s).", messages.SUCCESS)

    @staff_action(permission="accounts.lock_user", description="Unlock sign-in")
    def unlock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset.order_by("pk"):
            unlock_account(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Unlocked {queryset.count()} user(s).", messages.SUCCESS)

    @staff_action(
        permission="accounts.reset_two_factor",
        description="Propose a two-factor reset (TOTP and backup codes; another staff member approves)",
    )
    def propose_two_factor_reset(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        reason, page = ask_reason(
            self,
            request,
            queryset,
            title="Propose a two-factor reset",
            help_text="Why, and how you checked the customer's identity. A second staff member approves.",
        )
        if reason is None:
            return page
        for user in queryset.order_by("pk"):
            try:
                two_factor_reset_propose(user=user, reason=reason, actor=request.user)  # type: ignore[arg-type]
            except BankError as exc:
                self.message_user(request, f"{user}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{user}: two-factor reset proposed for approval.", messages.SUCCESS)
        return None

    @staff_action(permission="accounts.revoke_devices", description="Revoke all devices and end all sessions")
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

    def has_revoke_devices_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "accounts.revoke_devices")

    @staff_action(permission="accounts.revoke_devices", description="Revoke device (ends its sessions)")
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


@admin.register(TwoFactorResetRequest)
class TwoFactorResetRequestAdmin(ReadOnlyAdmin):
    """Proposed two-factor resets (from the users' screen); a different staff member approves them here."""

    list_display = ["created_at", "user", "reason", "status", "proposed_by", "decided_by", "decided_at"]
    list_filter = ["status"]
    search_fields = ["user__email"]
    readonly_fields = [f.name for f in TwoFactorResetRequest._meta.fields]
    actions = ["approve_resets", "reject_resets"]

    def has_approve_two_factor_reset_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "accounts.approve_two_factor_reset")

    @staff_action(
        permission="accounts.approve_two_factor_reset",
        description="Approve (checker): reset the selected users' two-factor authentication",
    )
    def approve_resets(self, request: HttpRequest, queryset: QuerySet[TwoFactorResetRequest]) -> None:
        for proposal in queryset.order_by("pk"):
            try:
                two_factor_reset_approve(request_id=proposal.pk, actor=request.user)  # type: ignore[arg-type]
            except BankError as exc:
                self.message_user(request, f"{proposal}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{proposal.user}: two-factor reset.", messages.SUCCESS)

    @staff_action(permission="accounts.approve_two_factor_reset", description="Reject the selected resets")
    def reject_resets(self, request: HttpRequest, queryset: QuerySet[TwoFactorResetRequest]) -> None:
        for proposal in queryset.order_by("pk"):
            try:
                two_factor_reset_reject(request_id=proposal.pk, actor=request.user)  # type: ignore[arg-type]
            except BankError as exc:
                self.message_user(request, f"{proposal}: {exc.message}", messages.ERROR)

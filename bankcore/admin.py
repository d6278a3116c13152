"""Staff admin pieces shared by every app, and the audit log's screen."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from bankcore.api.exceptions import BankError
from bankcore.app_config import feature_flag_set, parse_app_version, version_policy_set
from bankcore.maintenance import maintenance_off, maintenance_on, maintenance_state
from bankcore.models import AppVersionPolicy, AuditEvent, BackupRecord, DrDrill, FeatureFlag, MaintenanceMode
from bankcore.permissions import has_staff_permission

Action = TypeVar("Action", bound=Callable[..., Any])


def staff_action(*, permission: str, description: str) -> Callable[[Action], Action]:
    """An admin action that needs `permission` ("app_label.codename").

    Django offers it only to staff who hold it (the ModelAdmin's
    `has_<codename>_permission`, which should call `has_staff_permission`), and a POST
    naming it anyway is refused; the wrapper checks again when it runs, so a call that
    skips the changelist's filter (another view, a test, a future screen) cannot use it.
    """
    codename = permission.split(".", 1)[1]

    def decorate(func: Action) -> Action:
        @functools.wraps(func)
        def checked(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
            if not has_staff_permission(request.user, permission):
                raise PermissionDenied(permission)
            return func(modeladmin, request, queryset)

        return admin.action(description=description, permissions=[codename])(checked)  # type: ignore[return-value]

    return decorate


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=255, widget=forms.Textarea(attrs={"rows": 3}))


def ask_reason(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any], *, title: str, help_text: str
) -> tuple[str | None, TemplateResponse | None]:
    """The reason a proposal needs, asked on a page between the action and its effect.

    Returns (reason, None) once the page was submitted with one, else (None, the page).
    """
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    form.fields["reason"].help_text = help_text
    if form.is_valid():
        return form.cleaned_data["reason"], None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "queryset": queryset,
        "form": form,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return None, TemplateResponse(request, "admin/bankcore/action_reason.html", context)


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


@admin.register(DrDrill)
class DrDrillAdmin(ReadOnlyAdmin):
    """Disaster-recovery drills (manage.py dr_drill, weekly beat task): which backup, RTO, RPO, outcome."""

    list_display = ("started_at", "ok", "backup_id", "rto_seconds", "rpo_seconds", "scratch_database")
    list_filter = ("ok",)
    ordering = ("-started_at",)
    readonly_fields = [field.name for field in DrDrill._meta.fields]


@admin.register(BackupRecord)
class BackupRecordAdmin(ReadOnlyAdmin):
    """Backup runs (manage.py backup, the backup_if_due beat task); `list_backups` shows what the store holds."""

    list_display = ("started_at", "status", "backup_id", "size_bytes", "finished_at")
    list_filter = ("status",)
    ordering = ("-started_at",)
    readonly_fields = [field.name for field in BackupRecord._meta.fields]


class _VersionFieldsForm(forms.ModelForm):
    """Version fields checked as version numbers (packaging.version), so a typo never reaches the apps."""

    version_fields: tuple[str, ...] = ()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field in self.version_fields:
            raw = cleaned.get(field)
            if raw:
                try:
                    parse_app_version(raw, field=field)
                except BankError:
                    self.add_error(field, "Not a version number like 1.2.3.")
        return cleaned


class AppVersionPolicyForm(_VersionFieldsForm):
    version_fields = ("min_supported_version", "latest_version")
    store_url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = AppVersionPolicy
        fields = ("platform", "min_supported_version", "latest_version", "store_url")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        minimum, latest = cleaned.get("min_supported_version"), cleaned.get("latest_version")
        if minimum and latest and not self.errors and parse_app_version(minimum) > parse_app_version(latest):
            self.add_error("min_supported_version", "Must not be above the latest version.")
        return cleaned


@admin.register(AppVersionPolicy)
class AppVersionPolicyAdmin(admin.ModelAdmin):
    """Per platform: the oldest app still served (older ones get 426 and the store URL). Audited."""

    form = AppVersionPolicyForm
    list_display = ("platform", "min_supported_version", "latest_version", "store_url", "updated_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("platform",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: AppVersionPolicy, form: Any, change: bool) -> None:
        saved = version_policy_set(
            platform=obj.platform,
            min_supported_version=obj.min_supported_version,
            latest_version=obj.latest_version,
            store_url=obj.store_url,
            actor=request.user,
        )
        obj.pk = saved.pk


class FeatureFlagForm(_VersionFieldsForm):
    version_fields = ("min_app_version",)

    class Meta:
        model = FeatureFlag
        fields = ("name", "description", "enabled", "rollout_percent", "platform", "min_app_version")


@admin.register(FeatureFlag)
class FeatureFlagAdmin(admin.ModelAdmin):
    """Switches in the apps with a stable per-user rollout percentage. Audited; switched off, never deleted
    (an app that asks for a deleted flag would read it as off anyway)."""

    form = FeatureFlagForm
    list_display = ("name", "enabled", "rollout_percent", "platform", "min_app_version", "updated_at")
    list_filter = ("enabled", "platform")
    search_fields = ("name",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: FeatureFlag, form: Any, change: bool) -> None:
        saved = feature_flag_set(
            name=obj.name,
            enabled=obj.enabled,
            rollout_percent=obj.rollout_percent,
            platform=obj.platform,
            min_app_version=obj.min_app_version,
            description=obj.description,
            actor=request.user,
        )
        obj.pk = saved.pk


class GuardedPeriodicTaskAdmin(PeriodicTaskAdmin):  # type: ignore[misc]
    """django-celery-beat's screen, whose enable/disable/toggle/run actions declare no permission:
    here they need `change_periodictask` (a view-only user could otherwise switch off or fire
    the bank's scheduled jobs)."""

    def has_change_periodictask_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "django_celery_beat.change_periodictask")

    @staff_action(permission="django_celery_beat.change_periodictask", description="Enable selected tasks")
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().enable_tasks(request, queryset)

    @staff_action(permission="django_celery_beat.change_periodictask", description="Disable selected tasks")
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().disable_tasks(request, queryset)

    @staff_action(permission="django_celery_beat.change_periodictask", description="Toggle activity of selected tasks")
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().toggle_tasks(request, queryset)

    @staff_action(permission="django_celery_beat.change_periodictask", description="Run selected tasks")
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().run_tasks(request, queryset)


class MaintenanceForm(forms.Form):
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What customers are told.")
    until = forms.DateTimeField(
        required=False, help_text="Expected end (UTC, e.g. 2026-05-01 06:00): Retry-After. Not an automatic off."
    )


@admin.register(MaintenanceMode)
class MaintenanceModeAdmin(admin.ModelAdmin):
    """One page: the read-only switch, its message and expected end, with On/Off buttons.

    Switching needs `bankcore.change_maintenancemode` (superusers have it); viewing, any staff
    member who may view it. Both buttons call bankcore.maintenance, which audits the change.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_staff_permission(request.user, "bankcore.change_maintenancemode")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj) or has_staff_permission(
            request.user, "bankcore.view_maintenancemode"
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:bankcore_maintenancemode_changelist"))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        state = maintenance_state(fresh=True)
        form = MaintenanceForm(initial={"message": state.message, "until": state.until})
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            if "switch_off" in request.POST:
                maintenance_off(actor=request.user)
                self.message_user(request, "Maintenance mode is off: writes are accepted, settlement resumes.")
                return HttpResponseRedirect(request.path)
            form = MaintenanceForm(request.POST)
            if form.is_valid():
                try:
                    maintenance_on(
                        message=form.cleaned_data["message"], until=form.cleaned_data["until"], actor=request.user
                    )
                except BankError as exc:
                    for field, errors in exc.details.items():
                        for error in errors:
                            form.add_error(field if field in form.fields else None, error)
                else:
                    self.message_user(request, "Maintenance mode is on: API writes answer 503, settlement is paused.")
                    return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": "Maintenance mode",
            "opts": self.model._meta,
            "state": state,
            "form": form,
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/bankcore/maintenance_mode.html", context)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, GuardedPeriodicTaskAdmin)

"""Staff screens: delivery log, dead letters with resend, incidents with fan-out progress."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from bankcore.admin import ReadOnlyAdmin, ReadOnlyInline, staff_action
from bankcore.api.exceptions import BankError
from bankcore.permissions import has_staff_permission
from notifications import services
from notifications.models import (
    DeadLetter,
    Delivery,
    Incident,
    IncidentUpdate,
    MaintenanceWindow,
    Notification,
    Service,
)


@staff_action(permission="notifications.resend_delivery", description="Resend the selected deliveries")
def resend(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
    done = 0
    for delivery_id in queryset.values_list("pk", flat=True):
        try:
            services.delivery_resend(delivery_id=delivery_id, actor=request.user)
            done += 1
        except BankError as exc:
            messages.warning(request, f"{delivery_id}: {exc.message}")
    messages.success(request, f"{done} deliveries queued again.")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "event",
        "channel",
        "recipient",
        "status",
        "attempts",
        "unknown_outcome_resends",
        "last_error",
    ]
    list_filter = ["status", "channel", "event"]
    search_fields = ["recipient", "delivery_key", "provider_message_id"]
    date_hierarchy = "created_at"
    actions = [resend]
    show_full_result_count = False

    def has_resend_delivery_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "notifications.resend_delivery")


@admin.register(DeadLetter)
class DeadLetterAdmin(DeliveryAdmin):
    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        return super().get_queryset(request).filter(status=Delivery.Status.DEAD)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "event", "title", "read_at"]
    list_filter = ["event"]
    search_fields = ["user__email", "title"]
    show_full_result_count = False


class IncidentUpdateInline(ReadOnlyInline):
    model = IncidentUpdate
    fields = ("created_at", "kind", "message", "channels", "fanout_status", "progress_display")
    readonly_fields = fields

    @admin.display(description="progress")
    def progress_display(self, obj: IncidentUpdate) -> str:
        return f"{obj.recipients_done}/{obj.recipients_total} customers ({obj.progress:.0%})"


class IncidentForm(forms.ModelForm):
    services = forms.MultipleChoiceField(choices=Service.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Incident
        fields = ["title", "severity", "services", "message"]


class IncidentChangeForm(forms.ModelForm):
    update_message = forms.CharField(
        required=False, widget=forms.Textarea, help_text="On an open incident: post this update to customers."
    )

    class Meta:
        model = Incident
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("update_message") and self.instance.resolved_at is not None:
            raise forms.ValidationError("This incident is resolved; declare a new one instead of updating it.")
        return cleaned


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """Declaring here calls the same service as `manage.py declare_incident`.

    Declaring, posting an update and resolving all tell customers: each needs `manage_incident`.
    """

    form = IncidentForm
    list_display = ["started_at", "title", "severity", "resolved_at", "latest_progress"]
    list_filter = ["severity", "resolved_at"]

    def get_inlines(self, request: HttpRequest, obj: Incident | None) -> list[Any]:
        return [IncidentUpdateInline] if obj is not None else []

    actions = ["resolve_selected"]

    def has_manage_incident_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "notifications.manage_incident")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_manage_incident_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Incident | None = None) -> bool:
        return self.has_manage_incident_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Incident | None = None) -> list[str]:
        return ["title", "severity", "message", "started_at", "resolved_at"] if obj else []

    def get_fields(self, request: HttpRequest, obj: Incident | None = None) -> list[Any]:
        if obj is None:
            return ["title", "severity", "services", "message"]
        return ["title", "severity", "message", "started_at", "resolved_at", "update_message"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = IncidentChangeForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> None:
        if not change:
            declared = services.incident_declare(
                title=form.cleaned_data["title"],
                message=form.cleaned_data["message"],
                severity=form.cleaned_data["severity"],
                services=form.cleaned_data["services"],
                actor=request.user,
            )
            obj.pk = declared.pk
            obj.refresh_from_db()
        elif form.cleaned_data.get("update_message"):
            services.incident_post_update(
                incident_id=obj.pk, message=form.cleaned_data["update_message"], actor=request.user
            )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="fan-out")
    def latest_progress(self, obj: Incident) -> str:
        update = obj.updates.order_by("-created_at").first()
        if update is None:
            return "-"
        return f"{update.kind}: {update.recipients_done}/{update.recipients_total} ({update.fanout_status})"

    @staff_action(permission="notifications.manage_incident", description="Resolve (send the all-clear)")
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        for incident in queryset.filter(resolved_at__isnull=True):
            services.incident_resolve(incident_id=incident.pk, actor=request.user)
        messages.success(request, "All-clear sent.")


class MaintenanceWindowForm(forms.ModelForm):
    services = forms.MultipleChoiceField(
        choices=Service.choices, widget=forms.CheckboxSelectMultiple, required=False, help_text="None: everyone."
    )
    announce = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Tell the affected customers now by e-mail and push (their preferences honoured).",
    )

    class Meta:
        model = MaintenanceWindow
        fields = ["title", "message", "services", "starts_at", "ends_at"]

    def clean(self) -> dict[str, Any]:
        # The same rules maintenance_schedule enforces, shown on the form instead of a 500.
        super().clean()
        cleaned = self.cleaned_data
        starts_at, ends_at = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts_at and ends_at and ends_at <= starts_at:
            self.add_error("ends_at", "Must be after the start.")
        if cleaned.get("announce") and not (cleaned.get("message") or "").strip():
            self.add_error("message", "Required to announce the window.")
        return cleaned


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    """Adding here calls the same service as `manage.py schedule_maintenance`."""

    form = MaintenanceWindowForm
    list_display = ["title", "starts_at", "ends_at", "announcement_progress"]

    def get_fields(self, request: HttpRequest, obj: MaintenanceWindow | None = None) -> list[Any]:
        fields = ["title", "message", "services", "starts_at", "ends_at"]
        return fields if obj is not None else [*fields, "announce"]

    @admin.display(description="announcement")
    def announcement_progress(self, obj: MaintenanceWindow) -> str:
        update = obj.announcements.order_by("-created_at").first()
        if update is None:
            return "-"
        return f"{update.recipients_done}/{update.recipients_total} ({update.fanout_status})"

    def save_model(self, request: HttpRequest, obj: MaintenanceWindow, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            services.status_cache_clear()
            return
        window = services.maintenance_schedule(
            title=obj.title,
            message=obj.message,
            starts_at=obj.starts_at,
            ends_at=obj.ends_at,
            services=obj.services or [],
            actor=request.user,
            announce=form.cleaned_data.get("announce", False),
        )
        obj.pk = window.pk

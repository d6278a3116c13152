"""Notifications: the in-app inbox, one delivery row per outbound channel, preferences, incidents."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from bankcore.ids import uuid7


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"


class Notification(models.Model):
    """One row per event in the customer's in-app inbox."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    body = models.TextField()
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-id"]), models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return f"{self.event} for {self.user_id}"


class Delivery(models.Model):
    """One message to one user on one channel: the outbox row and its delivery log.

    Written in the caller's transaction; a Celery task moves it queued -> sending ->
    sent | failed (retried later) | dead. `delivery_key` is unique, so the same
    (event, user, channel) can never be recorded, and therefore never sent, twice.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead letter"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    delivery_key = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    recipient = models.CharField(max_length=254, blank=True, help_text="E-mail address or phone; push: per device.")
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    html_body = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="Per-channel facts: SMS segments, push devices.")
    # Times the sweep re-sent this row because a worker died mid-send (outcome unknown),
    # with the same idempotency key / message key so the provider or device dedupes it.
    unknown_outcome_resends = models.PositiveSmallIntegerField(
        default=0, help_text="Re-sent after a worker died mid-send (outcome unknown), same idempotency key."
    )
    incident_update = models.ForeignKey(
        "IncidentUpdate", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        permissions = [("resend_delivery", "Can resend a delivery")]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["user", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} to {self.user_id} ({self.status})"


class DeadLetter(Delivery):
    """Admin view of deliveries that gave up (status dead)."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"


class NotificationPreference(models.Model):
    """An explicit choice of one user for one (event, channel). Absent = the event's default."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs")
    event = models.CharField(max_length=64)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    enabled = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "event", "channel"], name="notif_pref_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.event}/{self.channel}={self.enabled}"


class QuietHours(models.Model):
    """When marketing-class messages wait (local wall-clock times in `timezone`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quiet_hours")
    start = models.TimeField()
    end = models.TimeField()
    timezone = models.CharField(max_length=64, default="UTC")

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.start}-{self.end} {self.timezone}"


class Service(models.TextChoices):
    PAYMENTS = "payments", "Payments"
    TRANSFERS = "transfers", "Transfers"
    LOGIN = "login", "Login"
    CARDS = "cards", "Cards"
    LEGACY_ACCOUNTS = "legacy_accounts", "Legacy accounts"
    APP = "app", "Mobile app"


class Incident(models.Model):
    class Severity(models.TextChoices):
        MINOR = "minor", "Minor"
        MAJOR = "major", "Major"
        CRITICAL = "critical", "Critical"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    title = models.CharField(max_length=200)
    message = models.TextField(help_text="What customers see now (the latest update).")
    severity = models.CharField(max_length=8, choices=Severity.choices)
    services = models.JSONField(default=list, help_text="Affected services, e.g. ['payments'].")
    started_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    declared_by = models.CharField(max_length=200, blank=True)

    class Meta:
        permissions = [("manage_incident", "Can declare, update and resolve incidents")]
        indexes = [models.Index(fields=["resolved_at", "-started_at"])]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"

    @property
    def is_active(self) -> bool:
        return self.resolved_at is None


class IncidentUpdate(models.Model):
    """One message to customers about an incident -- or the announcement of a maintenance
    window (kind `planned`) -- and the progress of its resumable fan-out."""

    class Kind(models.TextChoices):
        DECLARED = "declared", "Declared"
        UPDATED = "updated", "Updated"
        RESOLVED = "resolved", "Resolved"
        PLANNED = "planned", "Maintenance announced"

    class FanoutStatus(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="updates")
    maintenance = models.ForeignKey(
        "MaintenanceWindow", null=True, blank=True, on_delete=models.CASCADE, related_name="announcements"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    message = models.TextField()
    channels = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    fanout_status = models.CharField(max_length=8, choices=FanoutStatus.choices, default=FanoutStatus.RUNNING)
    # Keyset cursor over customers: every customer with id <= cursor has their rows.
    fanout_cursor = models.UUIDField(null=True, blank=True)
    recipients_total = models.PositiveIntegerField(default=0)
    recipients_done = models.PositiveIntegerField(default=0)
    fanout_heartbeat_at = models.DateTimeField(default=timezone.now)
    fanout_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(incident__isnull=False, maintenance__isnull=True)
                | models.Q(incident__isnull=True, maintenance__isnull=False),
                name="notif_update_incident_xor_maintenance",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.incident_id or self.maintenance_id}"

    @property
    def progress(self) -> float:
        return 1.0 if not self.recipients_total else self.recipients_done / self.recipients_total


class MaintenanceWindow(models.Model):
    """Planned downtime, shown on /api/v1/status before and while it runs."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    title = models.CharField(max_length=200)
    message = models.TextField()
    services = models.JSONField(default=list)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # The window that maintenance mode (bankcore.maintenance) opened: ended when it is switched off.
    read_only = models.BooleanField(default=False, help_text="Opened by maintenance mode (the API is read-only).")
    # Maintenance mode switched on without an expected end: ends_at is only a bound for the listing.
    end_unknown = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["ends_at"])]

    def __str__(self) -> str:
        return f"{self.title} {self.starts_at:%Y-%m-%d %H:%M}"

"""The tables of bankcore's shared mechanisms: the audit log and the API's idempotency keys.

The audit log is an append-only, hash-chained record of who did what. Each row
stores sha256(previous row's hash + its own canonical content), so editing or deleting
any row breaks its chain from that row on; `manage.py verify_audit_log` finds the
first broken row. PostgreSQL refuses UPDATE and DELETE (trigger).
"""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models

MAX_AUDIT_CHAINS = 64


class AuditChainHead(models.Model):
    """The newest hash of one chain; locking it serialises appends to that chain.

    The log is kept as several independent chains (AUDIT_CHAINS) so that writers on
    different database connections do not queue behind one row for every money movement.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, help_text="The chain number.")
    last_event_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id__gte=1, id__lte=MAX_AUDIT_CHAINS), name="audit_chain_head_number_in_range"
            )
        ]

    def __str__(self) -> str:
        return f"audit chain {self.id} at #{self.last_event_id}"


class AuditEvent(models.Model):
    """One audited action, hash-chained to its chain's previous event. Append-only.

    Rows are written by the `audit_append()` function (migration 0003):
    a new column needs that function replaced in the same migration.
    """

    id = models.BigAutoField(primary_key=True)
    chain = models.PositiveSmallIntegerField(default=1)
    # Indexed by a BRIN index (migration 0005): events arrive in time order, so
    # a few bytes per block range serve time-range queries, and appends stay cheap.
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    actor_label = models.CharField(max_length=255, blank=True, help_text="Who acted, kept even if the user is gone.")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    # Not unique-indexed: verify_chain proves the chain; an index here only slows every append.
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        indexes = [
            # "Everything that happened to X", looked up by the id alone: most ids are UUIDs, and where
            # two types share a number the list shows each row's type.
            models.Index(fields=["target_id"], name="audit_event_target"),
            models.Index(fields=["chain", "id"], name="audit_event_chain_id"),
            # No index on the action: every money movement appends here, and questions about
            # an action are asked over a time range (the BRIN index), a target or an actor.
        ]
        triggers = [
            pgtrigger.Protect(name="audit_event_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} by {self.actor_label or 'system'}"


class IdempotencyKey(models.Model):
    """One client key per user: the request's fingerprint and, once done, its response.

    Written `in_progress` and completed in the *same* database transaction as the work
    (bankcore.idempotency), so a committed row always holds its stored response and a
    crashed request leaves nothing. `lease_until` only matters for in_progress rows
    committed by the earlier scheme, which claimed the key in a transaction of its own.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (user, key) index serves lookups by user (one index less to
    # write on every money-moving request).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(help_text="An in-progress claim older than this may be taken over.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class BackupRecord(models.Model):
    """One run of `manage.py backup` (or its beat task): what it stored, or why it failed.

    The backups themselves live in the backup store; this row is the app's cheap view of the
    newest good one (the metric and /readyz read it).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    backup_id = models.CharField(max_length=64, help_text="The backup's name in the store.")
    location = models.CharField(max_length=512, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True, help_text="Size of the encrypted dump.")
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "finished_at"], name="backup_record_status_done")]

    def __str__(self) -> str:
        return f"backup {self.backup_id} ({self.status})"


class DrDrill(models.Model):
    """One disaster-recovery drill: a backup restored into a scratch database and verified there."""

    id = models.BigAutoField(primary_key=True)
    backup_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    rto_seconds = models.FloatField(null=True, blank=True, help_text="Seconds the restore took (fetch, verify, load).")
    rpo_seconds = models.FloatField(null=True, blank=True, help_text="Age of the backup when the drill began.")
    scratch_database = models.CharField(max_length=128, blank=True)
    problems = models.JSONField(default=list, blank=True)
    report = models.TextField(blank=True)

    class Meta:
        verbose_name = "DR drill"

    def __str__(self) -> str:
        return f"DR drill {self.started_at:%Y-%m-%d %H:%M} ({'ok' if self.ok else 'FAILED'})"


class MaintenanceMode(models.Model):
    """The bank's read-only switch: one row (id 1), changed only by bankcore.maintenance.

    While `active`, the API refuses requests that change anything (503 `maintenance`),
    settlement pauses, and /api/v1/status says so. `until` is the operator's estimate of
    the end (it sets Retry-After); maintenance ends only when switched off, never by the clock,
    so work that overruns does not reopen writes halfway through.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    active = models.BooleanField(default=False)
    message = models.TextField(blank=True, help_text="What customers are told.")
    until = models.DateTimeField(null=True, blank=True, help_text="Expected end (Retry-After); not an automatic off.")
    started_at = models.DateTimeField(null=True, blank=True)
    actor_label = models.CharField(max_length=255, blank=True, help_text="Who switched it last.")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "maintenance mode"
        verbose_name_plural = "maintenance mode"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="maintenance_mode_singleton")]

    def __str__(self) -> str:
        return f"maintenance {'on' if self.active else 'off'}"


# --- The mobile apps: supported versions and feature flags (issue 17) -------------------------


class AppPlatform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"


class AppVersionPolicy(models.Model):
    """Per platform: the oldest app version still served, the newest in the store, and where to get it.

    Versions are compared semantically (`packaging.version`), never as strings: 1.10.0 > 1.9.0.
    Changed only through bankcore.app_config.version_policy_set (audited).
    """

    platform = models.CharField(max_length=16, choices=AppPlatform.choices, unique=True)
    min_supported_version = models.CharField(
        max_length=32, help_text="Older apps get 426 upgrade_required on every request but app-config, status, refresh."
    )
    latest_version = models.CharField(max_length=32, help_text="The newest version in the store.")
    store_url = models.URLField(max_length=500)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "app version policy"
        verbose_name_plural = "app version policies"

    def __str__(self) -> str:
        return f"{self.get_platform_display()}: {self.min_supported_version} .. {self.latest_version}"


class FeatureFlag(models.Model):
    """A switch in the apps, rolled out to a stable share of users.

    A user's answer is decided by a hash of (flag name, user id) mapped to 0..9999: the flag is
    on when that bucket is below `rollout_percent` x 100, so raising the percentage only ever
    adds users. Optional filters: one platform, a minimum app version.
    Changed only through bankcore.app_config.feature_flag_set (audited).
    """

    name = models.SlugField(max_length=64, unique=True, help_text="The key the apps read (snake_case).")
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=False, help_text="Off: off for everyone, whatever the rollout.")
    rollout_percent = models.PositiveSmallIntegerField(
        default=100, help_text="0-100: the share of signed-in users who get it (stable per user)."
    )
    platform = models.CharField(
        max_length=16, choices=AppPlatform.choices, blank=True, help_text="Empty: every platform."
    )
    min_app_version = models.CharField(max_length=32, blank=True, help_text="Empty: every version.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rollout_percent__gte=0, rollout_percent__lte=100),
                name="feature_flag_rollout_percent_in_range",
            )
        ]

    def __str__(self) -> str:
        return self.name

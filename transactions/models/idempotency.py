"""Idempotency keys for money-moving POSTs (see bankcore/idempotency.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
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

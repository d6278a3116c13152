"""In-app inbox. (Delivery rows per channel, incidents: see the notifications issue.)"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7


class Notification(models.Model):
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

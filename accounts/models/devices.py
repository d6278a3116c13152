"""Customers' phones: each keeps a P-256 private key in its secure enclave; we keep the public key."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7


class Device(models.Model):
    class Platform(models.TextChoices):
        IOS = "ios", "iOS"
        ANDROID = "android", "Android"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=100)
    platform = models.CharField(max_length=16, choices=Platform.choices)
    app_version = models.CharField(max_length=32)
    public_key = models.TextField(help_text="P-256 public key, base64 DER SubjectPublicKeyInfo.")
    push_token = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.platform}) of {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class DeviceChallenge(models.Model):
    """A random nonce a device signs to log in or to approve a step-up; single use."""

    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="challenges")
    challenge = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"challenge for device {self.device_id}"

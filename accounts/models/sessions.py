"""Logins ("token families") and the short-lived proof between password and second factor."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7


class LoginSession(models.Model):
    """One authentication and every refresh/access token descended from it.

    Tokens carry this id in their `fam` claim. Revoking the session refuses all of
    them at once: refresh is checked here, access tokens on every request.
    """

    class Method(models.TextChoices):
        PASSWORD = "password", "Password"
        PASSWORD_TOTP = "password+totp", "Password and TOTP"
        PASSWORD_BACKUP = "password+backup_code", "Password and backup code"
        DEVICE_KEY = "device_key", "Device key"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_sessions")
    device = models.ForeignKey(
        "accounts.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="login_sessions"
    )
    method = models.CharField(max_length=32, choices=Method.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    # jti of the one refresh token of this session that may still be used.
    current_refresh_jti = models.CharField(max_length=255, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"login {self.id} of {self.user_id} ({self.method})"


class MfaChallenge(models.Model):
    """Proof that the password step passed; exchanged once for tokens with a second factor."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the mfa_token; never the token.")
    device = models.ForeignKey("accounts.Device", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"mfa challenge {self.id} of {self.user_id}"

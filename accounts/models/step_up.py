"""Step-up tokens: a second factor bound to one operation's exact amount and payee (PSD2 dynamic linking)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class StepUpToken(models.Model):
    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the token; never the token.")
    purpose = models.CharField(max_length=32)
    amount = models.CharField(max_length=32, help_text="Normalised decimal string, e.g. 100.00.")
    currency = models.CharField(max_length=3)
    payee = models.CharField(
        max_length=254,
        help_text="Destination IBAN, uppercase without spaces; for contact_change the new e-mail or phone.",
    )
    method = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"step-up {self.purpose} {self.amount} {self.currency} to {self.payee}"

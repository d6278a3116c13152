"""A customer's new e-mail address or phone number, waiting for the code sent to it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7


class ContactChange(models.Model):
    """Until the customer types the code that reached the new contact, the record keeps the
    old (verified) one, and security alerts keep going there."""

    class Field(models.TextChoices):
        EMAIL = "email", "Login e-mail"
        PHONE = "phone", "Phone"
        NOTIFICATION_EMAIL = "notification_email", "Alert e-mail"
        NOTIFICATION_PHONE = "notification_phone", "Alert phone"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_changes")
    field = models.CharField(max_length=32, choices=Field.choices)
    new_value = models.CharField(max_length=254)
    code_hash = models.CharField(max_length=64, help_text="sha256 of the code sent to the new contact; never the code.")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One open change per contact: a new request replaces the previous one.
            models.UniqueConstraint(
                fields=["user", "field"], condition=models.Q(confirmed_at__isnull=True), name="one_open_contact_change"
            )
        ]

    def __str__(self) -> str:
        return f"{self.field} change for {self.user_id}"

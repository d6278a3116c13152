"""Staff changes to a customer's security that need a second staff member (maker-checker)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bankcore.ids import uuid7


class TwoFactorResetRequest(models.Model):
    """A proposed two-factor reset: one staff member proposes, a different one approves; only then it runs.

    Removing a customer's authenticator is what an account takeover by social
    engineering needs, so no single staff member can do it alone, nor approve their own.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        DONE = "done", "Approved and reset"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=255, help_text="Why, and how the customer's identity was checked.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The checker is never the maker, nor the user whose second factor goes.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | (~models.Q(decided_by=models.F("proposed_by")) & ~models.Q(decided_by=models.F("user"))),
                name="two_factor_reset_maker_is_not_checker",
            ),
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(status="pending"), name="two_factor_reset_one_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"two-factor reset of {self.user_id} ({self.status})"

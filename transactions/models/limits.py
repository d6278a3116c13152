"""Per-customer overrides of the bank's transfer limits."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from transactions.models.ledger import CURRENCY_CHOICES


class CustomerLimit(models.Model):
    """Staff-set limits for one customer in one currency (minor units). Empty = bank default."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="transfer_limits")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    per_transfer = models.BigIntegerField(null=True, blank=True)
    daily = models.BigIntegerField(null=True, blank=True, help_text="Rolling 24 hours.")
    step_up_threshold = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "currency"], name="customer_limit_unique"),
            models.CheckConstraint(
                condition=(models.Q(per_transfer__isnull=True) | models.Q(per_transfer__gte=0))
                & (models.Q(daily__isnull=True) | models.Q(daily__gte=0))
                & (models.Q(step_up_threshold__isnull=True) | models.Q(step_up_threshold__gte=0)),
                name="customer_limit_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"limits of {self.user_id} in {self.currency}"

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


class LimitUsage(models.Model):
    """What one customer sent in one currency during one minute (minor units).

    The rolling 24-hour limit sums at most 1,440 of these rows instead of every transfer
    of the day. Written with each posting that counts against the limits (ledger_post()),
    under the customer's row lock. The window is counted per whole minute, including
    the minute it starts in: a customer's usage is never under-counted, at worst it
    includes a transfer up to one minute older than 24 hours.
    """

    id = models.BigAutoField(primary_key=True)
    # The unique index below starts with the user: no separate one.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    minute = models.DateTimeField()
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "currency", "minute"], name="limit_usage_per_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} sent {self.amount} {self.currency} at {self.minute:%Y-%m-%d %H:%M}"

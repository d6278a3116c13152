"""Customer transfer limits: bank defaults from settings, staff overrides per customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from bankcore.audit import audit_record
from bankcore.money import exponent
from transactions.models import CustomerLimit, Transaction

# Kinds that count against the rolling 24-hour outgoing limit.
LIMITED_KINDS = (Transaction.Kind.TRANSFER, Transaction.Kind.PAYMENT)
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Limits:
    currency: str
    step_up_threshold: int
    per_transfer: int
    daily: int
    used_today: int

    @property
    def remaining_today(self) -> int:
        return max(self.daily - self.used_today, 0)


def _default_minor(setting: str, currency: str) -> int:
    return int(Decimal(getattr(settings, setting)).scaleb(exponent(currency)))


def limits_for(*, user: Any, currency: str) -> Limits:
    """The limits that apply to `user` in `currency` and what the last 24 hours used.

    Consistent for a transfer when called with the customer row locked
    (lock_objects.customer_lock): no concurrent transfer of theirs can change `used_today`.
    """
    override = CustomerLimit.objects.filter(user=user, currency=currency).first()

    def pick(field: str, setting: str) -> int:
        value = getattr(override, field, None) if override else None
        return value if value is not None else _default_minor(setting, currency)

    used = (
        Transaction.objects.filter(
            initiated_by=user, kind__in=LIMITED_KINDS, currency=currency, created_at__gt=timezone.now() - WINDOW
        )
        .order_by()
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return Limits(
        currency=currency,
        step_up_threshold=pick("step_up_threshold", "TRANSFER_STEP_UP_THRESHOLD"),
        per_transfer=pick("per_transfer", "TRANSFER_LIMIT_PER_TRANSFER"),
        daily=pick("daily", "TRANSFER_LIMIT_DAILY"),
        used_today=used,
    )


def customer_limit_set(
    *,
    user: Any,
    currency: str,
    actor: Any,
    per_transfer: int | None = None,
    daily: int | None = None,
    step_up_threshold: int | None = None,
) -> CustomerLimit:
    """Staff override of one customer's limits in one currency (None = bank default). Audited."""
    from django.db import transaction

    with transaction.atomic():
        limit, _ = CustomerLimit.objects.update_or_create(
            user=user,
            currency=currency,
            defaults={"per_transfer": per_transfer, "daily": daily, "step_up_threshold": step_up_threshold},
        )
        audit_record(
            action="limits.changed",
            actor=actor,
            target=user,
            details={
                "currency": currency,
                "per_transfer": per_transfer,
                "daily": daily,
                "step_up_threshold": step_up_threshold,
            },
        )
    return limit

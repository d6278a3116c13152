"""Customer transfer limits: bank defaults from settings, staff overrides per customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import BankAccount
from bankcore.audit import audit_record
from bankcore.money import exponent, format_amount
from transactions.exceptions import LimitExceeded
from transactions.lock_objects import transfer_rows_for_update
from transactions.models import CustomerLimit, Transaction

# Postings that count against the rolling 24-hour outgoing limit when they post: transfers,
# whether sent now or run later by a standing order. A payment to another bank counts when it
# is accepted (`limit_usage_record`, with its hold), not again when it settles.
LIMITED_KINDS = (Transaction.Kind.TRANSFER, Transaction.Kind.STANDING_ORDER)
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


def check_per_transfer_limit(*, limits: Limits, amount: int) -> None:
    """Raise LimitExceeded when one payment of `amount` is above the per-transfer limit."""
    if amount > limits.per_transfer:
        raise LimitExceeded(
            "The amount is above your per-transfer limit.",
            details={"limit": "per_transfer", "per_transfer": format_amount(limits.per_transfer, limits.currency)},
        )


def check_limits(*, limits: Limits, amount: int) -> None:
    """Raise LimitExceeded when `amount` is above the per-transfer limit or what is left of the
    rolling 24-hour one. Consistent only under the customer's row lock (limits_and_accounts_lock)."""
    check_per_transfer_limit(limits=limits, amount=amount)
    if amount > limits.remaining_today:
        raise LimitExceeded(
            "The amount is above what is left of your 24-hour limit.",
            details={"limit": "daily", "remaining_today": format_amount(limits.remaining_today, limits.currency)},
        )


def _default_minor(setting: str, currency: str) -> int:
    return _to_minor(str(getattr(settings, setting)), currency)


@lru_cache(maxsize=64)
def _to_minor(amount: str, currency: str) -> int:
    # Keyed by the setting's value, so a changed setting is never served stale.
    return int(Decimal(amount).scaleb(exponent(currency)))


# Usage counts whole minutes (LimitUsage), the one the window starts in included.
_LIMITS_SQL = """
SELECT l.per_transfer, l.daily, l.step_up_threshold,
       (SELECT coalesce(sum(u.amount), 0) FROM transactions_limitusage u
        WHERE u.user_id = %s AND u.currency = %s AND u.minute >= %s)
FROM (SELECT 1 AS one) AS one
LEFT JOIN transactions_customerlimit l ON l.user_id = %s AND l.currency = %s
"""


def counts_against_limits(journal: Transaction) -> bool:
    """Does this posting use up its initiating customer's limits?"""
    return journal.kind in LIMITED_KINDS and journal.initiated_by_id is not None and bool(journal.amount)


_USAGE_SQL = """
INSERT INTO transactions_limitusage AS u (user_id, currency, minute, amount)
VALUES (%s, %s, date_trunc('minute', %s::timestamptz), %s)
ON CONFLICT (user_id, currency, minute) DO UPDATE SET amount = u.amount + EXCLUDED.amount
"""


def limit_usage_record(*, user_id: Any, currency: str, at: datetime, amount: int) -> None:
    """Count `amount` minor units against the customer's rolling limit in the minute of `at`;
    a negative amount gives back what a payment that never left (cancelled, rejected) used.
    Call under the customer's row lock, in the transaction that accepts or ends the payment."""
    with connection.cursor() as cursor:
        cursor.execute(_USAGE_SQL, [user_id, currency, at, amount])


def _window_start(now: datetime) -> datetime:
    return (now - WINDOW).replace(second=0, microsecond=0)


def _limits(currency: str, per_transfer: int | None, daily: int | None, step_up: int | None, used: int) -> Limits:
    def pick(value: int | None, setting: str) -> int:
        return value if value is not None else _default_minor(setting, currency)

    return Limits(
        currency=currency,
        step_up_threshold=pick(step_up, "TRANSFER_STEP_UP_THRESHOLD"),
        per_transfer=pick(per_transfer, "TRANSFER_LIMIT_PER_TRANSFER"),
        daily=pick(daily, "TRANSFER_LIMIT_DAILY"),
        used_today=int(used),
    )


def limits_and_accounts_lock(
    *, user: Any, currency: str, source_account_id: UUID, destination_iban: str
) -> tuple[Limits, dict[UUID, BankAccount]]:
    """Steps 1 and 2 of the global lock order for a customer's transfer (the customer, then
    both accounts; lock_objects.transfer_rows_for_update) and the customer's limits with
    what the last 24 hours used, read under those locks: no concurrent transfer of this
    customer's can change `used_today` until this transaction ends."""
    accounts, usage = transfer_rows_for_update(
        user_id=user.pk,
        currency=currency,
        source_account_id=source_account_id,
        destination_iban=destination_iban,
        since=timezone.now() - WINDOW,
    )
    if usage is None:  # neither account exists: read them separately
        return limits_for(user=user, currency=currency), accounts
    return _limits(currency, *usage), accounts


def limits_for(*, user: Any, currency: str) -> Limits:
    """The limits that apply to `user` in `currency` and what the last 24 hours used (one query).

    Consistent for a transfer when called with the customer row locked
    (as `ledger_lock_transfer()` does): no concurrent transfer of theirs can change `used_today`.
    """
    user_id = CustomerLimit._meta.get_field("user").get_db_prep_value(user.pk, connection)
    since = _window_start(timezone.now())
    with connection.cursor() as cur:
        cur.execute(_LIMITS_SQL, [user_id, currency, since, user_id, currency])
        per_transfer, daily, step_up, used = cur.fetchone()
    return _limits(currency, per_transfer, daily, step_up, used)


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

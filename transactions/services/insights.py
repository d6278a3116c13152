"""Spending insights: every entry's category, the customer's re-categorisation, monthly totals.

When is an entry categorised? When it is read, never when it is posted: posting (the hot path of
transfers) writes no category row and runs no rule. An entry's category is, in this order:

1. the customer's own choice for that entry (`EntryCategory`, set by PATCH on the history entry);
2. what the customer taught for the entry's counterparty (`CounterpartyCategory`): every entry
   from the same counterparty posted at or after the entry they re-categorised;
3. `transfers` for money moved between the customer's own accounts;
4. the first active staff rule (`CategoryRule`, highest priority) whose field contains the
   rule's pattern as whole words, case-insensitive;
5. `other`.

All of it is one SQL statement (`_SCOPE` + `_RULES` + `_CATEGORY`), used both for the history's
per-entry categories and for the monthly aggregation, so the two never disagree. The monthly
totals group the month's entries - one range scan of the (account, created_at, id) index per
account - by (counterparty, description, the customer's choice) first and run the rules once per
group, not once per entry; the groups are then summed per category by the database.

The counterparty of an entry: the other account for a transfer inside the bank (its IBAN and its
owner's name); the creditor of a payment to another bank; the debtor of an incoming credit; none
for cash, fees and other bank postings. Its key is the IBAN (or, without one, the name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from accounts.models import BankAccount
from bankcore.audit import audit_record
from bankcore.db.replica import read_database
from bankcore.money import parse_amount
from transactions.exceptions import EntryNotFound
from transactions.models import (
    Category,
    CategoryRule,
    CounterpartyCategory,
    Entry,
    EntryCategory,
    InsightsPreference,
)
from transactions.selectors import customer_account, month_bounds


def insights_read_alias() -> str:
    """The database alias insights and history categories are read from: the one place it is chosen.

    The read replica when one is configured, not lagging and the request has not written yet
    (bankcore.db.replica); the primary otherwise."""
    return read_database()


# Text -> " word word " (lowercase, every run of non-alphanumerics one space): a pattern matches
# whole words, so "rent" finds "Rent share" but not "Current account".
def _words(column: str) -> str:
    return f"(' ' || lower(regexp_replace(coalesce({column}, ''), '[^[:alnum:]]+', ' ', 'g')) || ' ')"


# Each entry with what categorisation needs. {where} restricts `e` (the entry) and must be served
# by the (account, created_at, id) index or the primary key. The payment / incoming-credit
# lookups sit inside CASE branches, so they run only for entries of that kind.
_SCOPE = """
SELECT e.id, e.amount, e.created_at, t.kind, t.description,
       coalesce(other.owner_id = %(customer)s, false) AS own_account,
       coalesce(CASE
           WHEN other.kind <> 'internal' THEN other.iban
           WHEN t.kind = 'payment' THEN
               (SELECT p.creditor_iban FROM transactions_payment p WHERE p.transaction_id = t.id)
           WHEN t.kind = 'deposit' THEN
               (SELECT c.debtor_iban FROM transactions_incomingcredit c WHERE c.transaction_id = t.id)
       END, '') AS counterparty_iban,
       coalesce(CASE
           WHEN other.kind <> 'internal' THEN coalesce(holder.full_name, other.name)
           WHEN t.kind = 'payment' THEN
               (SELECT p.creditor_name FROM transactions_payment p WHERE p.transaction_id = t.id)
           WHEN t.kind = 'deposit' THEN
               (SELECT c.debtor_name FROM transactions_incomingcredit c WHERE c.transaction_id = t.id)
       END, '') AS counterparty_name
FROM transactions_entry e
-- One primary-key probe per entry (OFFSET 0 keeps it a nested loop): never a scan of the journal.
CROSS JOIN LATERAL (
    SELECT t.id, t.kind, t.description, t.source_account_id, t.destination_account_id
    FROM transactions_transaction t WHERE t.id = e.transaction_id OFFSET 0
) AS t
LEFT JOIN accounts_bankaccount other ON other.id = CASE
    WHEN t.source_account_id = e.account_id THEN t.destination_account_id
    WHEN t.destination_account_id = e.account_id THEN t.source_account_id
END
LEFT JOIN accounts_user holder ON holder.id = other.owner_id
WHERE {where}
"""

_KEY = """CASE
    WHEN s.counterparty_iban <> '' THEN upper(replace(s.counterparty_iban, ' ', ''))
    WHEN s.counterparty_name <> '' THEN 'name:' || lower(s.counterparty_name)
    ELSE ''
END"""

# The customer's own choices joined in: `taught` has the scope's columns, counterparty_key and
# customer_category (their choice for the entry, else what they taught for its counterparty).
_TAUGHT = f"""
keyed AS (
    SELECT s.*, {_KEY} AS counterparty_key FROM scope s
),
taught AS (
    SELECT k.*, coalesce(ec.category, cc.category) AS customer_category
    FROM keyed k
    LEFT JOIN (
        SELECT entry_id, category FROM transactions_entrycategory WHERE customer_id = %(customer)s
    ) ec ON ec.entry_id = k.id
    LEFT JOIN (
        SELECT counterparty_key, category, effective_from
        FROM transactions_counterpartycategory WHERE customer_id = %(customer)s
    ) cc ON cc.counterparty_key = k.counterparty_key AND k.created_at >= cc.effective_from
)"""  # noqa: S608 - fixed fragments; every value is a bound parameter

# Each (field, text) a rule may look at, per row of `worded`.
_TEXTS = """CROSS JOIN LATERAL (VALUES
    ('description', g.description_words), ('counterparty_name', g.counterparty_name_words),
    ('counterparty_iban', g.counterparty_iban_words), ('kind', g.kind_words)
) AS v(field, text)"""

# A rule hit as text that sorts like (priority, -id): the greatest one is the rule that wins.
_RANKED = (
    "to_char(r.priority::bigint + 2147483648, 'FM0000000000')"
    " || to_char(9223372036854775807 - r.id, 'FM0000000000000000000') || r.category"
)
_RANK_WIDTH = 29


def _best_hit(field: str, column: str) -> str:
    return f"(b.hits ->> ('{field}|' || g.direction || '|' || g.{column}))"


def _categorised(source: str) -> str:
    """CTEs giving every row of `source` (columns of `taught`, `amount` signed) its `category` in
    `categorised`. Set-based and free of plan surprises: each distinct (field, text, direction) is
    matched once against the rules of that field (strpos on whole words), its best rule goes into
    one jsonb map, and each row looks its four texts up there (O(log n) each) - no per-row
    subquery, no join whose row estimate could turn it quadratic."""
    texts = ", ".join(
        _best_hit(field, column)
        for field, column in (
            ("description", "description_words"),
            ("counterparty_name", "counterparty_name_words"),
            ("counterparty_iban", "counterparty_iban_words"),
            ("kind", "kind_words"),
        )
    )
    return f"""
worded AS MATERIALIZED (
    SELECT w.*, CASE WHEN w.amount < 0 THEN 'out' ELSE 'in' END AS direction,
           {_words("w.description")} AS description_words,
           {_words("w.counterparty_name")} AS counterparty_name_words,
           {_words("w.counterparty_iban")} AS counterparty_iban_words,
           {_words("w.kind")} AS kind_words
    FROM {source} w
),
rules AS MATERIALIZED (
    SELECT id, field, direction, category, priority, words FROM (
        SELECT id, field, direction, category, priority,
               ' ' || btrim(lower(regexp_replace(pattern, '[^[:alnum:]]+', ' ', 'g'))) || ' ' AS words
        FROM transactions_categoryrule WHERE active
    ) AS normalised WHERE words <> '  '
),
best AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(key, ranked), '{{}}'::jsonb) AS hits FROM (
        SELECT t.field || '|' || t.direction || '|' || t.text AS key, max({_RANKED}) AS ranked
        FROM (SELECT DISTINCT v.field, v.text, g.direction FROM worded g {_TEXTS}) AS t
        JOIN rules r ON r.field = t.field AND r.direction IN ('any', t.direction) AND strpos(t.text, r.words) > 0
        GROUP BY 1
    ) AS ranked_hits
),
categorised AS (
    SELECT g.*, coalesce(
        g.customer_category,
        CASE WHEN g.own_account THEN 'transfers' END,
        substr(greatest({texts}), {_RANK_WIDTH + 1}),
        'other'
    ) AS category
    FROM worded g CROSS JOIN best b
)"""  # noqa: S608 - fixed fragments; every value is a bound parameter


_ENTRY_CATEGORIES_SQL = f"""
WITH scope AS ({_SCOPE.format(where="e.id = ANY(%(entries)s::bigint[])")}), {_TAUGHT}, {_categorised("taught")}
SELECT id, category, counterparty_key FROM categorised
"""  # noqa: S608 - fixed fragments; every value is a bound parameter

# Money out of the customer's accounts in [since, until), two months at once: the entries are
# grouped by (month, counterparty, description, kind, customer's choice) first, each group is
# categorised once, then the groups are summed per category.
_SPENDING_SQL = f"""
WITH scope AS ({
    _SCOPE.format(
        where="e.account_id = ANY(%(accounts)s::uuid[]) AND e.created_at >= %(since)s"
        " AND e.created_at < %(until)s AND e.amount < 0"
    )
}), {_TAUGHT},
grouped AS (
    SELECT t.created_at >= %(month_start)s AS this_month, t.kind, t.description, t.own_account,
           t.counterparty_iban, t.counterparty_name, t.customer_category, sum(t.amount) AS amount
    FROM taught t
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), {_categorised("grouped")}
SELECT this_month, category, -sum(amount) AS amount FROM categorised GROUP BY 1, 2
"""  # noqa: S608 - fixed fragments; every value is a bound parameter


@contextmanager
def _without_jit(cursor: Any) -> Iterator[None]:
    """Run the statement without PostgreSQL's JIT: its estimated cost (every CASE branch's lookup
    counted as if taken) passes jit_above_cost, and compiling it took seconds in the benchmark for a
    statement that runs in tens of milliseconds without. Plain SELECTs, restored afterwards."""
    cursor.execute("SELECT current_setting('jit'), set_config('jit', 'off', false)")
    previous = cursor.fetchone()[0]
    try:
        yield
    finally:
        cursor.execute("SELECT set_config('jit', %s, false)", [previous])


def entry_categories(*, customer: Any, entry_ids: list[int]) -> dict[int, str]:
    """The category of each of the customer's entries (ids of entries of their accounts). One query."""
    if not entry_ids:
        return {}
    with connections[insights_read_alias()].cursor() as cursor:
        cursor.execute(_ENTRY_CATEGORIES_SQL, {"customer": customer.pk, "entries": list(entry_ids)})
        return {row[0]: row[1] for row in cursor.fetchall()}


def _entry_details(*, customer: Any, entry: Entry) -> tuple[str, str]:
    """(category, counterparty key) of one entry, as insights see it."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_ENTRY_CATEGORIES_SQL, {"customer": customer.pk, "entries": [entry.pk]})
        _, category, key = cursor.fetchone()
    return category, key


def customer_entry(*, user: Any, account_id: Any, entry_id: Any) -> Entry:
    """One entry of one of the customer's accounts, or a 404 (AccountNotFound / EntryNotFound)
    for another customer's account or an entry of another account."""
    account = customer_account(user=user, account_id=account_id)
    entry = None
    if str(entry_id).isdigit() and int(entry_id) < 2**63:
        entry = (
            Entry.objects.filter(pk=int(entry_id), account=account)
            .select_related("transaction", "transaction__source_account__owner")
            .select_related("transaction__destination_account__owner")
            .first()
        )
    if entry is None:
        raise EntryNotFound()
    return entry


def entry_recategorise(*, user: Any, entry: Entry, category: str) -> str:
    """The customer's own category for one of their entries; returns it.

    Atomic. Sets the entry's category (it wins over every rule) and teaches the counterparty:
    entries from the same counterparty posted at or after this one take `category` too - a later
    choice for the same counterparty changes the taught category, and the taught span reaches
    back to the earliest entry the customer re-categorised. An entry without a counterparty
    (cash, fees) teaches nothing. Call with `entry` from `customer_entry` (ownership checked).
    """
    if category not in Category.values:
        raise ValueError(f"unknown category {category!r}")
    with transaction.atomic():
        _, key = _entry_details(customer=user, entry=entry)
        EntryCategory.objects.update_or_create(
            entry=entry, defaults={"customer": user, "category": category, "counterparty_key": key}
        )
        if key:
            taught = (
                CounterpartyCategory.objects.select_for_update().filter(customer=user, counterparty_key=key).first()
            )
            if taught is None:
                CounterpartyCategory.objects.create(
                    customer=user,
                    counterparty_key=key,
                    category=category,
                    effective_from=entry.created_at,
                    learned_from=entry,
                )
            else:
                taught.category = category
                taught.learned_from = entry
                taught.effective_from = min(taught.effective_from, entry.created_at)
                taught.save(update_fields=["category", "learned_from", "effective_from", "updated_at"])
    return category


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_month(text: str) -> date | None:
    """'2026-10' -> date(2026, 10, 1); None when it is not a YYYY-MM month."""
    match = _MONTH.match(text or "")
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    if not (1 <= month <= 12 and year >= 1970):
        return None
    return date(year, month, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


@dataclass(frozen=True)
class CategorySpending:
    category: str
    amount: int  # minor units, positive: money out
    previous: int  # the same category in the previous month

    @property
    def change(self) -> int:
        return self.amount - self.previous


@dataclass(frozen=True)
class Recommendation:
    code: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Spending:
    month: date
    currency: str
    total_out: int
    categories: list[CategorySpending]
    recommendations: list[Recommendation]


def insights_currency(*, user: Any, requested: str | None) -> str | None:
    """The currency of an insights answer: `requested`, else the currency of the customer's first
    current account (oldest; savings if they have none); None when they have no account."""
    if requested:
        return requested
    accounts = BankAccount.objects.using(insights_read_alias()).filter(owner=user)
    first = accounts.filter(kind=BankAccount.Kind.CURRENT).order_by("created_at", "id").first()
    first = first or accounts.order_by("created_at", "id").first()
    return first.currency if first is not None else None


def spending_for_month(*, user: Any, month: date, currency: str) -> Spending:
    """Money out of the customer's accounts in `currency` during `month` (UTC), per category, with
    the change against the previous month. Read-only; one aggregation statement (plus one for the
    recommendations when the customer opted in). Every entry counts, transfers to their own
    accounts too (category `transfers`), so total_out == -sum(the month's negative entries)."""
    alias = insights_read_alias()
    accounts = list(BankAccount.objects.using(alias).filter(owner=user, currency=currency).values_list("pk", flat=True))
    start, end = month_bounds(month)
    previous_start, _ = month_bounds(previous_month(month))
    totals: dict[str, list[int]] = {}
    if accounts:
        with connections[alias].cursor() as cursor, _without_jit(cursor):
            cursor.execute(
                _SPENDING_SQL,
                {
                    "customer": user.pk,
                    "accounts": accounts,
                    "since": previous_start,
                    "until": end,
                    "month_start": start,
                },
            )
            for this_month, category, amount in cursor.fetchall():
                totals.setdefault(category, [0, 0])[0 if this_month else 1] += int(amount)
    categories = sorted(
        (CategorySpending(category, now, before) for category, (now, before) in totals.items()),
        key=lambda item: (-item.amount, -item.previous, item.category),
    )
    return Spending(
        month=month,
        currency=currency,
        total_out=sum(item.amount for item in categories),
        categories=categories,
        recommendations=recommendations_for(user=user, month=month, currency=currency),
    )


# --- recommendations ---------------------------------------------------------------------------

# The time-weighted average balance of one account over [start, until): the balance before the
# first entry of the period holds from `start`, each entry's balance_after until the next entry.
_AVERAGE_BALANCE_SQL = """
WITH points AS (
    SELECT %(start)s::timestamptz AS at, coalesce((
        SELECT balance_after FROM transactions_entry
        WHERE account_id = %(account)s AND created_at < %(start)s
        ORDER BY created_at DESC, id DESC LIMIT 1), 0) AS balance
    UNION ALL
    SELECT created_at, balance_after FROM transactions_entry
    WHERE account_id = %(account)s AND created_at >= %(start)s AND created_at < %(until)s
),
spans AS (
    SELECT balance, extract(epoch FROM lead(at, 1, %(until)s::timestamptz) OVER (ORDER BY at) - at) AS seconds
    FROM points
)
SELECT coalesce(sum(balance::numeric * seconds) / nullif(sum(seconds), 0), 0) FROM spans
"""


def insights_preference(*, user: Any) -> InsightsPreference:
    return InsightsPreference.objects.filter(customer=user).first() or InsightsPreference(customer=user)


def insights_preference_set(*, user: Any, recommendations: bool) -> InsightsPreference:
    """The customer's opt-in (or opt-out) for recommendations. Idempotent."""
    preference, _ = InsightsPreference.objects.update_or_create(
        customer=user, defaults={"recommendations": recommendations}
    )
    return preference


def idle_balance_threshold(currency: str) -> int:
    """INSIGHTS_IDLE_BALANCE_THRESHOLD (a decimal amount) in `currency`'s minor units."""
    return parse_amount(str(settings.INSIGHTS_IDLE_BALANCE_THRESHOLD), currency)


def recommendations_for(*, user: Any, month: date, currency: str) -> list[Recommendation]:
    """Rule-based advice, only for customers who opted in (otherwise [] and no query beyond the
    preference). Rule: the average balance over the month (up to now for the current month) of
    their current accounts in `currency` is above INSIGHTS_IDLE_BALANCE_THRESHOLD and they have
    no savings account in that currency -> open one."""
    if not InsightsPreference.objects.filter(customer=user, recommendations=True).exists():
        return []
    alias = insights_read_alias()
    accounts = BankAccount.objects.using(alias).filter(owner=user, currency=currency, status=BankAccount.Status.ACTIVE)
    if accounts.filter(kind=BankAccount.Kind.SAVINGS).exists():
        return []
    start, end = month_bounds(month)
    until = min(end, timezone.now())
    if until <= start:
        return []
    average = 0
    with connections[alias].cursor() as cursor:
        for account_id in accounts.filter(kind=BankAccount.Kind.CURRENT).values_list("pk", flat=True):
            cursor.execute(_AVERAGE_BALANCE_SQL, {"account": account_id, "start": start, "until": until})
            average += int(cursor.fetchone()[0])
    threshold = idle_balance_threshold(currency)
    if average <= threshold:
        return []
    return [
        Recommendation(
            code="open_savings_account",
            message="Money has been sitting idle in your current account: a savings account would earn interest on it.",
            details={"average_balance": average, "threshold": threshold},
        )
    ]


# --- staff rules -------------------------------------------------------------------------------


def category_rule_save(*, rule: CategoryRule, actor: Any) -> CategoryRule:
    """Create or change a staff categorisation rule. Atomic, audited; applies to every entry read
    from now on (past entries too, except those the customer categorised themselves)."""
    with transaction.atomic():
        created = rule.pk is None
        rule.save()
        audit_record(
            action="insights.rule_created" if created else "insights.rule_changed",
            actor=actor,
            target=rule,
            details={
                "field": rule.field,
                "pattern": rule.pattern,
                "direction": rule.direction,
                "category": rule.category,
                "priority": rule.priority,
                "active": rule.active,
            },
        )
    return rule


def category_rule_delete(*, rule: CategoryRule, actor: Any) -> None:
    """Delete a staff rule. Atomic, audited."""
    with transaction.atomic():
        details = {"field": rule.field, "pattern": rule.pattern, "category": rule.category}
        target_id = str(rule.pk)
        rule.delete()
        audit_record(
            action="insights.rule_deleted",
            actor=actor,
            target_type=CategoryRule._meta.label,
            target_id=target_id,
            details=details,
        )

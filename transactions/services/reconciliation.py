"""Reconciliation: the gateway's camt.053 for a day against the ledger's view of the same day.

What the ledger expects on the bank's account at the gateway for `day` (UTC):
- one debit per payment we settled that day: the capture posted that day, matched by the
  payment's end-to-end id and amount;
- one credit per incoming credit the gateway booked that day: matched by notification id and
  amount (credits in suspense count: the money arrived, whoever it belongs to).
Everything else is a mismatch: an entry at the gateway the ledger lacks (`missing_in_ledger`),
a ledger item the gateway lacks (`missing_at_gateway`), or both with different amounts
(`amount_differs`). A statement entry whose reference repeats is a mismatch too (the gateway
booked it twice).

Days are UTC days, as the gateway's are. A payment captured just after midnight for a transfer
the gateway booked just before it shows as a mismatch on both days: staff look, nothing moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from integrations.gateway.messages import Statement
from transactions.models import IncomingCredit, Payment, ReconciliationMismatch, ReconciliationRun


@dataclass(frozen=True)
class _LedgerItem:
    reference: str
    amount: int
    currency: str
    credit: bool


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def ledger_items_for(*, day: date, currency: str) -> dict[tuple[bool, str], _LedgerItem]:
    """What the ledger says moved on the bank's gateway account on `day`, keyed (credit, reference)."""
    start, end = _day_bounds(day)
    items: dict[tuple[bool, str], _LedgerItem] = {}
    settled = Payment.objects.filter(
        status=Payment.Status.SETTLED,
        currency=currency,
        transaction__posted_at__gte=start,
        transaction__posted_at__lt=end,
    ).values_list("end_to_end_id", "amount")
    for end_to_end_id, amount in settled:
        items[(False, end_to_end_id)] = _LedgerItem(end_to_end_id, amount, currency, credit=False)
    credits = IncomingCredit.objects.filter(currency=currency, booked_at__gte=start, booked_at__lt=end).values_list(
        "notification_id", "amount"
    )
    for notification_id, amount in credits:
        items[(True, notification_id)] = _LedgerItem(notification_id, amount, currency, credit=True)
    return items


def reconciliation_run(*, day: date, statement: Statement) -> ReconciliationRun:
    """Compare `statement` (the camt.053 for `day`) with the ledger and record the run with its
    mismatches. Atomic; reads only, writes the run. Running a day again records a new run."""
    ledger = ledger_items_for(day=day, currency=statement.currency)
    mismatches: list[ReconciliationMismatch] = []
    seen: set[tuple[bool, str]] = set()

    def mismatch(kind: str, reference: str, currency: str, credit: bool, gateway: int | None, ours: int | None) -> None:
        mismatches.append(
            ReconciliationMismatch(
                kind=kind,
                reference=reference[:64],
                gateway_amount=gateway,
                ledger_amount=ours,
                currency=currency,
                credit=credit,
            )
        )

    entries = [entry for entry in statement.entries if entry.booking_date == day]
    for entry in entries:
        key = (entry.credit, entry.reference)
        item = ledger.get(key)
        if item is None or key in seen or entry.currency != item.currency:
            kind = ReconciliationMismatch.Kind.MISSING_IN_LEDGER
            mismatch(kind, entry.reference, entry.currency, entry.credit, entry.amount, None)
        elif entry.amount != item.amount:
            kind = ReconciliationMismatch.Kind.AMOUNT_DIFFERS
            mismatch(kind, entry.reference, entry.currency, entry.credit, entry.amount, item.amount)
        seen.add(key)
    for key, item in sorted(ledger.items()):
        if key not in seen:
            kind = ReconciliationMismatch.Kind.MISSING_AT_GATEWAY
            mismatch(kind, item.reference, item.currency, item.credit, None, item.amount)

    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            day=day,
            statement_id=statement.statement_id[:35],
            statement_entries=len(entries),
            ledger_entries=len(ledger),
            mismatch_count=len(mismatches),
            created_at=timezone.now(),
        )
        for row in mismatches:
            row.run = run
        ReconciliationMismatch.objects.bulk_create(mismatches)
    return run

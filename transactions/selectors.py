"""Read-only queries for the ledger's API pages, statements and admin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Prefetch, QuerySet

from accounts.models import BankAccount
from bankcore.db.replica import read_database
from transactions.exceptions import AccountNotFound, PaymentNotFound, TicketNotFound
from transactions.models import Entry, Payment, PaymentEvent, SupportMessage, SupportTicket, Transaction


def customer_accounts(*, user: Any) -> QuerySet[BankAccount]:
    """The customer's own accounts (`held` is kept on each account row by the ledger)."""
    return BankAccount.objects.filter(owner=user)


def customer_account(*, user: Any, account_id: UUID | str) -> BankAccount:
    """One of the customer's accounts, or AccountNotFound (also for another customer's id)."""
    account = customer_accounts(user=user).filter(pk=account_id).first()
    if account is None:
        raise AccountNotFound()
    return account


_BEFORE = "(transactions_entry.created_at, transactions_entry.id) < (%s, %s)"
_AFTER = "(transactions_entry.created_at, transactions_entry.id) > (%s, %s)"


def history_page(*, entries: QuerySet[Entry], before: tuple[datetime, int] | None, limit: int) -> list[Entry]:
    """`limit` entries of one account, newest first, strictly older than the `before` cursor.

    Ordered by (created_at, id) and bounded by a row comparison, which PostgreSQL turns
    into one range scan of the (account, created_at, id) index: a page costs the same
    at the millionth entry as at the first. (Ordering by id alone lets the planner pick
    a backward primary-key scan that wades through other accounts' newer rows.)
    """
    if before is not None:
        entries = entries.extra(where=[_BEFORE], params=list(before))  # noqa: S610 - fixed SQL, bound params
    return list(entries.order_by("-created_at", "-id")[:limit])


def account_history(
    *, account: BankAccount, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[Entry]:
    """The account's entries with their counterparties; the caller orders (keyset on -id).

    Served by the (account, id) index: a page costs the same at any depth. Read from the
    replica when one is configured and may serve this request (bankcore.db.replica).
    """
    entries = (
        Entry.objects.using(read_database())
        .filter(account=account)
        .select_related(
            "transaction",
            "transaction__source_account__owner",
            "transaction__destination_account__owner",
            # The other bank's party of a payment or an incoming credit, the core's account of a
            # legacy transfer: one-to-one joins on the page's own rows.
            "transaction__payment",
            "transaction__incoming_credit",
            "transaction__legacy_request__link",
        )
    )
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return entries


def _related_or_none(instance: Any, name: str) -> Any:
    """A reverse one-to-one (select_related by account_history), or None when there is none."""
    try:
        return getattr(instance, name)
    except ObjectDoesNotExist:
        return None


def counterparty_of(entry: Entry) -> dict[str, str] | None:
    """The other side of a movement as seen from `entry`'s account: the other account of a transfer
    within the bank, the creditor of a payment to another bank, the debtor of an incoming credit,
    the account on the legacy core; None for cash and the bank's own postings."""
    journal = entry.transaction
    payment = _related_or_none(journal, "payment")
    if payment is not None:
        return {"name": payment.creditor_name, "iban": payment.creditor_iban}
    credit = _related_or_none(journal, "incoming_credit")
    if credit is not None:
        return {"name": credit.debtor_name, "iban": credit.debtor_iban}
    legacy = _related_or_none(journal, "legacy_request")
    if legacy is not None:
        return {"name": legacy.link.name if legacy.link is not None else "", "iban": legacy.legacy_iban}
    other = None
    if journal.source_account_id == entry.account_id:
        other = journal.destination_account
    elif journal.destination_account_id == entry.account_id:
        other = journal.source_account
    if other is None or other.kind == BankAccount.Kind.INTERNAL:
        return None
    name = other.owner.full_name if other.owner is not None else other.name
    return {"name": name, "iban": other.iban}


def customer_transfers(*, user: Any) -> QuerySet[Transaction]:
    """Transfers the customer sent (from any of their accounts)."""
    return Transaction.objects.filter(
        source_account__owner=user, kind__in=(Transaction.Kind.TRANSFER, Transaction.Kind.STANDING_ORDER)
    ).select_related("destination_account", "legacy_request")


def customer_transfer(*, user: Any, transfer_id: UUID | str) -> Transaction:
    transfer = customer_transfers(user=user).filter(pk=transfer_id).first()
    if transfer is None:
        raise AccountNotFound("No such transfer.")
    return transfer


def balance_at(*, account: BankAccount, moment: datetime) -> int:
    """The account's balance just before `moment` (balance_after of the last earlier entry)."""
    # Ordered like the (account, created_at, id) index, so the plan never walks other accounts' rows.
    last = (
        Entry.objects.using(read_database())
        .filter(account=account, created_at__lt=moment)
        .order_by("-created_at", "-id")
        .only("balance_after")
        .first()
    )
    return last.balance_after if last is not None else 0


def statement_entries(*, account: BankAccount, start: datetime, end: datetime, chunk: int = 500) -> Iterator[Entry]:
    """Every entry of [start, end) oldest first, fetched in keyset chunks (constant memory)."""
    # Each chunk is one range scan of the (account, created_at, id) index from the last row seen.
    base = account_history(account=account, since=start, until=end).order_by("created_at", "id")
    last: tuple[datetime, int] | None = None
    while True:
        page = base if last is None else base.extra(where=[_AFTER], params=list(last))  # noqa: S610
        batch = list(page[:chunk])
        if not batch:
            return
        yield from batch
        last = (batch[-1].created_at, batch[-1].id)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def customer_payments(*, user: Any) -> QuerySet[Payment]:
    """The customer's payments to other banks with their timelines (keyset on -id: uuid7 is time-ordered)."""
    return Payment.objects.filter(customer=user).prefetch_related(
        Prefetch("events", queryset=PaymentEvent.objects.order_by("id"))
    )


def customer_payment(*, user: Any, payment_id: UUID | str) -> Payment:
    """One of the customer's payments, or PaymentNotFound (also for another customer's id)."""
    payment = customer_payments(user=user).filter(pk=payment_id).first()
    if payment is None:
        raise PaymentNotFound()
    return payment


def customer_tickets(*, user: Any) -> QuerySet[SupportTicket]:
    """The customer's own support tickets with their messages (keyset on -id: uuid7 is time-ordered)."""
    return SupportTicket.objects.filter(customer=user).prefetch_related(
        Prefetch("messages", queryset=SupportMessage.objects.order_by("id"))
    )


def customer_ticket(*, user: Any, ticket_id: UUID | str) -> SupportTicket:
    """One of the customer's tickets, or TicketNotFound (404, also for another customer's id)."""
    ticket = customer_tickets(user=user).filter(pk=ticket_id).first()
    if ticket is None:
        raise TicketNotFound()
    return ticket

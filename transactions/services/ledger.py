"""Posting to the ledger: the one function that changes balances.

Every money movement in bankcore - transfers, deposits, fees, reversals, adjustments,
standing orders, later card and gateway payments - ends in `post_transaction`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from accounts.models import BankAccount
from bankcore.audit import audit_append_call, audit_appended
from bankcore.idempotency import carried_answer_call, carried_answer_stored
from bankcore.models import AuditEvent
from bankcore.money import format_amount
from transactions.exceptions import AccountFrozen, CurrencyMismatch, InsufficientFunds, LedgerUnbalanced
from transactions.lock_objects import bank_accounts_for_update
from transactions.models import Transaction
from transactions.services.limits import counts_against_limits
from transactions.services.notices import notices_wake_on_commit


@dataclass(frozen=True)
class Leg:
    """One side of a movement: `amount` minor units (signed; negative = out of the account)."""

    account_id: UUID
    amount: int


def available_balance(account: BankAccount) -> int:
    """What the account can still spend: balance - holds + overdraft."""
    return account.balance - account.held + account.overdraft_limit


class EntryLine(NamedTuple):
    """One entry to write (its currency and time are the journal's)."""

    account_id: UUID
    amount: int
    balance_after: int


@dataclass
class Posting:
    """A validated posting, not yet written: the journal row, its entries and the accounts'
    new balances (computed under their row locks)."""

    journal: Transaction
    entries: list[EntryLine]
    accounts: dict[UUID, BankAccount]
    balances: dict[UUID, int]


def post_transaction(**posting: Any) -> tuple[Transaction, dict[UUID, BankAccount]]:
    """Post one balanced journal transaction and move the balances with it
    (`posting_prepare` + `posting_write`; see them for the arguments and guarantees).

    Returns the transaction and the locked accounts with their new balances.
    """
    prepared = posting_prepare(**posting)
    posting_write(prepared)
    return prepared.journal, prepared.accounts


def posting_prepare(
    *,
    kind: str,
    legs: Sequence[Leg],
    currency: str,
    initiated_by: Any = None,
    reference: str = "",
    description: str = "",
    source_account_id: UUID | None = None,
    destination_account_id: UUID | None = None,
    amount: int | None = None,
    reverses: Transaction | None = None,
    require_active: bool = True,
    locked: dict[UUID, BankAccount] | None = None,
    at: datetime | None = None,
) -> Posting:
    """Validate one balanced journal transaction and compute its entries; writes nothing.

    Call inside `transaction.atomic` (the caller's unit of work) and write the result
    with `posting_write` in the same transaction: the entries, the balances and the
    journal row commit together or not at all.

    Locks every account involved (pk order) unless the caller passes them in
    `locked` (already locked by `lock_objects.bank_accounts_for_update`, same order).
    Guarantees: legs sum to zero (raises LedgerUnbalanced otherwise - a bug, and the
    database would refuse it at COMMIT anyway); every leg is in the account's currency
    (CurrencyMismatch); no customer account goes below -overdraft_limit counting holds
    (InsufficientFunds) - internal accounts may go negative; with `require_active`, no
    leg touches a frozen or closed account (AccountFrozen).
    `at` back-dates the posting (data migration, demo history); post in time order.
    """
    if len(legs) < 2:
        raise LedgerUnbalanced("A transaction needs at least two legs.")
    if any(leg.amount == 0 for leg in legs):
        raise LedgerUnbalanced("A leg cannot be zero.")
    if sum(leg.amount for leg in legs) != 0:
        raise LedgerUnbalanced("Legs do not sum to zero.")

    accounts = locked if locked is not None else bank_accounts_for_update(leg.account_id for leg in legs)
    deltas: dict[UUID, int] = defaultdict(int)
    for leg in legs:
        account = accounts[leg.account_id]
        if account.currency != currency:
            raise CurrencyMismatch(details={"account_currency": account.currency, "currency": currency})
        if require_active and account.status != BankAccount.Status.ACTIVE:
            raise AccountFrozen(details={"account": str(account.pk)})
        deltas[leg.account_id] += leg.amount

    for account_id, delta in deltas.items():
        account = accounts[account_id]
        overdrawn = account.balance + delta - account.held < -account.overdraft_limit
        if delta < 0 and account.kind != BankAccount.Kind.INTERNAL and overdrawn:
            raise InsufficientFunds(details={"available": format_amount(available_balance(account), account.currency)})

    now = at or timezone.now()
    # Related rows by their ids, then the instances at hand put in the relation caches:
    # spares callers (serializers) a lazy query each, without the descriptors' checks.
    journal = Transaction(
        kind=kind,
        reference=reference,
        description=description,
        initiated_by_id=initiated_by.pk if initiated_by is not None else None,
        source_account_id=source_account_id,
        destination_account_id=destination_account_id,
        amount=amount,
        currency=currency,
        reverses_id=reverses.pk if reverses is not None else None,
        created_at=now,
        posted_at=now,
    )
    related = {
        "initiated_by": initiated_by,
        "reverses": reverses,
        "source_account": accounts.get(source_account_id) if source_account_id else None,
        "destination_account": accounts.get(destination_account_id) if destination_account_id else None,
    }
    for name, instance in related.items():
        if instance is not None:
            getattr(Transaction, name).field.set_cached_value(journal, instance)
    entries = []
    for leg in legs:
        account = accounts[leg.account_id]
        account.balance += leg.amount
        entries.append(EntryLine(leg.account_id, leg.amount, account.balance))
    return Posting(journal, entries, accounts, {pk: accounts[pk].balance for pk in deltas})


def posting_write(
    posting: Posting,
    *,
    notices: list[dict[str, Any]] | None = None,
    audit: AuditEvent | None = None,
    outcome_of_request: bool = False,
) -> None:
    """Write a prepared posting in the caller's transaction, with the customer alerts it owes
    (`notices.notice` items, sent after COMMIT) and its audit event (`audit.audit_event`).
    All of it is one round trip; the audit chain head is locked last.

    `outcome_of_request`: this posting is what the current API request does, so the request's
    Idempotency-Key answer (if its view lets one be carried: bankcore.idempotency) is stored in
    the same round trip."""
    journal, entries, balances = posting.journal, posting.entries, posting.balances
    db = connections[DEFAULT_DB_ALIAS]
    answer = carried_answer_call(journal) if outcome_of_request else None
    _write_postgresql(db, journal, entries, balances, notices, audit, answer)
    if notices:
        notices_wake_on_commit()


_POST_CALL = (
    "ledger_post(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s::uuid[], %s::bigint[], %s::uuid[], %s::bigint[], %s::bigint[], %s::jsonb, %s)"
)


def _write_postgresql(
    db: BaseDatabaseWrapper,
    journal: Transaction,
    entries: list[EntryLine],
    balances: dict[UUID, int],
    notices: list[dict[str, Any]] | None,
    audit: AuditEvent | None,
    answer: tuple[str, list[Any]] | None,
) -> None:
    """Balances, journal row, entries, the alerts outbox row and the customer's limit usage
    through `ledger_post()` (migration 0006), the audit event through `audit_append()` and the
    request's idempotency answer through `idempotency_complete()`: one round trip under the row
    locks, plans cached per session. ledger_post takes no row lock (the accounts are locked
    already), so the audit chain head is still the last lock."""
    calls, columns = [f"{_POST_CALL} AS posted"], []
    params: list[Any] = [
        journal.pk,
        journal.kind,
        journal.status,
        journal.reference,
        journal.description,
        journal.initiated_by_id,
        journal.source_account_id,
        journal.destination_account_id,
        journal.amount,
        journal.currency,
        journal.reverses_id,
        journal.created_at,
        journal.posted_at,
        [str(pk) for pk in balances],
        list(balances.values()),
        [str(line.account_id) for line in entries],
        [line.amount for line in entries],
        [line.balance_after for line in entries],
        json.dumps(notices) if notices else None,
        counts_against_limits(journal),
    ]
    if audit is not None:
        audit_call, audit_params = audit_append_call(audit)
        calls.append(f"{audit_call} AS a")
        columns.append("a.*")
        params += audit_params
    if answer is not None:
        calls.append(f"{answer[0]} AS answered")
        columns.append("answered")
        params += answer[1]
    sql = f"SELECT {', '.join(columns) or 'posted'} FROM {' CROSS JOIN '.join(calls)}"  # noqa: S608 - fixed calls
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if audit is not None:
        audit_appended(audit, row[:3])
    if answer is not None:
        carried_answer_stored(row[-1])
    journal._state.adding = False
    journal._state.db = db.alias

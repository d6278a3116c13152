"""The only place ledger rows are locked for update.

Global lock order, so concurrent writers never deadlock:
  0. (reversals only) the reversed transaction, by an advisory lock: the journal is
     insert-only for the app's database role, and FOR UPDATE needs UPDATE privilege,
  1. the initiating customer's user row (serialises that customer's rolling limits),
  2. bank accounts, in primary-key order,
  3. the audit chain head (taken last by bankcore.audit).
A customer transfer takes 1 and 2 in one call: `transfer_rows_for_update`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connection, connections

from accounts.models import BankAccount
from bankcore.idempotency import carried_claim
from transactions.models import SupportTicket

_PK = BankAccount._meta.pk
_LOCK_SQL = "SELECT a.* FROM accounts_bankaccount a WHERE <condition> ORDER BY a.id FOR UPDATE OF a"


def bank_accounts_for_update(account_ids: Iterable[UUID], *, ibans: Iterable[str] = ()) -> dict[UUID, BankAccount]:
    """Lock the accounts (by id and/or IBAN) in pk order (each carries `held`, its active holds).

    Hand-written SQL because it runs on every posting: one statement, no ORM compile.
    `owner` is loaded lazily (transfers set the source's owner from the caller).
    """
    ids = [_PK.get_db_prep_value(pk, connection) for pk in set(account_ids)]
    ibans = list(set(ibans))
    if not ids and not ibans:
        return {}
    where = []
    if ids:
        where.append(f"a.id IN ({', '.join(['%s'] * len(ids))})")
    if ibans:
        where.append(f"a.iban IN ({', '.join(['%s'] * len(ibans))})")
    # Only placeholders and fixed clauses are spliced in; every value is a bound parameter.
    sql = _LOCK_SQL.replace("<condition>", " OR ".join(where))
    params = [*ids, *ibans]
    return {row.pk: row for row in BankAccount.objects.raw(sql, params)}


# Advisory-lock namespace of "reversing this journal transaction" (any fixed number unused elsewhere).
_REVERSAL_LOCK_CLASS = 0x7265


def journal_reversal_lock(transaction_id: UUID) -> None:
    """Serialise reversals of one journal transaction until the end of the database transaction.

    An advisory lock, not FOR UPDATE on the journal row: the runtime role may not update the
    journal, and row locks need UPDATE privilege.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_REVERSAL_LOCK_CLASS, str(transaction_id)])


# The customer's limit overrides (None = bank default) and what the window used, in minor units.
UsageRow = tuple[int | None, int | None, int | None, int]


def transfer_rows_for_update(
    *, user_id: Any, currency: str, source_account_id: UUID, destination_iban: str, since: datetime
) -> tuple[dict[UUID, BankAccount], UsageRow | None]:
    """Lock the customer's row, then the source account (by id) and the destination (by IBAN)
    in pk order; return the accounts (each with `held`) and, read under those locks, the
    customer's per-transfer, daily and step-up overrides and the usage since `since`.

    One round trip: `ledger_lock_transfer()` (migrations 0005, 0014, 0020), which reads the
    usage in a new statement after the customer's lock and the accounts as their row locks'
    previous holders left them (FOR UPDATE), so it sees everything those holders committed.
    When neither account exists, the usage is None: read it separately. In a request whose
    Idempotency-Key claim waits to be carried (bankcore.idempotency), the call claims it first.
    """
    db = connections[DEFAULT_DB_ALIAS]
    # In a transfer request this statement also claims its Idempotency-Key: one round trip less.
    claim = carried_claim(user_id=user_id)
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM ledger_lock_transfer(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                user_id,
                source_account_id,
                destination_iban,
                currency,
                since,
                *(claim.arguments() if claim else _NO_CLAIM),
            ],
        )
        rows = cursor.fetchall()
        columns = [column.name for column in cursor.description]
    if claim is not None:
        claim.made(rows[0][0] if rows else None)
    rows = [row for row in rows if row[1] is not None]  # the claim's row when no account exists
    if not rows:
        return {}, None
    # Plain positional model construction: the ORM's raw() machinery cost more than the query.
    take, names = _account_columns(tuple(columns))
    accounts = {}
    for row in rows:
        account = BankAccount.from_db(db.alias, names, [row[i] for i in take])
        accounts[account.pk] = account
    first = dict(zip(columns, rows[0], strict=True))
    usage = (first["limit_per_transfer"], first["limit_daily"], first["limit_step_up_threshold"], first["used_today"])
    return accounts, usage


_NO_CLAIM = [None] * 7  # ledger_lock_transfer()'s claim arguments when it carries none


@lru_cache(maxsize=4)
def _account_columns(columns: tuple[str, ...]) -> tuple[list[int], list[str]]:
    """Where each BankAccount field is in ledger_lock_transfer()'s row, and the field names."""
    fields = BankAccount._meta.concrete_fields
    return [columns.index(field.column) for field in fields], [field.attname for field in fields]


def support_ticket_for_update(ticket_id: UUID | str, *, customer: Any = None) -> SupportTicket | None:
    """Lock one support ticket (only `customer`'s, when given); None if there is none such.

    Tickets lock alone, never with ledger rows, so they take no place in the order above."""
    tickets = SupportTicket.objects.select_for_update(of=("self",)).filter(pk=ticket_id)
    if customer is not None:
        tickets = tickets.filter(customer=customer)
    return tickets.first()

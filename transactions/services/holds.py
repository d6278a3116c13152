"""Holds: funds reserved on an account for a payment that settles later.

`BankAccount.held` is the sum of the account's active holds, changed with the hold rows in
one transaction under the account's row lock. The database refuses a hold beyond what the
account has (check constraint `bank_account_holds_within_funds`), so even two writers that
skipped the lock could not over-hold.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from accounts.models import BankAccount
from bankcore.models import AuditEvent
from bankcore.money import format_amount
from transactions.exceptions import AccountFrozen, InsufficientFunds
from transactions.lock_objects import bank_accounts_for_update
from transactions.models import Hold, Transaction
from transactions.services.ledger import Leg, available_balance, posting_prepare, posting_write

_HELD_SQL = "UPDATE accounts_bankaccount SET held = held + %s WHERE id = %s"


def _move_held(account: BankAccount, delta: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_HELD_SQL, [delta, account.pk])
    account.held += delta


def hold_place(*, account: BankAccount, amount: int, reference: str) -> Hold:
    """Reserve `amount` minor units on `account`: `available` drops now, `balance` at capture.

    Call inside `transaction.atomic` with the account's row locked (lock_objects) and `account`
    the locked instance. Raises AccountFrozen (not active) or InsufficientFunds (more than
    available); the check constraint refuses it in the database too.
    """
    if account.status != BankAccount.Status.ACTIVE:
        raise AccountFrozen(details={"account": str(account.pk)})
    available = available_balance(account)
    if amount > available:
        raise InsufficientFunds(details={"available": format_amount(available, account.currency)})
    _move_held(account, amount)
    return Hold.objects.create(account=account, amount=amount, currency=account.currency, reference=reference)


def _locked_active(hold: Hold, accounts: dict[Any, BankAccount]) -> Hold:
    """The hold re-read under its account's row lock (every change of a hold takes that lock)."""
    current = Hold.objects.get(pk=hold.pk)
    if current.status != Hold.Status.ACTIVE:
        raise HoldNotActive(f"Hold {hold.pk} is {current.status}.")
    current.account = accounts[current.account_id]
    return current


class HoldNotActive(Exception):
    """The hold was captured or released already (a re-driven step that already happened)."""


def hold_release(*, hold: Hold) -> Hold:
    """Give the reserved funds back: `available` rises by the hold's amount. Nothing posts.

    Call inside `transaction.atomic`. Locks the account; raises HoldNotActive if the hold
    has ended already (so a repeated release changes nothing).
    """
    accounts = bank_accounts_for_update([hold.account_id])
    current = _locked_active(hold, accounts)
    _move_held(current.account, -current.amount)
    current.status = Hold.Status.RELEASED
    current.ended_at = timezone.now()
    current.save(update_fields=["status", "ended_at"])
    return current


def hold_capture(
    *,
    hold: Hold,
    clearing_account_id: Any,
    description: str,
    reference: str,
    notices: list[dict[str, Any]] | None = None,
    audit: AuditEvent | None = None,
    kind: str = Transaction.Kind.PAYMENT,
    initiated_by: Any = None,
) -> Transaction:
    """Turn the hold into a posted debit: the account pays the settlement clearing account.
    (`kind` and `initiated_by` label the posting: a transfer to the legacy core is a customer's
    `transfer` and counts against their limits when it posts.)

    Call inside `transaction.atomic`. Locks both accounts (pk order); raises HoldNotActive if
    the hold has ended already, so a capture happens at most once. The funds were reserved,
    so the debit posts even if the account was frozen since (the money is already promised).
    """
    accounts = bank_accounts_for_update([hold.account_id, clearing_account_id])
    current = _locked_active(hold, accounts)
    account = current.account
    _move_held(account, -current.amount)  # first: the posting's funds check counts holds
    posting = posting_prepare(
        kind=kind,
        legs=[Leg(account.pk, -current.amount), Leg(clearing_account_id, current.amount)],
        initiated_by=initiated_by,
        currency=current.currency,
        description=description,
        reference=reference,
        source_account_id=account.pk,
        destination_account_id=clearing_account_id,
        amount=current.amount,
        require_active=False,
        locked=accounts,
    )
    posting_write(posting, notices=notices, audit=audit)
    current.status = Hold.Status.CAPTURED
    current.ended_at = timezone.now()
    current.transaction = posting.journal
    current.save(update_fields=["status", "ended_at", "transaction"])
    return posting.journal

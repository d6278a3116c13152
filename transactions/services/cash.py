"""Teller cash: deposits and withdrawals against the bank's cash vault account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.models import BankAccount
from accounts.services.bank_accounts import internal_account
from bankcore.audit import audit_record
from bankcore.money import format_amount
from transactions.db import atomic_with_retry
from transactions.exceptions import AccountNotFound
from transactions.models import Transaction
from transactions.services.ledger import Leg, post_transaction


def _customer_account(iban: str) -> BankAccount:
    account = BankAccount.objects.filter(iban=iban).exclude(kind=BankAccount.Kind.INTERNAL).first()
    if account is None:
        raise AccountNotFound(f"No customer account has IBAN {iban}.")
    return account


def cash_deposit(
    *, iban: str, amount: int, reference: str = "", actor: Any = None, at: datetime | None = None
) -> Transaction:
    """Credit a customer account with cash paid in; the cash vault is debited. Atomic, audited."""
    account = _customer_account(iban)
    vault = internal_account(purpose="cash_vault", currency=account.currency)

    def work() -> Transaction:
        journal, _ = post_transaction(
            kind=Transaction.Kind.DEPOSIT,
            legs=[Leg(vault.pk, -amount), Leg(account.pk, amount)],
            currency=account.currency,
            reference=reference,
            description=reference or "Cash deposit",
            destination_account_id=account.pk,
            amount=amount,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            at=at,
        )
        audit_record(
            action="deposit.posted",
            actor=actor or "operator",
            target=journal,
            details={
                "account": str(account.pk),
                "amount": format_amount(amount, account.currency),
                "reference": reference,
            },
        )
        return journal

    return atomic_with_retry(work)


def cash_withdraw(
    *, iban: str, amount: int, reference: str = "", actor: Any = None, at: datetime | None = None
) -> Transaction:
    """Pay cash out of a customer account into the teller's hand; the vault is credited.

    Refused (InsufficientFunds) beyond the account's available funds. Atomic, audited.
    """
    account = _customer_account(iban)
    vault = internal_account(purpose="cash_vault", currency=account.currency)

    def work() -> Transaction:
        journal, _ = post_transaction(
            kind=Transaction.Kind.WITHDRAWAL,
            legs=[Leg(account.pk, -amount), Leg(vault.pk, amount)],
            currency=account.currency,
            reference=reference,
            description=reference or "Cash withdrawal",
            source_account_id=account.pk,
            amount=amount,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            at=at,
        )
        audit_record(
            action="withdrawal.posted",
            actor=actor or "operator",
            target=journal,
            details={
                "account": str(account.pk),
                "amount": format_amount(amount, account.currency),
                "reference": reference,
            },
        )
        return journal

    return atomic_with_retry(work)

"""Teller cash: deposits and withdrawals against the bank's cash vault account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from accounts.models import BankAccount
from accounts.services.bank_accounts import internal_account
from bankcore.audit import audit_record
from bankcore.db.retry import atomic_with_retry
from bankcore.money import format_amount
from transactions.exceptions import AccountNotFound
from transactions.models import Transaction
from transactions.services.ledger import Leg, post_transaction


def _customer_account(iban: str) -> BankAccount:
    account = BankAccount.objects.filter(iban=iban).exclude(kind=BankAccount.Kind.INTERNAL).first()
    if account is None:
        raise AccountNotFound(f"No customer account has IBAN {iban}.")
    return account


def _teller_cash(
    *, paid_in: bool, iban: str, amount: int, reference: str, actor: Any, at: datetime | None
) -> Transaction:
    """One teller movement between a customer account and the cash vault. Atomic, audited."""
    account = _customer_account(iban)
    vault = internal_account(purpose="cash_vault", currency=account.currency)
    if paid_in:
        kind, legs, description, action = (
            Transaction.Kind.DEPOSIT,
            [Leg(vault.pk, -amount), Leg(account.pk, amount)],
            "Cash deposit",
            "deposit.posted",
        )
        sides: dict[str, Any] = {"destination_account_id": account.pk}
    else:
        kind, legs, description, action = (
            Transaction.Kind.WITHDRAWAL,
            [Leg(account.pk, -amount), Leg(vault.pk, amount)],
            "Cash withdrawal",
            "withdrawal.posted",
        )
        sides = {"source_account_id": account.pk}

    def work() -> Transaction:
        journal, _ = post_transaction(
            kind=kind,
            legs=legs,
            currency=account.currency,
            reference=reference,
            description=reference or description,
            amount=amount,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            at=at,
            **sides,
        )
        audit_record(
            action=action,
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


def cash_deposit(
    *, iban: str, amount: int, reference: str = "", actor: Any = None, at: datetime | None = None
) -> Transaction:
    """Credit a customer account with cash paid in; the cash vault is debited. Atomic, audited."""
    return _teller_cash(paid_in=True, iban=iban, amount=amount, reference=reference, actor=actor, at=at)


def cash_withdraw(
    *, iban: str, amount: int, reference: str = "", actor: Any = None, at: datetime | None = None
) -> Transaction:
    """Pay cash out of a customer account into the teller's hand; the vault is credited.

    Refused (InsufficientFunds) beyond the account's available funds. Atomic, audited.
    """
    return _teller_cash(paid_in=False, iban=iban, amount=amount, reference=reference, actor=actor, at=at)

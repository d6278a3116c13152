"""Factories for ledger tests. Money enters accounts only through the services."""

from __future__ import annotations

from accounts.services.bank_accounts import bank_account_open
from accounts.tests.factories import UserFactory
from transactions.services.cash import cash_deposit

CustomerFactory = UserFactory


def open_account(owner, *, currency: str = "EUR", kind: str = "current", balance: int = 0, name: str = ""):
    """A customer account, funded by a real teller deposit when `balance` > 0 (minor units)."""
    account = bank_account_open(owner=owner, kind=kind, currency=currency, name=name)
    if balance:
        cash_deposit(iban=account.iban, amount=balance, reference="test funding")
        account.refresh_from_db()
    return account

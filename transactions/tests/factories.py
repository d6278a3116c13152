"""Factories for ledger tests. Money enters accounts only through the services."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from accounts.services.bank_accounts import bank_account_open
from transactions.services.cash import cash_deposit


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        password = kwargs.pop("password", None)
        user = model_class.objects.create_user(*args, **kwargs)
        if password:
            user.set_password(password)
        return user


def open_account(owner, *, currency: str = "EUR", kind: str = "current", balance: int = 0, name: str = ""):
    """A customer account, funded by a real teller deposit when `balance` > 0 (minor units)."""
    account = bank_account_open(owner=owner, kind=kind, currency=currency, name=name)
    if balance:
        cash_deposit(iban=account.iban, amount=balance, reference="test funding")
        account.refresh_from_db()
    return account

"""Opening bank accounts and finding the bank's own internal accounts."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from accounts.models import BankAccount
from bankcore.money import SUPPORTED_CURRENCIES

# The bank's own accounts; the sum over every account, theirs included, is always zero.
INTERNAL_ACCOUNTS = {
    "cash_vault": "Cash vault",
    "fees_income": "Fees income",
    "settlement_clearing": "Settlement clearing",
    "suspense": "Suspense",
    "migration": "Migration",
    "adjustments": "Manual adjustments",
    # Money on its way to or from the legacy core (transfers with a legacy account).
    "legacy_clearing": "Legacy core clearing",
}
_IBAN_ATTEMPTS = 10


class InvalidIBAN(ValueError):
    """Not a valid IBAN (syntax, country format or mod-97 check digits)."""


def iban_normalize(text: str) -> str:
    """'de89 3704 0044 0532 0130 00' -> 'DE89370400440532013000', or InvalidIBAN."""
    try:
        return IBAN(str(text)).compact
    except (SchwiftyException, ValueError) as exc:
        raise InvalidIBAN(str(exc) or "Invalid IBAN.") from None


def iban_generate() -> str:
    """A fresh IBAN of this bank (country and bank code from settings) with valid check digits."""
    spec_length = len(IBAN.generate(settings.BANK_COUNTRY_CODE, bank_code=settings.BANK_CODE, account_code="0").bban)
    account_digits = spec_length - len(settings.BANK_CODE)
    account_code = str(secrets.randbelow(10**account_digits)).zfill(account_digits)
    return IBAN.generate(settings.BANK_COUNTRY_CODE, bank_code=settings.BANK_CODE, account_code=account_code).compact


def _create_with_fresh_iban(**fields: Any) -> BankAccount:
    for _ in range(_IBAN_ATTEMPTS):
        try:
            with transaction.atomic():
                return BankAccount.objects.create(iban=iban_generate(), **fields)
        except IntegrityError:
            if (
                fields.get("internal_code")
                and BankAccount.objects.filter(internal_code=fields["internal_code"]).exists()
            ):
                raise
            continue  # an IBAN collision: draw another number
    raise RuntimeError("Could not allocate a unique IBAN.")


def bank_account_open(*, owner: Any, kind: str, currency: str, name: str = "") -> BankAccount:
    """Open a customer account (balance 0) with a new unique IBAN. Atomic."""
    if kind not in (BankAccount.Kind.CURRENT, BankAccount.Kind.SAVINGS):
        raise ValueError(f"Customers cannot open {kind!r} accounts.")
    if currency not in SUPPORTED_CURRENCIES:
        raise ValueError(f"Unsupported currency {currency!r}.")
    name = name or f"{BankAccount.Kind(kind).label} account {currency}"
    return _create_with_fresh_iban(owner=owner, kind=kind, currency=currency, name=name)


def internal_account(*, purpose: str, currency: str) -> BankAccount:
    """The bank's internal account for `purpose` in `currency`, created on first use.

    Race-safe: internal_code is unique, so two first uses at once create one account.
    """
    if purpose not in INTERNAL_ACCOUNTS:
        raise ValueError(f"Unknown internal account {purpose!r}.")
    code = f"{purpose}:{currency}"
    account = BankAccount.objects.filter(internal_code=code).first()
    if account is not None:
        return account
    try:
        return _create_with_fresh_iban(
            internal_code=code,
            owner=None,
            kind=BankAccount.Kind.INTERNAL,
            currency=currency,
            name=f"{INTERNAL_ACCOUNTS[purpose]} {currency}",
        )
    except IntegrityError:
        return BankAccount.objects.get(internal_code=code)


def bank_account_set_status(*, account: BankAccount, status: str, actor: Any) -> BankAccount:
    """Freeze, unfreeze or close an account (staff). Audited, atomic."""
    from bankcore.audit import audit_record

    with transaction.atomic():
        locked = BankAccount.objects.select_for_update().get(pk=account.pk)
        previous = locked.status
        locked.status = BankAccount.Status(status)
        locked.save(update_fields=["status"])
        audit_record(
            action=f"bank_account.{status}", actor=actor, target=locked, details={"from": previous, "to": status}
        )
    return locked


def bank_account_set_overdraft(*, account: BankAccount, overdraft_limit: int, actor: Any) -> BankAccount:
    """Change the overdraft limit (minor units, >= 0). Lowering it below a negative balance is refused."""
    from bankcore.audit import audit_record

    if overdraft_limit < 0:
        raise ValueError("Overdraft limit cannot be negative.")
    with transaction.atomic():
        locked = BankAccount.objects.select_for_update().get(pk=account.pk)
        if locked.kind != BankAccount.Kind.INTERNAL and locked.balance - locked.held < -overdraft_limit:
            raise ValueError("The balance is already below that overdraft; it cannot be lowered that far.")
        previous = locked.overdraft_limit
        locked.overdraft_limit = overdraft_limit
        locked.save(update_fields=["overdraft_limit"])
        audit_record(
            action="bank_account.overdraft_changed",
            actor=actor,
            target=locked,
            details={"from": previous, "to": overdraft_limit},
        )
    return locked

"""Shared parsing for the teller commands (deposit, withdraw)."""

from __future__ import annotations

import abc
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import BankAccount
from accounts.services.bank_accounts import InvalidIBAN, iban_normalize
from bankcore.api.exceptions import BankError
from bankcore.money import InvalidAmount, format_amount, parse_amount


class CashCommand(BaseCommand, abc.ABC):
    verb = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("iban", help="The customer's IBAN (spaces allowed).")
        parser.add_argument("amount", help='Decimal amount in the account\'s currency, e.g. "250.00".')
        parser.add_argument("--reference", default="", help="Teller reference, e.g. the slip number.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            iban = iban_normalize(options["iban"])
        except InvalidIBAN as exc:
            raise CommandError(f"Invalid IBAN: {exc}") from None
        account = BankAccount.objects.filter(iban=iban).exclude(kind=BankAccount.Kind.INTERNAL).first()
        if account is None:
            raise CommandError(f"No customer account has IBAN {iban}.")
        try:
            amount = parse_amount(options["amount"], account.currency)
        except InvalidAmount as exc:
            raise CommandError(str(exc)) from None
        try:
            journal = self.post(iban=iban, amount=amount, reference=options["reference"][:140])
        except BankError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        account.refresh_from_db(fields=["balance"])
        self.stdout.write(
            self.style.SUCCESS(
                f"{self.verb} {format_amount(amount, account.currency)} {account.currency} "
                f"{'to' if self.verb == 'Deposited' else 'from'} {iban}; transaction {journal.pk}; "
                f"balance now {format_amount(account.balance, account.currency)} {account.currency}"
            )
        )

    @abc.abstractmethod
    def post(self, *, iban: str, amount: int, reference: str) -> Any:
        """Call the cash service for this command (deposit or withdraw); return its journal transaction."""

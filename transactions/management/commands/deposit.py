from __future__ import annotations

from typing import Any

from transactions.management.commands._cash import CashCommand
from transactions.services.cash import cash_deposit


class Command(CashCommand):
    help = "Teller cash deposit: credit a customer's account against the bank's cash vault."
    verb = "Deposited"

    def post(self, *, iban: str, amount: int, reference: str) -> Any:
        return cash_deposit(iban=iban, amount=amount, reference=reference, actor="operator:deposit")

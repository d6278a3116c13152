from __future__ import annotations

from typing import Any

from transactions.management.commands._cash import CashCommand
from transactions.services.cash import cash_withdraw


class Command(CashCommand):
    help = "Teller cash withdrawal: debit a customer's account (within available funds) into the cash vault."
    verb = "Withdrew"

    def post(self, *, iban: str, amount: int, reference: str) -> Any:
        return cash_withdraw(iban=iban, amount=amount, reference=reference, actor="operator:withdraw")

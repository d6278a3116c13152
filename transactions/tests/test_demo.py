"""seed_demo's banking part: believable, idempotent, and a ledger that verifies."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.models import BankAccount
from transactions.models import Beneficiary, Entry, StandingOrder, Transaction
from transactions.services.verify import ledger_verify

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_seed_demo_builds_a_bank_with_history_and_is_idempotent(capsys):
    call_command("seed_demo")
    accounts = BankAccount.objects.exclude(kind="internal").count()
    transactions = Transaction.objects.count()
    assert accounts >= 6
    assert transactions > 50
    assert Beneficiary.objects.exists() and StandingOrder.objects.exists()
    oldest = Entry.objects.order_by("created_at").first().created_at
    newest = Entry.objects.order_by("-created_at").first().created_at
    assert (newest - oldest).days >= 90  # months of history
    assert ledger_verify().ok
    call_command("seed_demo")
    assert BankAccount.objects.exclude(kind="internal").count() == accounts
    assert Transaction.objects.count() == transactions
    assert "demo" in capsys.readouterr().out.lower()

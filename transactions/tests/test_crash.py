"""A process killed mid-transfer (after its writes, before COMMIT) moves no money."""

from __future__ import annotations

import signal

import pytest

from bankcore.testing import run_python
from transactions.models import Transaction
from transactions.services.transfers import transfer_create
from transactions.services.verify import ledger_verify
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

_KILLED_MID_TRANSFER = """
import os, signal, sys, uuid
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import transaction
from transactions.services.transfers import transfer_create
user = get_user_model().objects.get(pk=sys.argv[1])
with transaction.atomic():
    transfer_create(user=user, source_account_id=uuid.UUID(sys.argv[2]), destination_iban=sys.argv[3],
                    amount=4_000, currency="EUR")
    print("posted, not committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_process_leaves_balances_untouched_and_releases_its_locks():
    owner = CustomerFactory()
    source, destination = open_account(owner, balance=10_000), open_account(CustomerFactory())
    result = run_python(_KILLED_MID_TRANSFER, str(owner.pk), str(source.pk), destination.iban)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    assert b"posted, not committed" in result.stdout
    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (10_000, 0)
    assert Transaction.objects.filter(kind="transfer").count() == 0
    # The dead session's row locks are gone: the same accounts transfer at once.
    transfer_create(
        user=owner, source_account_id=source.pk, destination_iban=destination.iban, amount=1, currency="EUR"
    )
    assert ledger_verify().ok

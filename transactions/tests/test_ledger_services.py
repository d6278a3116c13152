"""post_transaction, teller cash and verify_ledger."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from accounts.models import BankAccount
from accounts.services.bank_accounts import internal_account
from bankcore.models import AuditEvent
from transactions.exceptions import AccountFrozen, CurrencyMismatch, InsufficientFunds, LedgerUnbalanced
from transactions.models import Entry, Transaction
from transactions.services.cash import cash_deposit, cash_withdraw
from transactions.services.ledger import Leg, post_transaction
from transactions.services.verify import ledger_verify
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_deposit_credits_the_account_and_debits_the_cash_vault(customer):
    account = open_account(customer)
    journal = cash_deposit(iban=account.iban, amount=25_000, reference="slip 7")
    account.refresh_from_db()
    vault = internal_account(purpose="cash_vault", currency="EUR")
    assert account.balance == 25_000
    assert vault.balance == -25_000
    assert sorted(journal.entries.values_list("amount", flat=True)) == [-25_000, 25_000]
    assert AuditEvent.objects.filter(action="deposit.posted", target_id=str(journal.pk)).exists()
    assert ledger_verify().ok


def test_withdrawal_beyond_available_funds_changes_nothing(customer):
    account = open_account(customer, balance=1_000)
    with pytest.raises(InsufficientFunds):
        cash_withdraw(iban=account.iban, amount=1_001)
    account.refresh_from_db()
    assert account.balance == 1_000
    assert Transaction.objects.filter(kind="withdrawal").count() == 0


def test_withdrawal_may_use_the_overdraft(customer):
    account = open_account(customer, balance=1_000)
    BankAccount.objects.filter(pk=account.pk).update(overdraft_limit=500)
    cash_withdraw(iban=account.iban, amount=1_500)
    account.refresh_from_db()
    assert account.balance == -500
    assert ledger_verify().ok


def test_entries_record_the_balance_after_each_posting(customer):
    account = open_account(customer)
    cash_deposit(iban=account.iban, amount=300)
    cash_deposit(iban=account.iban, amount=200)
    cash_withdraw(iban=account.iban, amount=100)
    assert list(Entry.objects.filter(account=account).order_by("id").values_list("amount", "balance_after")) == [
        (300, 300),
        (200, 500),
        (-100, 400),
    ]


def test_unbalanced_legs_are_refused_before_touching_the_database(customer):
    a, b = open_account(customer, balance=500), open_account(customer)
    with pytest.raises(LedgerUnbalanced), transaction.atomic():
        post_transaction(kind="adjustment", legs=[Leg(a.pk, -100), Leg(b.pk, 99)], currency="EUR")
    assert Transaction.objects.filter(kind="adjustment").count() == 0


def test_leg_in_a_foreign_currency_is_refused(customer):
    eur, usd = open_account(customer, balance=500), open_account(customer, currency="USD")
    with pytest.raises(CurrencyMismatch), transaction.atomic():
        post_transaction(kind="transfer", legs=[Leg(eur.pk, -100), Leg(usd.pk, 100)], currency="EUR")


def test_frozen_account_cannot_move_money(customer):
    a, b = open_account(customer, balance=500), open_account(customer)
    BankAccount.objects.filter(pk=b.pk).update(status="frozen")
    with pytest.raises(AccountFrozen), transaction.atomic():
        post_transaction(kind="transfer", legs=[Leg(a.pk, -100), Leg(b.pk, 100)], currency="EUR")


def test_active_holds_reduce_what_can_be_spent(customer):
    from transactions.lock_objects import bank_accounts_for_update
    from transactions.services.holds import hold_place

    a, b = open_account(customer, balance=1_000), open_account(customer)
    with transaction.atomic():
        hold_place(account=bank_accounts_for_update([a.pk])[a.pk], amount=600, reference="test")
    with pytest.raises(InsufficientFunds), transaction.atomic():
        post_transaction(kind="transfer", legs=[Leg(a.pk, -500), Leg(b.pk, 500)], currency="EUR")
    with transaction.atomic():
        post_transaction(kind="transfer", legs=[Leg(a.pk, -400), Leg(b.pk, 400)], currency="EUR")


def test_internal_accounts_are_created_once(db):
    first = internal_account(purpose="fees_income", currency="JPY")
    again = internal_account(purpose="fees_income", currency="JPY")
    assert first.pk == again.pk
    assert first.kind == "internal" and first.owner_id is None


def test_verify_ledger_passes_on_a_consistent_ledger(customer, capsys):
    account = open_account(customer, balance=12_345)
    cash_withdraw(iban=account.iban, amount=345)
    call_command("verify_ledger")
    out = capsys.readouterr().out
    assert "ledger OK" in out
    assert "total EUR: 0.00" in out
    assert "transactions: 2" in out


def test_verify_ledger_exits_1_naming_a_balance_that_disagrees_with_its_entries(customer, capsys):
    account = open_account(customer, balance=1_000)
    with connection.cursor() as cur:  # bypass the ledger, as a bad script would
        cur.execute("UPDATE accounts_bankaccount SET balance = balance + 1 WHERE id = %s", [account.pk])
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_ledger")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"account {account.iban}" in err
    assert "balance 1001 != sum of entries 1000" in err
    assert "total of all EUR balances is 0.01, not 0" in err


def test_deposit_command_posts_and_prints_the_new_balance(customer, capsys):
    account = open_account(customer)
    call_command("deposit", account.iban, "100.50", reference="slip 9")
    call_command("withdraw", account.iban, "0.50")
    out = capsys.readouterr().out
    assert "Deposited 100.50 EUR" in out
    assert "balance now 100.00 EUR" in out
    account.refresh_from_db()
    assert account.balance == 10_000


def test_deposit_command_refuses_a_malformed_amount(customer):
    from django.core.management.base import CommandError

    account = open_account(customer)
    with pytest.raises(CommandError, match="decimal places"):
        call_command("deposit", account.iban, "1.001")
    with pytest.raises(CommandError, match="IBAN"):
        call_command("deposit", "DE00123", "1.00")


def test_jpy_amounts_have_no_minor_digits():
    from bankcore.money import format_amount, parse_amount

    assert parse_amount("1500", "JPY") == 1500
    assert format_amount(1500, "JPY") == "1500"


def test_internal_account_may_go_negative_but_customers_may_not(db):
    from django.db import IntegrityError

    from transactions.tests.snapshots import assert_unchanged, ledger_snapshot

    account = open_account(CustomerFactory(), balance=100)
    suspense = internal_account(purpose="suspense", currency="EUR")
    # The same kind of posting, each way round: the bank's account goes below zero...
    post_transaction(kind="adjustment", legs=[Leg(suspense.pk, -40), Leg(account.pk, 40)], currency="EUR")
    suspense.refresh_from_db()
    assert suspense.balance == -40
    # ...a customer's (no overdraft) is refused one minor unit below zero, and nothing moves.
    before = ledger_snapshot()
    with pytest.raises(InsufficientFunds), transaction.atomic():
        post_transaction(kind="adjustment", legs=[Leg(account.pk, -141), Leg(suspense.pk, 141)], currency="EUR")
    assert_unchanged(before, ledger_snapshot())
    post_transaction(kind="adjustment", legs=[Leg(account.pk, -140), Leg(suspense.pk, 140)], currency="EUR")
    account.refresh_from_db()
    assert account.balance == 0
    # The database itself refuses a negative customer balance, even behind the services' back.
    with pytest.raises(IntegrityError, match="bank_account_balance_within_overdraft"), transaction.atomic():
        BankAccount.objects.filter(pk=account.pk).update(balance=-1)
    BankAccount.objects.filter(pk=suspense.pk).update(balance=-(10**9))  # an internal one: allowed


def test_entries_never_go_back_in_time_on_an_account_even_if_a_clock_does(customer):
    """An app server whose clock lags must not make history, statements or verify_ledger disorder."""
    from datetime import timedelta

    from django.utils import timezone

    account = open_account(customer)
    cash_deposit(iban=account.iban, amount=500)
    lagging = timezone.now() - timedelta(minutes=5)
    cash_withdraw(iban=account.iban, amount=200, at=lagging)
    entries = list(Entry.objects.filter(account=account).order_by("created_at", "id"))
    assert [e.balance_after for e in entries] == [500, 300]
    assert entries[1].created_at >= entries[0].created_at
    assert ledger_verify().ok


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_transfer_is_audited_in_the_hash_chain_with_its_posting(customer):
    from bankcore.audit import verify_chain
    from transactions.services.transfers import transfer_create

    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    journals = [
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
        )
        for _ in range(3)
    ]
    events = list(AuditEvent.objects.filter(action="transfer.posted").order_by("id"))
    assert [event.target_id for event in events] == [str(journal.pk) for journal in journals]
    assert events[0].actor_id == customer.pk
    assert events[0].details == {
        "source": str(source.pk),
        "destination": str(destination.pk),
        "amount": "1.00",
        "currency": "EUR",
    }
    assert [event.prev_hash for event in events[1:]] == [event.hash for event in events[:-1]]
    assert not [step for step in verify_chain() if not isinstance(step, int)]  # no ChainBreak


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_rolling_daily_limit_forgets_transfers_older_than_24_hours(customer):
    from datetime import timedelta

    from django.utils import timezone

    from transactions.exceptions import LimitExceeded
    from transactions.models import CustomerLimit, LimitUsage
    from transactions.services.limits import limits_for
    from transactions.services.transfers import transfer_create

    source, destination = open_account(customer, balance=100_000), open_account(CustomerFactory())
    now = timezone.now()
    for hours_ago, amount in ((25, 7_000), (23, 2_000)):
        post_transaction(
            kind=Transaction.Kind.TRANSFER,
            legs=[Leg(source.pk, -amount), Leg(destination.pk, amount)],
            currency="EUR",
            initiated_by=customer,
            amount=amount,
            source_account_id=source.pk,
            destination_account_id=destination.pk,
            at=now - timedelta(hours=hours_ago),
        )
    assert LimitUsage.objects.filter(user=customer).count() == 2  # one row per minute used
    assert limits_for(user=customer, currency="EUR").used_today == 2_000
    CustomerLimit.objects.create(user=customer, currency="EUR", daily=3_000)

    def send(amount: int) -> None:
        transfer_create(
            user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=amount, currency="EUR"
        )

    send(1_000)  # 2,000 + 1,000: exactly the limit; the 7,000 of 25 hours ago no longer counts
    with pytest.raises(LimitExceeded):
        send(1)
    assert limits_for(user=customer, currency="EUR").used_today == 3_000


def test_a_posted_transfer_carries_its_related_rows_without_further_queries(customer, django_assert_num_queries):
    from transactions.services.transfers import transfer_create

    source, destination = open_account(customer, balance=5_000), open_account(CustomerFactory())
    journal = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=100, currency="EUR"
    )
    with django_assert_num_queries(0):  # the API serializes these right after posting
        assert journal.initiated_by == customer
        assert journal.source_account.iban == source.iban
        assert journal.destination_account.iban == destination.iban
        assert journal.reverses is None
    stored = Transaction.objects.get(pk=journal.pk)
    assert (stored.initiated_by_id, stored.source_account_id, stored.destination_account_id) == (
        customer.pk,
        source.pk,
        destination.pk,
    )

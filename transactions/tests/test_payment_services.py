"""Payments to other banks, the customer-facing half: acceptance with a hold, cancel, holds in the database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import BankAccount
from transactions.exceptions import (
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidPayment,
    LimitExceeded,
    PaymentNotCancellable,
    PaymentNotFound,
)
from transactions.models import Beneficiary, Hold, LimitUsage, Payment, PaymentEvent
from transactions.services.limits import limits_for
from transactions.services.payments import Creditor, payment_cancel, payment_create
from transactions.services.verify import ledger_verify
from transactions.tests.factories import CustomerFactory, open_account

CREDITOR = Creditor(name="Erika Mustermann", iban="DE89370400440532013000", bic="COBADEFFXXX")

pytestmark = pytest.mark.django_db


def _pay(user, account, amount, **extra):
    return payment_create(
        user=user, source_account_id=account.pk, amount=amount, currency="EUR", creditor=CREDITOR, **extra
    )


def test_an_accepted_payment_holds_the_amount_and_starts_its_timeline(customer):
    account = open_account(customer, balance=10_000)
    payment = _pay(customer, account, 2_500, remittance_information="Invoice 42")
    account.refresh_from_db()
    assert (account.balance, account.held) == (10_000, 2_500)  # available drops, balance does not
    assert payment.status == "pending" and payment.hold.status == Hold.Status.ACTIVE
    assert payment.end_to_end_id.startswith("E2E") and len(payment.end_to_end_id) <= 35
    assert list(PaymentEvent.objects.filter(payment=payment).values_list("status", flat=True)) == ["pending"]
    assert limits_for(user=customer, currency="EUR").used_today == 2_500
    assert ledger_verify().ok


def test_a_payment_beyond_available_funds_changes_nothing(customer):
    account = open_account(customer, balance=1_000)
    _pay(customer, account, 800)
    with pytest.raises(InsufficientFunds):
        _pay(customer, account, 201)
    account.refresh_from_db()
    assert account.held == 800 and Payment.objects.count() == 1 and Hold.objects.count() == 1


def test_a_transfer_cannot_spend_what_a_payment_holds(customer):
    from transactions.services.transfers import transfer_create

    account, other = open_account(customer, balance=1_000), open_account(customer)
    _pay(customer, account, 900)
    with pytest.raises(InsufficientFunds):
        transfer_create(
            user=customer, source_account_id=account.pk, destination_iban=other.iban, amount=101, currency="EUR"
        )


def test_the_creditor_is_validated_field_by_field(customer):
    account = open_account(customer, balance=1_000)
    with pytest.raises(InvalidPayment) as error:
        payment_create(
            user=customer,
            source_account_id=account.pk,
            amount=100,
            currency="EUR",
            creditor=Creditor(name="", iban="DE00370400440532013000", bic="NOTABIC!"),
        )
    assert set(error.value.details) == {"creditor.name", "creditor.iban", "creditor.bic"}
    assert Payment.objects.count() == 0


def test_a_payment_to_an_account_of_this_bank_is_refused(customer, other_customer):
    account, theirs = open_account(customer, balance=1_000), open_account(other_customer)
    with pytest.raises(InvalidPayment) as error:
        payment_create(
            user=customer,
            source_account_id=account.pk,
            amount=100,
            currency="EUR",
            creditor=Creditor(name="Them", iban=theirs.iban),
        )
    assert "creditor.iban" in error.value.details


def test_a_beneficiary_may_name_the_creditor_but_only_the_customers_own(customer, other_customer):
    account = open_account(customer, balance=1_000)
    mine = Beneficiary.objects.create(owner=customer, name="Landlord", iban=CREDITOR.iban)
    theirs = Beneficiary.objects.create(owner=other_customer, name="Theirs", iban=CREDITOR.iban)
    payment = payment_create(
        user=customer, source_account_id=account.pk, amount=100, currency="EUR", beneficiary_id=mine.pk
    )
    assert (payment.creditor_name, payment.creditor_iban) == ("Landlord", CREDITOR.iban)
    with pytest.raises(InvalidPayment):
        payment_create(
            user=customer, source_account_id=account.pk, amount=100, currency="EUR", beneficiary_id=theirs.pk
        )


def test_another_customers_account_is_not_found(customer, other_customer):
    theirs = open_account(other_customer, balance=1_000)
    with pytest.raises(AccountNotFound):
        _pay(customer, theirs, 100)


def test_payments_are_sepa_euro_and_not_in_the_past(customer):
    account = open_account(customer, currency="GBP", balance=1_000)
    with pytest.raises(CurrencyMismatch):
        payment_create(user=customer, source_account_id=account.pk, amount=100, currency="GBP", creditor=CREDITOR)
    eur = open_account(customer, balance=1_000)
    with pytest.raises(InvalidPayment):
        _pay(customer, eur, 100, requested_execution_date=timezone.localdate() - timedelta(days=1))


def test_payments_count_against_the_rolling_limit(customer, settings):
    settings.TRANSFER_LIMIT_DAILY = "30.00"
    account = open_account(customer, balance=10_000)
    _pay(customer, account, 2_000)
    with pytest.raises(LimitExceeded):
        _pay(customer, account, 1_001)


def test_cancel_releases_the_hold_and_gives_the_limit_back(customer):
    account = open_account(customer, balance=5_000)
    payment = _pay(customer, account, 3_000)
    cancelled = payment_cancel(user=customer, payment_id=payment.pk)
    account.refresh_from_db()
    assert cancelled.status == "cancelled" and account.held == 0 and account.balance == 5_000
    assert Hold.objects.get(pk=payment.hold_id).status == Hold.Status.RELEASED
    assert limits_for(user=customer, currency="EUR").used_today == 0
    assert list(PaymentEvent.objects.filter(payment=payment).order_by("id").values_list("status", flat=True)) == [
        "pending",
        "cancelled",
    ]
    with pytest.raises(PaymentNotCancellable):
        payment_cancel(user=customer, payment_id=payment.pk)
    assert ledger_verify().ok


def test_only_the_owner_may_cancel(customer, other_customer):
    payment = _pay(customer, open_account(customer, balance=5_000), 3_000)
    with pytest.raises(PaymentNotFound):
        payment_cancel(user=other_customer, payment_id=payment.pk)
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_the_database_refuses_an_over_hold_even_past_the_service(customer):
    account = open_account(customer, balance=1_000)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_bankaccount SET held = 1001 WHERE id = %s", [account.pk])
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_bankaccount SET held = -1 WHERE id = %s", [account.pk])


def test_an_ended_hold_cannot_be_reopened_or_deleted(customer):
    payment = _pay(customer, open_account(customer, balance=5_000), 100)
    payment_cancel(user=customer, payment_id=payment.pk)
    with pytest.raises(Exception, match=r"hold_ended_is_final|protect"), transaction.atomic():
        Hold.objects.filter(pk=payment.hold_id).update(status="active")
    with pytest.raises(Exception, match=r"hold_no_delete|protect"), transaction.atomic():
        Hold.objects.filter(pk=payment.hold_id).delete()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_payments_against_one_balance_never_over_hold():
    customer = CustomerFactory()
    account = open_account(customer, balance=10_000)  # room for exactly 6 payments of 15.00
    start = threading.Barrier(20)

    def pay(_: int) -> str:
        try:
            start.wait()
            _pay(customer, account, 1_500)
            return "accepted"
        except InsufficientFunds:
            return "insufficient"
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(pay, range(20)))
    account = BankAccount.objects.get(pk=account.pk)
    assert outcomes.count("accepted") == 6 and outcomes.count("insufficient") == 14
    assert account.held == 9_000 and account.balance == 10_000
    assert Hold.objects.filter(account=account, status="active").count() == 6
    assert sum(LimitUsage.objects.filter(user=customer).values_list("amount", flat=True)) == 9_000
    assert ledger_verify().ok

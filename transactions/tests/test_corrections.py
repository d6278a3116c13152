"""Staff corrections: reversals, maker-checker adjustments, freeze/overdraft/limits - all audited."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site

from accounts.models import BankAccount
from bankcore.models import AuditEvent
from bankcore.testing import admin_request
from transactions.exceptions import AdjustmentNotPending, AlreadyReversed, InsufficientFunds, MakerCannotApprove
from transactions.models import AdjustmentRequest, CustomerLimit, Entry, Transaction
from transactions.services.corrections import (
    adjustment_approve,
    adjustment_propose,
    adjustment_reject,
    transaction_reverse,
)
from transactions.services.transfers import transfer_create
from transactions.services.verify import ledger_verify
from transactions.tests.factories import CustomerFactory, open_account

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def staff():
    return CustomerFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def checker():
    return CustomerFactory(is_staff=True, is_superuser=True)


def test_reversal_posts_a_new_transaction_that_undoes_the_original(customer, staff):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    original = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=3_000, currency="EUR"
    )
    reversal = transaction_reverse(transaction_id=original.pk, actor=staff, reason="Sent in error")
    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (10_000, 0)
    assert reversal.reverses_id == original.pk and reversal.kind == "reversal"
    assert Entry.objects.filter(transaction=original).count() == 2  # the original is untouched
    assert AuditEvent.objects.filter(action="transaction.reversed", target_id=str(reversal.pk)).exists()
    with pytest.raises(AlreadyReversed):
        transaction_reverse(transaction_id=original.pk, actor=staff)
    with pytest.raises(AlreadyReversed):
        transaction_reverse(transaction_id=reversal.pk, actor=staff)
    assert ledger_verify().ok


def test_reversal_never_overdraws_a_recipient_who_spent_the_money(customer, staff):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    original = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=3_000, currency="EUR"
    )
    from transactions.services.cash import cash_withdraw

    cash_withdraw(iban=destination.iban, amount=2_000)
    with pytest.raises(InsufficientFunds):
        transaction_reverse(transaction_id=original.pk, actor=staff)
    assert Transaction.objects.filter(kind="reversal").count() == 0


def test_adjustment_posts_only_after_a_different_staff_member_approves(customer, staff, checker):
    account = open_account(customer, balance=1_000)
    adjustment = adjustment_propose(account=account, amount=-250, reason="Duplicate fee refund reversal", actor=staff)
    account.refresh_from_db()
    assert account.balance == 1_000  # proposed, not posted
    with pytest.raises(MakerCannotApprove):
        adjustment_approve(adjustment_id=adjustment.pk, actor=staff)
    adjustment = adjustment_approve(adjustment_id=adjustment.pk, actor=checker)
    account.refresh_from_db()
    assert account.balance == 750 and adjustment.status == "posted" and adjustment.decided_by == checker
    with pytest.raises(AdjustmentNotPending):
        adjustment_approve(adjustment_id=adjustment.pk, actor=checker)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"adjustment.proposed", "adjustment.approved"} <= actions
    assert ledger_verify().ok


def test_rejected_adjustment_never_posts(customer, staff, checker):
    account = open_account(customer, balance=1_000)
    adjustment = adjustment_propose(account=account, amount=500, reason="Goodwill", actor=staff)
    adjustment_reject(adjustment_id=adjustment.pk, actor=checker)
    with pytest.raises(AdjustmentNotPending):
        adjustment_approve(adjustment_id=adjustment.pk, actor=checker)
    assert Transaction.objects.filter(kind="adjustment").count() == 0


def test_admin_approve_action_refuses_the_maker(customer, staff, checker):
    account = open_account(customer, balance=1_000)
    adjustment_propose(account=account, amount=100, reason="Interest correction", actor=staff)
    model_admin = site._registry[AdjustmentRequest]
    queryset = AdjustmentRequest.objects.all()
    model_admin.actions[0](model_admin, admin_request(staff, "post"), queryset)
    assert AdjustmentRequest.objects.get().status == "pending"
    model_admin.actions[0](model_admin, admin_request(checker, "post"), queryset)
    assert AdjustmentRequest.objects.get().status == "posted"


def test_admin_freeze_and_unfreeze_are_audited_and_block_transfers(customer, staff):
    account, other = open_account(customer, balance=1_000), open_account(CustomerFactory())
    model_admin = site._registry[BankAccount]
    freeze, unfreeze = model_admin.actions
    freeze(model_admin, admin_request(staff, "post"), BankAccount.objects.filter(pk=account.pk))
    account.refresh_from_db()
    assert account.status == "frozen"
    from transactions.exceptions import AccountFrozen

    with pytest.raises(AccountFrozen):
        transfer_create(
            user=customer, source_account_id=account.pk, destination_iban=other.iban, amount=1, currency="EUR"
        )
    unfreeze(model_admin, admin_request(staff, "post"), BankAccount.objects.filter(pk=account.pk))
    account.refresh_from_db()
    assert account.status == "active"
    assert list(AuditEvent.objects.filter(action__startswith="bank_account.").values_list("action", flat=True)) == [
        "bank_account.frozen",
        "bank_account.active",
    ]


def test_admin_limit_override_goes_through_the_audited_service(customer, staff):
    model_admin = site._registry[CustomerLimit]
    limit = CustomerLimit(user=customer, currency="EUR", daily=5_000)
    model_admin.save_model(admin_request(staff, "post"), limit, form=None, change=False)
    assert CustomerLimit.objects.get(user=customer).daily == 5_000
    assert AuditEvent.objects.filter(action="limits.changed").count() == 1


def test_journal_and_entries_are_read_only_in_the_admin(staff):
    request = admin_request(staff, "post")
    for model in (Transaction, Entry):
        model_admin = site._registry[model]
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)


@pytest.mark.parametrize(
    "model", [BankAccount, Transaction, Entry, AdjustmentRequest, CustomerLimit], ids=lambda m: m.__name__
)
def test_admin_pages_render_for_staff(customer, staff, model):
    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=5, currency="EUR"
    )
    adjustment_propose(account=source, amount=100, reason="Goodwill", actor=staff)
    CustomerLimit.objects.create(user=customer, currency="EUR", daily=1_000)
    model_admin = site._registry[model]
    request = admin_request(staff)
    response = model_admin.changelist_view(request)
    response.render()
    assert response.status_code == 200
    obj = model.objects.first()
    response = model_admin.change_view(request, str(obj.pk))
    response.render()
    assert response.status_code == 200


def test_overdraft_is_changed_through_the_audited_service_and_never_below_the_balance(customer, staff):
    from accounts.services.bank_accounts import bank_account_set_overdraft
    from transactions.services.cash import cash_withdraw

    account = open_account(customer, balance=1_000)
    bank_account_set_overdraft(account=account, overdraft_limit=5_000, actor=staff)
    cash_withdraw(iban=account.iban, amount=4_000)
    with pytest.raises(ValueError, match="below"):
        bank_account_set_overdraft(account=account, overdraft_limit=2_000, actor=staff)
    account.refresh_from_db()
    assert (account.balance, account.overdraft_limit) == (-3_000, 5_000)
    assert AuditEvent.objects.filter(action="bank_account.overdraft_changed").count() == 1


def test_a_reversal_onto_frozen_accounts_posts_and_leaves_them_frozen(customer, staff):
    """A freeze stops the customer, not the bank's own correction of a posting in error."""
    from accounts.services.bank_accounts import bank_account_set_status

    source, destination = open_account(customer, balance=10_000), open_account(CustomerFactory())
    original = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=3_000, currency="EUR"
    )
    for account in (source, destination):
        bank_account_set_status(account=account, status="frozen", actor=staff)
    reversal = transaction_reverse(transaction_id=original.pk, actor=staff, reason="Fraud: sent in error")
    source.refresh_from_db()
    destination.refresh_from_db()
    assert (source.balance, destination.balance) == (10_000, 0)
    assert (source.status, destination.status) == ("frozen", "frozen")
    assert sorted(Entry.objects.filter(transaction=reversal).values_list("account_id", "amount")) == sorted(
        [(source.pk, 3_000), (destination.pk, -3_000)]
    )
    assert ledger_verify().ok


def test_an_adjustment_that_would_overdraw_is_refused_at_approval_and_stays_pending(customer, staff, checker):
    from django.db import transaction

    from accounts.services.bank_accounts import bank_account_set_overdraft, internal_account
    from transactions.tests.snapshots import assert_unchanged, ledger_snapshot

    account = open_account(customer, balance=1_000)
    internal_account(purpose="adjustments", currency="EUR")  # exists before: the snapshot is about money
    adjustment = adjustment_propose(account=account, amount=-1_001, reason="Duplicate refund", actor=staff)
    before = ledger_snapshot()
    # In its own transaction, as every caller (admin action, command) runs it.
    with pytest.raises(InsufficientFunds), transaction.atomic():
        adjustment_approve(adjustment_id=adjustment.pk, actor=checker)
    assert_unchanged(before, ledger_snapshot())  # no posting, no audit of an approval
    adjustment.refresh_from_db()
    assert (adjustment.status, adjustment.decided_by, adjustment.transaction) == ("pending", None, None)
    # The admin action says so instead of failing the page, and posts nothing.
    model_admin = site._registry[AdjustmentRequest]
    request = admin_request(checker, "post")
    model_admin.actions[0](model_admin, request, AdjustmentRequest.objects.filter(pk=adjustment.pk))
    assert [m.level_tag for m in request._messages] == ["error"]
    assert_unchanged(before, ledger_snapshot())
    # Within an overdraft the same adjustment posts.
    bank_account_set_overdraft(account=account, overdraft_limit=1, actor=staff)
    assert adjustment_approve(adjustment_id=adjustment.pk, actor=checker).status == "posted"
    account.refresh_from_db()
    assert account.balance == -1
    assert ledger_verify().ok


def test_a_zero_adjustment_is_refused_by_the_service_the_admin_form_and_the_database(customer, staff):
    from django.db import IntegrityError, transaction

    account = open_account(customer, balance=1_000)
    audit_rows = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="zero"):
        adjustment_propose(account=account, amount=0, reason="Nothing", actor=staff)
    # The admin's add form: a form error, not a server error.
    model_admin = site._registry[AdjustmentRequest]
    request = admin_request(staff, "post", data={"account": str(account.pk), "amount": "0", "reason": "Nothing"})
    request._dont_enforce_csrf_checks = True
    response = model_admin.add_view(request)
    response.render()
    assert response.status_code == 200 and response.context_data["errors"]
    assert not AdjustmentRequest.objects.exists()
    assert AuditEvent.objects.count() == audit_rows
    # And the table itself.
    with pytest.raises(IntegrityError, match="adjustment_amount_nonzero"), transaction.atomic():
        AdjustmentRequest.objects.create(account=account, amount=0, reason="Nothing", proposed_by=staff)

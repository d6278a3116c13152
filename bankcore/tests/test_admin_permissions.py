"""Staff permissions: every admin action needs its own permission, view-only staff can run none,
maker-checker for reversals and two-factor resets, and the shipped staff groups."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin import site
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.models import BankAccount, TotpAuthenticator, TwoFactorResetRequest, User
from accounts.services.staff import two_factor_reset_approve, two_factor_reset_propose
from accounts.services.staff_groups import STAFF_GROUPS, staff_groups_sync
from accounts.tests.factories import DeviceFactory, UserFactory, enrol_totp, tokens_for
from bankcore.models import AuditEvent
from bankcore.permissions import MakerCheckerViolation, StaffPermissionDenied
from bankcore.testing import admin_request, staff_client
from notifications import services as notifications
from notifications.events import Event
from notifications.models import Delivery, Notification
from transactions.exceptions import MakerCannotApprove
from transactions.models import AdjustmentRequest, CustomerLimit, ReversalRequest, Transaction
from transactions.services.corrections import (
    adjustment_approve,
    adjustment_propose,
    reversal_approve,
    reversal_propose,
)
from transactions.services.transfers import transfer_create
from transactions.tests.factories import open_account

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _staff(email: str, *, groups: tuple[str, ...] = (), perms: tuple[str, ...] = ()) -> User:
    user = UserFactory(email=email, is_staff=True)
    user.groups.set(Group.objects.filter(name__in=groups))
    for label in perms:
        app_label, codename = label.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # no cached permissions


@pytest.fixture
def viewer() -> User:
    """Staff who may look at everything and change nothing: every view_* permission, no other."""
    user = UserFactory(email="viewer@bank.example", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def maker() -> User:
    return _staff("maker@bank.example", groups=("operations", "support"))


@pytest.fixture
def checker() -> User:
    return _staff("checker@bank.example", groups=("compliance",))


@pytest.fixture
def bank(maker: User) -> dict[str, Any]:
    """At least one row for every screen that has an action to try."""
    customer = UserFactory()
    enrol_totp(customer)
    device = DeviceFactory(user=customer)
    tokens_for(customer, device=device)
    source = open_account(customer, balance=10_000)
    destination = open_account(UserFactory())
    journal = transfer_create(
        user=customer, source_account_id=source.pk, destination_iban=destination.iban, amount=1_000, currency="EUR"
    )
    adjustment_propose(account=source, amount=100, reason="Fee refund", actor=maker)
    reversal_propose(transaction_id=journal.pk, reason="Sent in error", actor=maker)
    two_factor_reset_propose(user=customer, reason="Lost phone, ID checked", actor=maker)
    CustomerLimit.objects.create(user=customer, currency="EUR", daily=5_000)
    notifications.notify(user=customer, event=Event.ACCOUNT_LOCKED, context={})
    Delivery.objects.filter(pk=Delivery.objects.order_by("pk").first().pk).update(status=Delivery.Status.DEAD)
    notifications.incident_declare(
        title="Card payments slow", message="We are on it.", severity="minor", services=["payments"]
    )
    notifications.maintenance_schedule(
        title="Upgrade",
        message="",
        starts_at=timezone.now() + timedelta(days=1),
        ends_at=timezone.now() + timedelta(days=1, hours=1),
        services=[],
    )
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="probe", task="bankcore.tasks.nothing", interval=every_minute, enabled=True)
    return {"customer": customer, "journal": journal, "source": source}


def _registered_actions() -> list[tuple[type, Any, str, Any]]:
    return [
        (model, model_admin, name, func)
        for model, model_admin in site._registry.items()
        for func, name, _description in model_admin._get_base_actions()
    ]


def _snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row an admin action could touch."""
    models = {*site._registry, TotpAuthenticator, Notification, Permission}
    return {model._meta.label: list(model._base_manager.order_by("pk").values()) for model in models}


def test_every_admin_action_is_walked():
    names = {name for _model, _admin, name, _func in _registered_actions()}
    assert {
        "lock_users",
        "propose_two_factor_reset",
        "approve_resets",
        "revoke_devices",
        "freeze",
        "propose_reversals",
        "approve_reversals",
        "approve_adjustments",
        "resend",
        "resolve_selected",
        "run_tasks",
        "delete_selected",
    } <= names


def test_view_only_staff_are_offered_no_admin_action(viewer, bank):
    request = admin_request(viewer)
    for model, model_admin, name, _func in _registered_actions():
        assert name not in model_admin.get_actions(request), f"{model._meta.label}: {name} offered to view-only staff"


def test_view_only_staff_posting_an_admin_action_directly_changes_nothing(viewer, bank):
    client = staff_client(viewer)
    before, audit_rows = _snapshot(), AuditEvent.objects.count()
    for model, _model_admin, name, _func in _registered_actions():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        selected = [str(pk) for pk in model._base_manager.values_list("pk", flat=True)[:20]]
        crafted = {"action": name, "_selected_action": selected, "post": "yes", "apply": "Propose", "reason": "x"}
        for form in (crafted, {**crafted, "index": "0"}):  # the changelist's form, and a confirmation page's
            response = client.post(url, form)
            assert response.status_code in (200, 302, 403), (model, name, response.status_code)
    assert _snapshot() == before
    assert AuditEvent.objects.count() == audit_rows


def test_every_admin_action_refuses_view_only_staff_even_when_called_directly(viewer, bank):
    # What a crafted request reaching the action past Django's filter would meet.
    before = _snapshot()
    for model, model_admin, name, func in _registered_actions():
        request = admin_request(viewer, "post", {"post": "yes", "apply": "Propose", "reason": "x"})
        if name == "delete_selected":
            # Django's own: it checks the delete permission of every row it would delete
            # (raises, or shows "cannot delete" for protected rows); the snapshot proves it.
            with contextlib.suppress(PermissionDenied):
                func(model_admin, request, model._base_manager.all())
            continue
        with pytest.raises(PermissionDenied):
            func(model_admin, request, model._base_manager.all())
    assert _snapshot() == before


def test_a_reversal_needs_a_maker_and_a_different_checker(maker, checker, bank):
    proposal = ReversalRequest.objects.get(transaction=bank["journal"])
    assert not Transaction.objects.filter(reverses=bank["journal"]).exists(), "the maker's word posts nothing"
    with pytest.raises(StaffPermissionDenied):
        reversal_approve(request_id=proposal.pk, actor=maker)  # operations cannot check
    approved = reversal_approve(request_id=proposal.pk, actor=checker)
    assert approved.status == "posted" and approved.reversal.reverses_id == bank["journal"].pk
    assert AuditEvent.objects.filter(action="reversal.approved", actor=checker).exists()


def test_one_staff_member_cannot_both_propose_and_approve_a_reversal(checker, bank):
    both = _staff("both@bank.example", groups=("operations", "compliance"))
    second = transfer_create(
        user=bank["customer"],
        source_account_id=bank["source"].pk,
        destination_iban=open_account(UserFactory()).iban,
        amount=10,
        currency="EUR",
    )
    proposal = reversal_propose(transaction_id=second.pk, reason="Duplicate", actor=both)
    with pytest.raises(MakerCannotApprove):
        reversal_approve(request_id=proposal.pk, actor=both)
    with pytest.raises(IntegrityError), transaction.atomic():  # and the database says the same
        ReversalRequest.objects.filter(pk=proposal.pk).update(decided_by=both, status="posted")
    assert not Transaction.objects.filter(reverses=second).exists()


def test_a_two_factor_reset_needs_a_checker_other_than_the_maker_and_the_user(maker, checker, bank):
    customer = bank["customer"]
    proposal = TwoFactorResetRequest.objects.get(user=customer)
    with pytest.raises(StaffPermissionDenied):
        two_factor_reset_approve(request_id=proposal.pk, actor=maker)  # support/operations cannot check
    assert TotpAuthenticator.objects.filter(user=customer).exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        TwoFactorResetRequest.objects.filter(pk=proposal.pk).update(decided_by=maker)
    own = two_factor_reset_propose(user=checker, reason="Lost my phone", actor=maker)
    with pytest.raises(MakerCheckerViolation):
        two_factor_reset_approve(request_id=own.pk, actor=checker)  # not for your own second factor
    two_factor_reset_approve(request_id=proposal.pk, actor=checker)
    assert not TotpAuthenticator.objects.filter(user=customer).exists()


def test_view_only_staff_cannot_propose_or_approve_through_the_services(viewer, bank):
    with pytest.raises(StaffPermissionDenied):
        reversal_propose(transaction_id=bank["journal"].pk, reason="x", actor=viewer)
    with pytest.raises(StaffPermissionDenied):
        two_factor_reset_propose(user=bank["customer"], reason="x", actor=viewer)
    with pytest.raises(StaffPermissionDenied):
        adjustment_propose(account=bank["source"], amount=1, reason="x", actor=viewer)
    with pytest.raises(StaffPermissionDenied):
        adjustment_approve(adjustment_id=AdjustmentRequest.objects.get().pk, actor=viewer)
    assert AdjustmentRequest.objects.get().status == "pending"


def _change_form(account: BankAccount, **changes: str) -> dict[str, str]:
    return {"name": account.name, "status": account.status, "overdraft_limit": str(account.overdraft_limit), **changes}


def test_freezing_through_the_change_form_needs_freeze_account(bank):
    account = bank["source"]
    url = reverse("admin:accounts_bankaccount_change", args=[account.pk])
    editor = _staff("editor@bank.example", perms=("accounts.view_bankaccount", "accounts.change_bankaccount"))
    response = staff_client(editor).post(url, _change_form(account, name="Renamed", status="frozen"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.name, account.status) == ("Renamed", "active"), "name yes, freeze no"

    freezer = _staff("freezer@bank.example", perms=("accounts.change_bankaccount", "accounts.freeze_account"))
    staff_client(freezer).post(url, _change_form(account, status="frozen"))
    account.refresh_from_db()
    assert account.status == "frozen"
    assert AuditEvent.objects.filter(action="bank_account.frozen", actor=freezer).exists()


def test_save_model_refuses_a_status_change_without_freeze_account(bank):
    class ChangedStatus:
        changed_data = ["status"]

    editor = _staff("editor@bank.example", perms=("accounts.change_bankaccount",))
    account = bank["source"]
    account.status = BankAccount.Status.FROZEN
    with pytest.raises(PermissionDenied):
        site._registry[BankAccount].save_model(admin_request(editor, "post"), account, ChangedStatus(), change=True)
    account.refresh_from_db()
    assert account.status == "active"


def test_staff_groups_ship_with_separate_maker_and_checker_rights():
    groups = {group.name: group for group in Group.objects.filter(name__in=STAFF_GROUPS)}
    assert set(groups) == {"support", "operations", "compliance"}

    def perms(name: str) -> set[str]:
        return {f"{p.content_type.app_label}.{p.codename}" for p in groups[name].permissions.all()}

    assert {"accounts.reset_two_factor", "accounts.lock_user"} <= perms("support")
    assert {"transactions.reverse_transaction", "accounts.freeze_account", "notifications.manage_incident"} <= perms(
        "operations"
    )
    checks = {"transactions.approve_reversal", "transactions.approve_adjustment", "accounts.approve_two_factor_reset"}
    makes = {"transactions.reverse_transaction", "transactions.add_adjustmentrequest", "accounts.reset_two_factor"}
    assert checks <= perms("compliance") and not makes & perms("compliance")
    assert not checks & (perms("support") | perms("operations"))


def test_staff_group_sync_is_idempotent_and_puts_back_the_shipped_rights():
    support = Group.objects.get(name="support")
    support.permissions.add(Permission.objects.get(codename="approve_reversal"))
    first = staff_groups_sync()
    assert first == staff_groups_sync()
    assert not support.permissions.filter(codename="approve_reversal").exists()
    assert support.permissions.count() == first["support"]


def test_checkers_see_the_pending_requests_and_their_approve_actions(checker, bank):
    client = staff_client(checker)
    reversals = client.get(reverse("admin:transactions_reversalrequest_changelist")).content.decode()
    resets = client.get(reverse("admin:accounts_twofactorresetrequest_changelist")).content.decode()
    assert "Sent in error" in reversals and 'value="approve_reversals"' in reversals
    assert "Lost phone, ID checked" in resets and 'value="approve_resets"' in resets

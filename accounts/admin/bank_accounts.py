"""Admin for bank accounts (ledger): balances are read-only; status and overdraft go through services,
each under its own permission (`freeze_account`, `set_overdraft`), on the form as in the actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import BankAccount
from accounts.services.bank_accounts import bank_account_set_overdraft, bank_account_set_status
from bankcore.admin import staff_action
from bankcore.money import format_amount
from bankcore.permissions import has_staff_permission

FREEZE = "accounts.freeze_account"
SET_OVERDRAFT = "accounts.set_overdraft"


@staff_action(permission=FREEZE, description="Freeze selected accounts")
def freeze(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BankAccount]) -> None:
    for account in queryset:
        bank_account_set_status(account=account, status=BankAccount.Status.FROZEN, actor=request.user)
    modeladmin.message_user(request, f"Froze {queryset.count()} account(s).", messages.SUCCESS)


@staff_action(permission=FREEZE, description="Unfreeze selected accounts")
def unfreeze(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BankAccount]) -> None:
    for account in queryset:
        bank_account_set_status(account=account, status=BankAccount.Status.ACTIVE, actor=request.user)
    modeladmin.message_user(request, f"Unfroze {queryset.count()} account(s).", messages.SUCCESS)


@admin.register(BankAccount)
class BankAccountAdmin(admin.ModelAdmin):
    list_display = ("iban", "name", "owner", "kind", "currency", "balance_display", "status", "overdraft_limit")
    list_filter = ("kind", "currency", "status")
    search_fields = ("iban", "owner__email", "internal_code", "name")
    readonly_fields = ("id", "iban", "owner", "kind", "currency", "internal_code", "balance_display", "created_at")
    fields = (*readonly_fields, "name", "status", "overdraft_limit")
    actions = [freeze, unfreeze]
    show_full_result_count = False

    @admin.display(description="balance")
    def balance_display(self, account: BankAccount) -> str:
        return f"{format_amount(account.balance, account.currency)} {account.currency}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers open accounts through the API; internal ones appear on first use

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_freeze_account_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, FREEZE)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Editing the name (change_bankaccount) does not let anyone freeze or lend.
        fields = list(super().get_readonly_fields(request, obj))
        if not has_staff_permission(request.user, FREEZE):
            fields.append("status")
        if not has_staff_permission(request.user, SET_OVERDRAFT):
            fields.append("overdraft_limit")
        return fields

    def save_model(self, request: HttpRequest, obj: BankAccount, form: Any, change: bool) -> None:
        # Only name directly; status and overdraft through the audited services, each under its
        # permission (checked again here: the read-only fields above are only what the form shows).
        for field, permission in (("status", FREEZE), ("overdraft_limit", SET_OVERDRAFT)):
            if field in form.changed_data and not has_staff_permission(request.user, permission):
                raise PermissionDenied(permission)
        current = BankAccount.objects.get(pk=obj.pk)
        if "name" in form.changed_data:
            BankAccount.objects.filter(pk=obj.pk).update(name=obj.name)
        if "status" in form.changed_data:
            bank_account_set_status(account=current, status=obj.status, actor=request.user)
        if "overdraft_limit" in form.changed_data:
            try:
                bank_account_set_overdraft(account=current, overdraft_limit=obj.overdraft_limit, actor=request.user)
            except ValueError as exc:
                self.message_user(request, str(exc), messages.ERROR)

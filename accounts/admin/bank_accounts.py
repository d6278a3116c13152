"""Admin for bank accounts (ledger): balances are read-only; status and overdraft go through services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import BankAccount
from accounts.services.bank_accounts import bank_account_set_overdraft, bank_account_set_status
from bankcore.money import format_amount


@admin.action(description="Freeze selected accounts")
def freeze(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[BankAccount]) -> None:
    for account in queryset:
        bank_account_set_status(account=account, status=BankAccount.Status.FROZEN, actor=request.user)
    modeladmin.message_user(request, f"Froze {queryset.count()} account(s).", messages.SUCCESS)


@admin.action(description="Unfreeze selected accounts")
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

    def save_model(self, request: HttpRequest, obj: BankAccount, form: Any, change: bool) -> None:
        # Only name directly; status and overdraft through the audited services.
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

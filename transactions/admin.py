"""Staff screens for the ledger. The journal is read-only; every change goes through a service.

Reversals and adjustments are maker-checker: one staff member proposes, a different one
approves (each under its own permission); only then the ledger moves.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from bankcore.admin import ReadOnlyAdmin, ReadOnlyInline, ask_reason, staff_action
from bankcore.api.exceptions import BankError
from bankcore.money import format_amount
from bankcore.permissions import has_staff_permission
from transactions.models import (
    AdjustmentRequest,
    Beneficiary,
    CustomerLimit,
    Entry,
    Hold,
    ReversalRequest,
    StandingOrder,
    StandingOrderExecution,
    Transaction,
)
from transactions.services.corrections import (
    adjustment_approve,
    adjustment_propose,
    adjustment_reject,
    reversal_approve,
    reversal_propose,
    reversal_reject,
)
from transactions.services.limits import customer_limit_set


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = ("account", "amount", "currency", "balance_after", "created_at")
    readonly_fields = fields


@staff_action(
    permission="transactions.reverse_transaction",
    description="Propose reversing the selected transactions (another staff member approves)",
)
def propose_reversals(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Transaction]
) -> TemplateResponse | None:
    reason, page = ask_reason(
        modeladmin,
        request,
        queryset,
        title="Propose reversals",
        help_text="Why these transactions are reversed. A second staff member approves before anything posts.",
    )
    if reason is None:
        return page
    for journal in queryset:
        try:
            reversal_propose(transaction_id=journal.pk, reason=reason, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{journal.pk}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{journal.pk}: reversal proposed for approval", messages.SUCCESS)
    return None


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "amount_display", "currency", "description", "initiated_by", "created_at")
    list_filter = ("kind", "currency")
    search_fields = ("id", "reference", "description", "source_account__iban", "destination_account__iban")
    inlines = [EntryInline]
    actions = [propose_reversals]
    show_full_result_count = False  # no COUNT(*) over the whole journal

    @admin.display(description="amount")
    def amount_display(self, journal: Transaction) -> str:
        return format_amount(journal.amount, journal.currency) if journal.amount else "—"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_reverse_transaction_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.reverse_transaction")


@staff_action(permission="transactions.approve_reversal", description="Approve (checker): post the selected reversals")
def approve_reversals(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
    for proposal in queryset:
        try:
            approved = reversal_approve(request_id=proposal.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{proposal.pk}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"{proposal.transaction_id} reversed by {approved.reversal_id}", messages.SUCCESS
            )


@staff_action(permission="transactions.approve_reversal", description="Reject the selected reversals")
def reject_reversals(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
    for proposal in queryset:
        try:
            reversal_reject(request_id=proposal.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{proposal.pk}: {exc.message}", messages.ERROR)


@admin.register(ReversalRequest)
class ReversalRequestAdmin(ReadOnlyAdmin):
    """Makers propose reversals from the journal; a different staff member approves them here."""

    list_display = ("id", "transaction", "reason", "status", "proposed_by", "decided_by", "reversal", "created_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in ReversalRequest._meta.fields]
    actions = [approve_reversals, reject_reversals]

    def has_approve_reversal_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.approve_reversal")


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "account", "amount", "currency", "balance_after", "created_at")
    list_filter = ("currency",)
    search_fields = ("account__iban", "transaction__id")
    show_full_result_count = False


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "amount", "currency", "status", "reference", "created_at", "ended_at")
    list_filter = ("status",)


class CustomerLimitForm(forms.ModelForm):
    class Meta:
        model = CustomerLimit
        fields = ("user", "currency", "per_transfer", "daily", "step_up_threshold")
        help_texts = {
            "per_transfer": "Minor units (cents). Empty = bank default.",
            "daily": "Minor units, rolling 24 hours. Empty = bank default.",
            "step_up_threshold": "Minor units. Empty = bank default.",
        }


@admin.register(CustomerLimit)
class CustomerLimitAdmin(admin.ModelAdmin):
    form = CustomerLimitForm
    list_display = ("user", "currency", "per_transfer", "daily", "step_up_threshold", "updated_at")
    search_fields = ("user__email",)
    autocomplete_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: CustomerLimit, form: Any, change: bool) -> None:
        saved = customer_limit_set(
            user=obj.user,
            currency=obj.currency,
            actor=request.user,
            per_transfer=obj.per_transfer,
            daily=obj.daily,
            step_up_threshold=obj.step_up_threshold,
        )
        obj.pk = saved.pk


@staff_action(
    permission="transactions.approve_adjustment", description="Approve (checker): post the selected adjustments"
)
def approve_adjustments(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]
) -> None:
    for adjustment in queryset:
        try:
            adjustment_approve(adjustment_id=adjustment.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{adjustment.pk}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{adjustment.pk} posted", messages.SUCCESS)


@staff_action(permission="transactions.approve_adjustment", description="Reject the selected adjustments")
def reject_adjustments(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]
) -> None:
    for adjustment in queryset:
        try:
            adjustment_reject(adjustment_id=adjustment.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{adjustment.pk}: {exc.message}", messages.ERROR)


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(admin.ModelAdmin):
    """Makers add requests here (nothing posts); a different staff member approves them with the action."""

    list_display = ("id", "account", "amount", "reason", "status", "proposed_by", "decided_by", "created_at")
    list_filter = ("status",)
    fields = ("account", "amount", "reason")
    autocomplete_fields = ("account",)
    actions = [approve_adjustments, reject_adjustments]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_adjustment_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.approve_adjustment")

    def save_model(self, request: HttpRequest, obj: AdjustmentRequest, form: Any, change: bool) -> None:
        proposed = adjustment_propose(account=obj.account, amount=obj.amount, reason=obj.reason, actor=request.user)
        obj.pk = proposed.pk


@admin.register(Beneficiary)
class BeneficiaryAdmin(ReadOnlyAdmin):
    list_display = ("name", "iban", "owner", "created_at")
    search_fields = ("owner__email", "iban")


class StandingOrderExecutionInline(ReadOnlyInline):
    model = StandingOrderExecution
    fields = ("due_date", "outcome", "error_code", "transaction", "executed_at")
    readonly_fields = fields


@admin.register(StandingOrder)
class StandingOrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "amount", "currency", "frequency", "day", "status", "next_due")
    list_filter = ("status", "frequency")
    inlines = [StandingOrderExecutionInline]

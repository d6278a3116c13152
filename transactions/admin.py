"""Staff screens for the ledger. The journal is read-only; every change goes through a service.

Reversals and adjustments are maker-checker: one staff member proposes, a different one
approves (each under its own permission); only then the ledger moves.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from bankcore.admin import ReadOnlyAdmin, ReadOnlyInline, ask_reason, staff_action
from bankcore.api.exceptions import BankError
from bankcore.money import format_amount
from bankcore.permissions import has_staff_permission
from integrations.gateway.iso20022 import pretty
from transactions.models import (
    AdjustmentRequest,
    Beneficiary,
    CategoryRule,
    CustomerLimit,
    Entry,
    Hold,
    IncomingCredit,
    LegacyRequest,
    Payment,
    PaymentActionRequest,
    PaymentEvent,
    ReconciliationMismatch,
    ReconciliationRun,
    ReversalRequest,
    SettlementBatch,
    StandingOrder,
    StandingOrderExecution,
    SupportMessage,
    SupportTicket,
    Transaction,
)
from transactions.models.support import MESSAGE_MAX
from transactions.services.corrections import (
    adjustment_approve,
    adjustment_propose,
    adjustment_reject,
    reversal_approve,
    reversal_propose,
    reversal_reject,
)
from transactions.services.incoming import incoming_credit_resolve
from transactions.services.insights import category_rule_delete, category_rule_save
from transactions.services.limits import customer_limit_set
from transactions.services.payment_actions import (
    payment_action_approve,
    payment_action_propose,
    payment_action_reject,
)
from transactions.services.support import ticket_assign, ticket_close, ticket_reply


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


# --- Payments to other banks (issue 14) ----------------------------------------------------


class PaymentEventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = ("status", "reason_code", "at")
    readonly_fields = fields
    ordering = ("id",)


def _propose_payment_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Payment], *, action: str, title: str
) -> TemplateResponse | None:
    reason, page = ask_reason(
        modeladmin,
        request,
        queryset,
        title=title,
        help_text="Why. A second staff member approves under Payment action requests before anything happens.",
    )
    if reason is None:
        return page
    for payment in queryset:
        try:
            payment_action_propose(payment_id=payment.pk, action=action, reason=reason, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{payment.end_to_end_id}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"{payment.end_to_end_id}: {action} proposed for approval", messages.SUCCESS
            )
    return None


@staff_action(
    permission="transactions.retry_payment",
    description="Propose re-driving settlement of the selected payments (another staff member approves)",
)
def propose_payment_retry(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Payment]
) -> TemplateResponse | None:
    return _propose_payment_action(
        modeladmin, request, queryset, action=PaymentActionRequest.Action.RETRY, title="Propose retries"
    )


@staff_action(
    permission="transactions.retry_payment",
    description="Propose cancelling the selected pending payments (another staff member approves)",
)
def propose_payment_cancel(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Payment]
) -> TemplateResponse | None:
    return _propose_payment_action(
        modeladmin, request, queryset, action=PaymentActionRequest.Action.CANCEL, title="Propose cancellations"
    )


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "end_to_end_id",
        "customer",
        "creditor_name",
        "creditor_iban",
        "amount_display",
        "status",
        "reason_code",
        "batch",
        "created_at",
    )
    list_filter = ("status", "currency")
    search_fields = ("=id", "=end_to_end_id", "=creditor_iban", "customer__email")
    readonly_fields = [f.name for f in Payment._meta.fields]
    inlines = [PaymentEventInline]
    actions = [propose_payment_retry, propose_payment_cancel]
    list_select_related = ("customer", "batch")
    show_full_result_count = False

    @admin.display(description="amount")
    def amount_display(self, payment: Payment) -> str:
        return format_amount(payment.amount, payment.currency)

    def has_retry_payment_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.retry_payment")


@admin.register(SettlementBatch)
class SettlementBatchAdmin(ReadOnlyAdmin):
    list_display = ("message_id", "status", "currency", "payment_count", "control_sum", "created_at", "submitted_at")
    list_filter = ("status",)
    search_fields = ("=message_id",)
    exclude = ("xml", "status_report")
    readonly_fields = [
        *(f.name for f in SettlementBatch._meta.fields if f.name not in ("xml", "status_report")),
        "pain001",
        "pain002",
    ]

    @admin.display(description="pain.001 (as sent)")
    def pain001(self, batch: SettlementBatch) -> str:
        return format_html("<pre>{}</pre>", pretty(batch.xml))  # escaped: shown as text, never markup

    @admin.display(description="pain.002 (as received)")
    def pain002(self, batch: SettlementBatch) -> str:
        return format_html("<pre>{}</pre>", pretty(batch.status_report)) if batch.status_report else "—"


@staff_action(
    permission="transactions.approve_payment_action", description="Approve (checker): carry out the selected actions"
)
def approve_payment_actions(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PaymentActionRequest]
) -> None:
    for proposal in queryset:
        try:
            payment_action_approve(request_id=proposal.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{proposal.pk}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{proposal.action} of {proposal.payment_id} done", messages.SUCCESS)


@staff_action(permission="transactions.approve_payment_action", description="Reject the selected actions")
def reject_payment_actions(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PaymentActionRequest]
) -> None:
    for proposal in queryset:
        try:
            payment_action_reject(request_id=proposal.pk, actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{proposal.pk}: {exc.message}", messages.ERROR)


@admin.register(PaymentActionRequest)
class PaymentActionRequestAdmin(ReadOnlyAdmin):
    """Makers propose from the payments list; a different staff member approves here."""

    list_display = ("id", "payment", "action", "reason", "status", "proposed_by", "decided_by", "created_at")
    list_filter = ("status", "action")
    readonly_fields = [f.name for f in PaymentActionRequest._meta.fields]
    actions = [approve_payment_actions, reject_payment_actions]

    def has_approve_payment_action_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.approve_payment_action")


class MoveToAccountForm(forms.Form):
    iban = forms.CharField(max_length=42, label="IBAN", help_text="The customer account the money belongs to.")


@staff_action(permission="transactions.resolve_suspense", description="Move to account: post from suspense")
def move_to_account(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[IncomingCredit]
) -> TemplateResponse | None:
    form = MoveToAccountForm(request.POST if "apply" in request.POST else None)
    if not form.is_valid():
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Move credits in suspense to an account",
            "opts": modeladmin.model._meta,
            "queryset": queryset,
            "lines": [
                f"{credit.notification_id}: {format_amount(credit.amount, credit.currency)} {credit.currency} "
                f"for {credit.iban} from {credit.debtor_name} ({credit.remittance_information})"
                for credit in queryset
            ],
            "form": form,
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/transactions/move_to_account.html", context)
    for credit in queryset:
        try:
            incoming_credit_resolve(credit_id=credit.pk, iban=form.cleaned_data["iban"], actor=request.user)
        except BankError as exc:
            modeladmin.message_user(request, f"{credit.notification_id}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{credit.notification_id}: moved to the account", messages.SUCCESS)
    return None


class InSuspenseFilter(admin.SimpleListFilter):
    """The staff task: credits waiting in suspense (the default view)."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("suspense", "Waiting in suspense"), ("all", "All credits")]

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or "suspense") == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[IncomingCredit]) -> QuerySet[IncomingCredit]:
        if (self.value() or "suspense") == "suspense":
            return queryset.filter(status=IncomingCredit.Status.SUSPENSE)
        return queryset


@admin.register(IncomingCredit)
class IncomingCreditAdmin(ReadOnlyAdmin):
    """Credits from the gateway; by default the staff task: those in suspense, oldest first."""

    list_display = (
        "notification_id",
        "iban",
        "amount_display",
        "debtor_name",
        "remittance_information",
        "status",
        "account",
        "booked_at",
        "received_at",
    )
    list_filter = (InSuspenseFilter, "status")
    search_fields = ("=notification_id", "=iban", "=debtor_iban")
    readonly_fields = [f.name for f in IncomingCredit._meta.fields]
    ordering = ("received_at",)
    actions = [move_to_account]

    @admin.display(description="amount")
    def amount_display(self, credit: IncomingCredit) -> str:
        return format_amount(credit.amount, credit.currency)

    def has_resolve_suspense_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.resolve_suspense")


class ReconciliationMismatchInline(ReadOnlyInline):
    model = ReconciliationMismatch
    fields = ("kind", "reference", "credit", "gateway_amount", "ledger_amount", "currency")
    readonly_fields = fields


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ("day", "statement_id", "statement_entries", "ledger_entries", "mismatch_count", "created_at")
    list_filter = ("day",)
    readonly_fields = [f.name for f in ReconciliationRun._meta.fields]
    ordering = ("-created_at",)
    inlines = [ReconciliationMismatchInline]


@admin.register(CategoryRule)
class CategoryRuleAdmin(admin.ModelAdmin):
    """Spending-insights rules. Every save and delete goes through the service, which audits it;
    a change applies at once to every entry's category except the customers' own choices."""

    list_display = ("pattern", "field", "direction", "category", "priority", "active", "updated_at")
    list_filter = ("active", "category", "field", "direction")
    list_editable = ("active",)
    search_fields = ("pattern",)
    ordering = ("-priority", "id")

    def save_model(self, request: HttpRequest, obj: CategoryRule, form: Any, change: bool) -> None:
        category_rule_save(rule=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: CategoryRule) -> None:
        category_rule_delete(rule=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CategoryRule]) -> None:
        for rule in queryset.order_by("pk"):
            category_rule_delete(rule=rule, actor=request.user)


@admin.register(LegacyRequest)
class LegacyRequestAdmin(ReadOnlyAdmin):
    """The legacy request journal: every 0200 sent to the core and its fate (read-only; open
    rows are reversed by the `legacy_reversals_sweep` beat task)."""

    list_display = (
        "id",
        "rrn",
        "direction",
        "legacy_iban",
        "amount",
        "currency",
        "status",
        "response_code",
        "reversal_attempts",
        "created_at",
    )
    list_filter = ("status", "direction", "currency")
    search_fields = ("rrn", "legacy_account_number", "legacy_iban")


# --- Support tickets (issue 17) -------------------------------------------------------------
# Customer text is shown only through Django's autoescaping (list columns, read-only fields,
# format_html arguments): never mark_safe on it.


def _sla_text(ticket: SupportTicket, now: Any) -> tuple[str, bool]:
    """What the queue says about the first-answer deadline, and whether it is overdue."""
    if ticket.first_answered_at is not None:
        return f"answered {date_format(localtime(ticket.first_answered_at), 'Y-m-d H:i')}", False
    remaining = ticket.first_answer_due_at - now
    minutes = int(abs(remaining.total_seconds()) // 60)
    span = f"{minutes // 60} h {minutes % 60:02d} min"
    if ticket.status == SupportTicket.Status.CLOSED:
        return "closed unanswered", False
    if remaining.total_seconds() < 0:
        return f"OVERDUE by {span}", True
    return f"due in {span}", False


class TicketAssigneeFilter(admin.SimpleListFilter):
    title = "assigned to"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Me"), ("nobody", "Nobody")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SupportTicket]) -> QuerySet[SupportTicket]:
        if self.value() == "me":
            return queryset.filter(assigned_to_id=request.user.pk)
        if self.value() == "nobody":
            return queryset.filter(assigned_to__isnull=True)
        return queryset


class TicketOpenFilter(admin.SimpleListFilter):
    """Open (not closed) by default: the queue is what still needs the bank."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("all", "All"), ("closed", "Closed")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Not closed",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[SupportTicket]) -> QuerySet[SupportTicket]:
        if self.value() == "all":
            return queryset
        if self.value() == "closed":
            return queryset.filter(status=SupportTicket.Status.CLOSED)
        return queryset.exclude(status=SupportTicket.Status.CLOSED)


class SupportMessageInline(ReadOnlyInline):
    model = SupportMessage
    fields = ("created_at", "author_display", "body")
    readonly_fields = fields
    ordering = ("id",)

    @admin.display(description="from")
    def author_display(self, message: SupportMessage) -> str:
        return f"staff: {message.author}" if message.from_staff else "customer"


class SupportTicketForm(forms.ModelForm):
    reply = forms.CharField(
        required=False,
        max_length=MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Sent to the customer's app (inbox and push) when you save.",
    )

    class Meta:
        model = SupportTicket
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("reply", "").strip() and self.instance.status == SupportTicket.Status.CLOSED:
            raise forms.ValidationError("This ticket is closed; the customer can reopen it by writing.")
        return cleaned


@staff_action(permission="transactions.assign_ticket", description="Assign the selected tickets to me")
def assign_tickets_to_me(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[SupportTicket]) -> None:
    for ticket_id in queryset.values_list("pk", flat=True):
        ticket_assign(actor=request.user, ticket_id=ticket_id, assignee=request.user)
    modeladmin.message_user(request, "Assigned to you.", messages.SUCCESS)


@staff_action(permission="transactions.close_ticket", description="Close the selected tickets")
def close_tickets(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[SupportTicket]) -> None:
    for ticket_id in queryset.values_list("pk", flat=True):
        ticket_close(actor=request.user, ticket_id=ticket_id)
    modeladmin.message_user(request, "Closed.", messages.SUCCESS)


@admin.register(SupportTicket)
class SupportTicketAdmin(admin.ModelAdmin):
    """The support queue: open tickets by first-answer deadline, overdue ones highlighted.

    Replying (the form's reply box), assigning and closing each need their own permission and
    go through transactions.services.support, which checks it again and audits.
    """

    form = SupportTicketForm
    list_display = ("subject", "customer", "status", "first_answer", "assigned_to", "created_at")
    list_filter = (TicketOpenFilter, TicketAssigneeFilter, "status")
    search_fields = ("customer__email",)
    search_help_text = "The customer's e-mail."
    ordering = ("first_answer_due_at",)
    inlines = [SupportMessageInline]
    actions = [assign_tickets_to_me, close_tickets]
    list_select_related = ("customer", "assigned_to")
    readonly_fields = (
        "subject",
        "customer",
        "status",
        "first_answer",
        "assigned_to",
        "transfer",
        "payment",
        "created_at",
        "closed_at",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields: list[Any] = list(self.readonly_fields)
        if obj is not None and self.has_reply_ticket_permission(request):
            fields.append("reply")
        return fields

    @admin.display(description="first answer", ordering="first_answer_due_at")
    def first_answer(self, ticket: SupportTicket) -> str:
        text, overdue = _sla_text(ticket, timezone.now())
        if overdue:
            return format_html('<strong class="sla-overdue" style="color: #ba2121;">{}</strong>', text)
        return format_html('<span class="sla">{}</span>', text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers open tickets from the app

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_reply_ticket_permission(request)

    def has_reply_ticket_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.reply_ticket")

    def has_assign_ticket_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.assign_ticket")

    def has_close_ticket_permission(self, request: HttpRequest) -> bool:
        return has_staff_permission(request.user, "transactions.close_ticket")

    def save_model(self, request: HttpRequest, obj: SupportTicket, form: Any, change: bool) -> None:
        reply = form.cleaned_data.get("reply", "").strip()
        if reply:
            ticket_reply(actor=request.user, ticket_id=obj.pk, message=reply)
            self.message_user(request, "Reply sent to the customer.", messages.SUCCESS)

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        return [{"changed": {"fields": ["reply"]}}] if form.cleaned_data.get("reply", "").strip() else []

"""Beneficiaries (saved payees) and standing orders."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import BankAccount
from accounts.services.step_up import step_up_consume
from bankcore.api.exceptions import BankError
from bankcore.audit import audit_record
from bankcore.money import format_amount
from notifications.events import Event
from transactions.exceptions import (
    AccountNotFound,
    CurrencyMismatch,
    LimitExceeded,
    SameAccount,
    UnknownDestination,
)
from transactions.models import Beneficiary, StandingOrder, StandingOrderExecution, Transaction
from transactions.services.limits import check_per_transfer_limit, limits_for
from transactions.services.notices import notice, notices_queue
from transactions.services.transfers import mask_iban, transfer_create

STANDING_ORDER_STEP_UP_PURPOSE = "standing_order"


class DuplicateBeneficiary(BankError):
    status_code = 400
    code = "invalid_request"
    default_message = "The request is invalid."


def beneficiary_create(*, owner: Any, name: str, iban: str) -> Beneficiary:
    """Save a payee (IBAN already validated and normalised by the caller). One per IBAN per customer."""
    try:
        with transaction.atomic():
            beneficiary = Beneficiary.objects.create(owner=owner, name=name, iban=iban)
            audit_record(
                action="beneficiary.created", actor=owner, target=beneficiary, details={"iban": mask_iban(iban)}
            )
    except IntegrityError:
        raise DuplicateBeneficiary(details={"iban": ["You already saved this IBAN."]}) from None
    return beneficiary


def beneficiary_delete(*, owner: Any, beneficiary_id: UUID) -> None:
    with transaction.atomic():
        deleted, _ = Beneficiary.objects.filter(owner=owner, pk=beneficiary_id).delete()
        if not deleted:
            raise AccountNotFound("No such beneficiary.")
        audit_record(
            action="beneficiary.deleted",
            actor=owner,
            target_type="transactions.Beneficiary",
            target_id=str(beneficiary_id),
        )


def due_on_or_after(*, frequency: str, day: int, start: date) -> date:
    """The first due date of the schedule that is >= start."""
    if frequency == StandingOrder.Frequency.WEEKLY:
        return start + timedelta(days=(day - start.isoweekday()) % 7)
    year, month = start.year, start.month
    while True:
        candidate = date(year, month, min(day, calendar.monthrange(year, month)[1]))
        if candidate >= start:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def standing_order_create(
    *,
    owner: Any,
    source_account_id: UUID,
    destination_iban: str,
    amount: int,
    currency: str,
    frequency: str,
    day: int,
    start_date: date,
    end_date: date | None = None,
    description: str = "",
    step_up_token: str | None = None,
) -> StandingOrder:
    """Schedule a recurring transfer from the customer's account; the beat task pays it.

    A standing order is an authority to pay again and again, so it is authorised like a
    transfer of its amount: above the per-transfer limit it is refused (LimitExceeded);
    above the step-up threshold it needs a step-up token with purpose `standing_order`
    bound to this amount and payee (StepUpRequired). Every run applies the limits again
    (standing_order_execute). Atomic: the order, its audit row and the customer's alert
    commit together; the token is consumed only if the order is created.
    """
    source = BankAccount.objects.filter(pk=source_account_id, owner=owner).first()
    if source is None:
        raise AccountNotFound()
    destination = BankAccount.objects.filter(iban=destination_iban).exclude(kind=BankAccount.Kind.INTERNAL).first()
    if destination is None or destination.status == BankAccount.Status.CLOSED:
        raise UnknownDestination(details={"destination": ["No open account at this bank has this IBAN."]})
    if destination.pk == source.pk:
        raise SameAccount()
    if source.currency != currency or destination.currency != currency:
        raise CurrencyMismatch()
    limits = limits_for(user=owner, currency=currency)
    amount_text = format_amount(amount, currency)
    check_per_transfer_limit(limits=limits, amount=amount)
    first_due = due_on_or_after(frequency=frequency, day=day, start=max(start_date, timezone.localdate()))
    with transaction.atomic():
        if amount > limits.step_up_threshold:
            step_up_consume(
                user=owner,
                token=step_up_token,
                purpose=STANDING_ORDER_STEP_UP_PURPOSE,
                amount=amount_text,
                currency=currency,
                payee=destination.iban,
            )
        order = StandingOrder.objects.create(
            owner=owner,
            source_account=source,
            destination_iban=destination_iban,
            amount=amount,
            currency=currency,
            description=description,
            frequency=frequency,
            day=day,
            start_date=start_date,
            end_date=end_date,
            next_due=first_due if end_date is None or first_due <= end_date else None,
            status=StandingOrder.Status.ACTIVE
            if end_date is None or first_due <= end_date
            else StandingOrder.Status.FINISHED,
        )
        audit_record(
            action="standing_order.created",
            actor=owner,
            target=order,
            details={"amount": amount_text, "currency": currency, "to": mask_iban(destination_iban)},
        )
        # Told at once, on every channel: a stolen session must not set up payments quietly.
        notices_queue(
            journal=None,
            notices=[
                notice(
                    user_id=owner.pk,
                    event=Event.STANDING_ORDER_CREATED,
                    context={
                        "amount": amount_text,
                        "currency": currency,
                        "destination": mask_iban(destination_iban),
                        "frequency": frequency,
                        "first_due": order.next_due.isoformat() if order.next_due else "",
                        "standing_order_id": str(order.pk),
                    },
                    key=str(order.pk),
                )
            ],
        )
    return order


def standing_order_cancel(*, owner: Any, order_id: UUID) -> None:
    with transaction.atomic():
        order = StandingOrder.objects.select_for_update().filter(owner=owner, pk=order_id).first()
        if order is None:
            raise AccountNotFound("No such standing order.")
        order.status = StandingOrder.Status.CANCELLED
        order.next_due = None
        order.save(update_fields=["status", "next_due"])
        audit_record(action="standing_order.cancelled", actor=owner, target=order)


def _next_after(order: StandingOrder, due: date) -> date | None:
    following = due_on_or_after(frequency=order.frequency, day=order.day, start=due + timedelta(days=1))
    if order.end_date is not None and following > order.end_date:
        return None
    return following


def standing_order_execute(*, order_id: UUID, due_date: date) -> StandingOrderExecution | None:
    """Pay one due date of one order - at most once, ever.

    Atomic. Takes the order's row lock first, so concurrent runs for the same order
    serialise; the execution row is unique per (order, due_date), so a re-run returns
    the earlier execution instead of paying twice. The run is a transfer with every rule
    but the second factor (given when the order was created): a run that would break the
    per-transfer or 24-hour limit is skipped; any other refusal (insufficient funds, frozen
    account, ...) fails. Either is recorded and the customer is told.
    """
    with transaction.atomic():
        order = StandingOrder.objects.select_for_update().select_related("owner").filter(pk=order_id).first()
        if order is None:
            return None
        done = StandingOrderExecution.objects.filter(order=order, due_date=due_date).first()
        if done is not None:
            return done
        if order.status != StandingOrder.Status.ACTIVE:
            return None
        execution = StandingOrderExecution(order=order, due_date=due_date)
        try:
            with transaction.atomic():
                execution.transaction = transfer_create(
                    user=order.owner,
                    source_account_id=order.source_account_id,
                    destination_iban=order.destination_iban,
                    amount=order.amount,
                    currency=order.currency,
                    description=order.description or "Standing order",
                    kind=Transaction.Kind.STANDING_ORDER,
                    pre_authorised=True,
                )
            execution.outcome = StandingOrderExecution.Outcome.POSTED
        except BankError as exc:
            skipped = isinstance(exc, LimitExceeded)
            execution.outcome = (
                StandingOrderExecution.Outcome.SKIPPED if skipped else StandingOrderExecution.Outcome.FAILED
            )
            execution.error_code = exc.code
            notices_queue(
                journal=None,
                notices=[
                    notice(
                        user_id=order.owner_id,
                        event=Event.STANDING_ORDER_SKIPPED if skipped else Event.STANDING_ORDER_FAILED,
                        context={
                            "amount": format_amount(order.amount, order.currency),
                            "currency": order.currency,
                            "destination": mask_iban(order.destination_iban),
                            "reason": exc.message,
                            "standing_order_id": str(order.pk),
                            "due_date": due_date.isoformat(),
                            "error_code": exc.code,
                        },
                        key=f"{order.pk}:{due_date.isoformat()}",
                    )
                ],
            )
            audit_record(
                action=f"standing_order.{execution.outcome}",
                actor="system:standing_orders",
                target=order,
                details={"due_date": due_date.isoformat(), "reason": exc.code},
            )
        execution.save()
        if order.next_due is not None and order.next_due <= due_date:
            order.next_due = _next_after(order, due_date)
            if order.next_due is None:
                order.status = StandingOrder.Status.FINISHED
            order.save(update_fields=["next_due", "status"])
    return execution


def standing_orders_run_due(*, today: date | None = None) -> list[StandingOrderExecution]:
    """Execute every due date up to `today` of every active order (catching up missed days)."""
    today = today or timezone.localdate()
    executions = []
    for order_id in StandingOrder.objects.filter(status=StandingOrder.Status.ACTIVE, next_due__lte=today).values_list(
        "pk", flat=True
    ):
        while True:
            due = (
                StandingOrder.objects.filter(pk=order_id, status=StandingOrder.Status.ACTIVE)
                .values_list("next_due", flat=True)
                .first()
            )
            if due is None or due > today:
                break
            execution = standing_order_execute(order_id=order_id, due_date=due)
            if execution is None:
                break
            executions.append(execution)
    return executions

"""Payments to other banks: accepted with a hold now, settled through the gateway later.

The customer-facing half (create, cancel, the status timeline); settlement.py drives a
payment from `pending` onwards. Every status change goes through `payment_record_status`, so
the timeline and the status never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from schwifty import BIC
from schwifty.exceptions import SchwiftyException

from accounts.models import BankAccount
from accounts.services.bank_accounts import InvalidIBAN, iban_normalize
from accounts.services.step_up import step_up_consume
from bankcore.audit import audit_record
from bankcore.db.retry import atomic_with_retry
from bankcore.ids import uuid7
from bankcore.money import format_amount
from transactions.exceptions import (
    AccountNotFound,
    CurrencyMismatch,
    InvalidPayment,
    PaymentNotCancellable,
    PaymentNotFound,
)
from transactions.models import Beneficiary, Payment, PaymentEvent
from transactions.services.holds import hold_place, hold_release
from transactions.services.limits import check_limits, limit_usage_record, limits_and_accounts_lock

STEP_UP_PURPOSE = "payment"
# SEPA credit transfers (pain.001.001.03) are in euro.
PAYMENT_CURRENCIES = ("EUR",)
CREDITOR_NAME_MAX = 70  # ISO 20022 Max70Text
REMITTANCE_MAX = 140  # ISO 20022 Max140Text (unstructured remittance)


@dataclass(frozen=True)
class Creditor:
    """Who is paid: the account holder's name, their IBAN and optionally their bank's BIC."""

    name: str
    iban: str
    bic: str = ""


def creditor_validated(*, name: str, iban: str, bic: str = "") -> Creditor:
    """The creditor normalised (IBAN compact, BIC upper case), or InvalidPayment naming each field.

    IBAN: country format and mod-97 check digits; BIC: ISO 9362 structure (schwifty)."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["creditor.name"] = ["The creditor's name is required."]
    elif len(name) > CREDITOR_NAME_MAX:
        errors["creditor.name"] = [f"At most {CREDITOR_NAME_MAX} characters."]
    try:
        iban = iban_normalize(iban)
    except InvalidIBAN as exc:
        errors["creditor.iban"] = [str(exc)]
    bic = (bic or "").strip().upper()
    if bic:
        try:
            bic = str(BIC(bic))
        except (SchwiftyException, ValueError) as exc:
            errors["creditor.bic"] = [str(exc) or "Invalid BIC."]
    if errors:
        raise InvalidPayment(details=errors)
    return Creditor(name=name, iban=iban, bic=bic)


def end_to_end_id_for(payment_id: UUID) -> str:
    """The ISO 20022 EndToEndId (max 35, SEPA characters) derived from the payment id: unique,
    and the same on every retry of the same payment."""
    return f"E2E{payment_id.hex}"


def payment_record_status(*, payment: Payment, status: str, reason_code: str = "", at: datetime | None = None) -> None:
    """Move the payment to `status` and append the step to its timeline, in the caller's transaction.

    Call with the payment's row locked (or just created). The timeline holds each status at most
    once (a unique constraint), so a re-driven step cannot be recorded twice.
    """
    at = at or timezone.now()
    payment.status = status
    payment.reason_code = reason_code
    payment.updated_at = at
    if payment._state.adding:
        payment.save(force_insert=True)
    else:
        payment.save(update_fields=["status", "reason_code", "updated_at", "batch", "transaction"])
    PaymentEvent.objects.create(payment=payment, status=status, reason_code=reason_code, at=at)


def payment_create(
    *,
    user: Any,
    source_account_id: UUID,
    amount: int,
    currency: str,
    creditor: Creditor | None = None,
    beneficiary_id: UUID | None = None,
    remittance_information: str = "",
    requested_execution_date: date | None = None,
    step_up_token: str | None = None,
) -> Payment:
    """Accept a payment to another bank: validate, check limits and step-up, hold the amount.

    Atomic: the hold, the payment with its first timeline step, the limit usage and the audit
    record commit together or not at all. Locks the customer's row, then the source account
    (lock_objects order), so concurrent payments and transfers can neither over-hold nor race
    past the rolling limit. `available` drops now; `balance` when the payment settles.
    Raises AccountNotFound, InvalidPayment (creditor, date), CurrencyMismatch, AccountFrozen,
    LimitExceeded, StepUpRequired, InsufficientFunds. A step-up token is consumed only if the
    payment is accepted.
    """
    if (creditor is None) == (beneficiary_id is None):
        raise InvalidPayment(details={"creditor": ["Give either a beneficiary or a creditor."]})
    if creditor is None:
        beneficiary = Beneficiary.objects.filter(pk=str(beneficiary_id), owner=user).first()
        if beneficiary is None:
            raise InvalidPayment(details={"beneficiary": ["No such beneficiary."]})
        creditor = Creditor(name=beneficiary.name[:CREDITOR_NAME_MAX], iban=beneficiary.iban)
    creditor = creditor_validated(name=creditor.name, iban=creditor.iban, bic=creditor.bic)
    if len(remittance_information) > REMITTANCE_MAX:
        raise InvalidPayment(details={"remittance_information": [f"At most {REMITTANCE_MAX} characters."]})
    today = timezone.localdate()
    execution_date = requested_execution_date or today
    if execution_date < today:
        raise InvalidPayment(details={"requested_execution_date": ["The date is in the past."]})
    if currency not in PAYMENT_CURRENCIES:
        raise CurrencyMismatch(
            "Payments to other banks are SEPA credit transfers in euro.", details={"currency": currency}
        )

    def work() -> Payment:
        # The creditor IBAN is passed as the "destination": an account of ours with it would
        # be locked too, and a payment to it is refused (that is a transfer).
        limits, accounts = limits_and_accounts_lock(
            user=user, currency=currency, source_account_id=source_account_id, destination_iban=creditor.iban
        )
        source = accounts.get(source_account_id)
        if source is None or source.owner_id != user.pk or source.kind == BankAccount.Kind.INTERNAL:
            raise AccountNotFound()
        if any(account.iban == creditor.iban for account in accounts.values()):
            raise InvalidPayment(details={"creditor.iban": ["This account is at this bank: send a transfer."]})
        if source.currency != currency:
            raise CurrencyMismatch(details={"source": source.currency, "currency": currency})
        check_limits(limits=limits, amount=amount)
        payment_id = uuid7()
        hold = hold_place(account=source, amount=amount, reference=f"payment {payment_id}")
        if amount > limits.step_up_threshold:
            # Raises StepUpRequired (403) unless the token is bound to exactly this amount and payee.
            # After the hold: a payment that would fail anyway does not spend the second factor
            # (a failure here rolls the hold back with everything else).
            step_up_consume(
                user=user,
                token=step_up_token,
                purpose=STEP_UP_PURPOSE,
                amount=format_amount(amount, currency),
                currency=currency,
                payee=creditor.iban,
            )
        now = timezone.now()
        payment = Payment(
            id=payment_id,
            customer=user,
            source_account=source,
            creditor_name=creditor.name,
            creditor_iban=creditor.iban,
            creditor_bic=creditor.bic,
            amount=amount,
            currency=currency,
            remittance_information=remittance_information,
            requested_execution_date=execution_date,
            end_to_end_id=end_to_end_id_for(payment_id),
            hold=hold,
            created_at=now,
        )
        payment_record_status(payment=payment, status=Payment.Status.PENDING, at=now)
        limit_usage_record(user_id=user.pk, currency=currency, at=now, amount=amount)
        audit_record(
            action="payment.accepted",
            actor=user,
            target=payment,
            details={
                "source": str(source.pk),
                "creditor_iban": creditor.iban,
                "amount": format_amount(amount, currency),
                "currency": currency,
                "end_to_end_id": payment.end_to_end_id,
            },
        )
        return payment

    return atomic_with_retry(work)


def payment_for_update(*, payment_id: UUID | str, user: Any | None = None) -> Payment:
    """The payment with its row locked (call inside a transaction); PaymentNotFound if it does not
    exist or, with `user`, is another customer's."""
    queryset = Payment.objects.select_for_update(of=("self",)).filter(pk=payment_id)
    if user is not None:
        queryset = queryset.filter(customer=user)
    payment = queryset.first()
    if payment is None:
        raise PaymentNotFound()
    return payment


def payment_release(*, payment: Payment, status: str, reason_code: str = "", actor: Any = None) -> Payment:
    """End an open payment without it leaving the bank: release its hold, give back the limit
    usage counted at acceptance, record `status` (cancelled or rejected) with its reason.

    Call inside a transaction with the payment row locked. Idempotent per status (the timeline
    holds each status once)."""
    hold_release(hold=payment.hold)
    limit_usage_record(
        user_id=payment.customer_id, currency=payment.currency, at=payment.created_at, amount=-payment.amount
    )
    payment_record_status(payment=payment, status=status, reason_code=reason_code)
    audit_record(
        action=f"payment.{status}",
        actor=actor,
        target=payment,
        details={"reason_code": reason_code, "amount": format_amount(payment.amount, payment.currency)},
    )
    return payment


def payment_cancel(*, user: Any, payment_id: UUID | str) -> Payment:
    """The customer withdraws a payment that has not left yet: only while `pending`.

    Atomic. Locks the payment row first, so batching (which skips locked rows and re-checks
    the status) and cancelling cannot both win. Raises PaymentNotFound (also for another
    customer's id) or PaymentNotCancellable.
    """
    with transaction.atomic():
        payment = payment_for_update(payment_id=payment_id, user=user)
        if payment.status != Payment.Status.PENDING:
            raise PaymentNotCancellable(details={"status": payment.status})
        return payment_release(payment=payment, status=Payment.Status.CANCELLED, actor=user)

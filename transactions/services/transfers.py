"""Customer transfers between accounts of this bank."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings

from accounts.models import BankAccount
from accounts.services.step_up import step_up_consume
from bankcore.audit import audit_event
from bankcore.db.retry import atomic_with_retry
from bankcore.money import exponent, format_amount
from notifications.events import Event
from transactions.exceptions import (
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    SameAccount,
    UnknownDestination,
)
from transactions.models import Transaction
from transactions.services.ledger import Leg, available_balance, posting_prepare, posting_write
from transactions.services.limits import Limits, check_limits, limits_and_accounts_lock
from transactions.services.notices import notice

STEP_UP_PURPOSE = "transfer"


def mask_iban(iban: str) -> str:
    """Never a full account number in messages: '•••• 3000'."""
    return f"•••• {iban[-4:]}"


def transfer_create(
    *,
    user: Any,
    source_account_id: UUID,
    destination_iban: str,
    amount: int,
    currency: str,
    description: str = "",
    step_up_token: str | None = None,
    kind: str = Transaction.Kind.TRANSFER,
    pre_authorised: bool = False,
) -> Transaction:
    """Move `amount` minor units from the customer's account to another account of this bank.

    Atomic: posts completely or changes nothing. Locks (in the global order) the
    customer's row, then both accounts by pk, then the audit chain head - so concurrent
    transfers neither deadlock nor overdraw, and the rolling 24-hour limit cannot be
    raced past. Transient deadlock/serialization failures are retried (bounded).
    Raises AccountNotFound (not the caller's source), UnknownDestination, SameAccount,
    CurrencyMismatch, AccountFrozen, LimitExceeded, StepUpRequired, InsufficientFunds.
    A step-up token is consumed only if the transfer posts. `pre_authorised` is for a
    payment the customer approved in advance with its own step-up (a standing order's run):
    the limits still apply, only no second factor is asked for now.
    """

    def work() -> Transaction:
        # Customer, then both accounts (pk order) - the source by id, the destination by IBAN -
        # and the limits read under those locks, in one call.
        limits, accounts = limits_and_accounts_lock(
            user=user, currency=currency, source_account_id=source_account_id, destination_iban=destination_iban
        )
        source = accounts.get(source_account_id)
        if source is None or source.owner_id != user.pk:
            raise AccountNotFound()
        source.owner = user
        target = next((account for account in accounts.values() if account.iban == destination_iban), None)
        if target is None or target.kind == BankAccount.Kind.INTERNAL or target.status == BankAccount.Status.CLOSED:
            raise UnknownDestination(details={"destination": ["No open account at this bank has this IBAN."]})
        if target.pk == source.pk:
            raise SameAccount()
        if source.currency != currency or target.currency != currency:
            raise CurrencyMismatch(
                details={"source": source.currency, "destination": target.currency, "currency": currency}
            )
        amount_text = format_amount(amount, currency)
        check_limits(limits=limits, amount=amount)
        if amount > limits.step_up_threshold and not pre_authorised:
            # No second factor for a transfer that would fail anyway.
            if source.status != BankAccount.Status.ACTIVE or target.status != BankAccount.Status.ACTIVE:
                raise AccountFrozen()
            available = available_balance(source)
            if amount > available:
                raise InsufficientFunds(details={"available": format_amount(available, currency)})
            # Raises StepUpRequired (403) unless the token is bound to exactly this amount and payee.
            step_up_consume(
                user=user,
                token=step_up_token,
                purpose=STEP_UP_PURPOSE,
                amount=amount_text,
                currency=currency,
                payee=target.iban,
            )

        before = source.balance
        posting = posting_prepare(
            kind=kind,
            legs=[Leg(source.pk, -amount), Leg(target.pk, amount)],
            currency=currency,
            initiated_by=user,
            description=description,
            source_account_id=source.pk,
            destination_account_id=target.pk,
            amount=amount,
            locked=accounts,
        )
        journal = posting.journal
        source, target = posting.accounts[source.pk], posting.accounts[target.pk]
        alerts = _alerts(journal=journal, source=source, target=target, before=before, limits=limits)
        event = audit_event(
            action=f"{kind}.posted",
            actor=user,
            target=journal,
            details={
                "source": str(source.pk),
                "destination": str(target.pk),
                "amount": amount_text,
                "currency": currency,
            },
        )
        # The posting, its alerts, its audit event (and the request's idempotency answer): one round trip.
        posting_write(posting, notices=alerts, audit=event, outcome_of_request=True)
        return journal

    return atomic_with_retry(work)


def _alerts(
    *, journal: Transaction, source: BankAccount, target: BankAccount, before: int, limits: Limits
) -> list[dict[str, Any]]:
    """Both customers' alerts, written with the posting (so only a posted transfer is
    announced); they are rendered and delivered after COMMIT, outside the row locks.

    Structured context for the notification templates; account numbers only masked.
    `key` is the transfer id, so a transfer is announced at most once per event.
    """
    currency = journal.currency
    amount_text = format_amount(journal.amount or 0, currency)
    key = str(journal.pk)
    shared = {"transfer_id": key, "amount": amount_text, "currency": currency, "description": journal.description}
    notices = [
        notice(
            user_id=source.owner_id,
            event=Event.TRANSFER_SENT,
            context={**shared, "to": f"{target.name} {mask_iban(target.iban)}"},
            key=key,
        )
    ]
    if target.owner_id is not None:
        notices.append(
            notice(
                user_id=target.owner_id,
                event=Event.TRANSFER_RECEIVED,
                context={**shared, "from": mask_iban(source.iban)},
                key=key,
            )
        )
    if (journal.amount or 0) > limits.step_up_threshold:
        notices.append(
            notice(
                user_id=source.owner_id,
                event=Event.LARGE_TRANSACTION,
                context={**shared, "account": mask_iban(source.iban)},
                key=key,
            )
        )
    low = int(Decimal(settings.LOW_BALANCE_ALERT).scaleb(exponent(currency)))
    if before >= low > source.balance:
        notices.append(
            notice(
                user_id=source.owner_id,
                event=Event.LOW_BALANCE,
                context={
                    "account": mask_iban(source.iban),
                    "account_id": str(source.pk),
                    "balance": format_amount(source.balance, currency),
                    "currency": currency,
                },
                key=key,
            )
        )
    return notices

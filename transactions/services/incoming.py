"""Incoming credits: money another bank sent to one of our customers, told by the gateway's webhook.

Each notification is applied exactly once, however often (or however concurrently) the gateway
delivers it: `incoming_credit_apply` serialises deliveries of one notification id with an
advisory lock, and the unique `notification_id` backs it up in the database. The money comes
from the settlement clearing account (the bank's account at the gateway, which received it)
and goes to the customer's account - or, when no account can take it, to the suspense
account, where staff resolve it (`incoming_credit_resolve`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import BankAccount
from accounts.services.bank_accounts import InvalidIBAN, iban_normalize, internal_account
from bankcore.api.exceptions import BusinessRuleViolation
from bankcore.audit import audit_event, audit_record
from bankcore.db.retry import atomic_with_retry
from bankcore.money import format_amount
from integrations.gateway.messages import CreditNotification
from notifications.events import Event
from transactions.lock_objects import bank_accounts_for_update
from transactions.models import IncomingCredit, Transaction
from transactions.services.ledger import Leg, posting_prepare, posting_write
from transactions.services.notices import notice
from transactions.services.transfers import mask_iban

# Advisory-lock namespace of "applying this notification id" (a fixed number unused elsewhere).
_NOTIFICATION_LOCK_CLASS = 0x6E74


class SuspenseNotResolvable(BusinessRuleViolation):
    code = "suspense_not_resolvable"
    default_message = "This credit cannot be moved to that account."


def _notification_lock(notification_id: str) -> None:
    """Serialise deliveries of one notification until the end of the database transaction."""
    key = int.from_bytes(hashlib.sha256(notification_id.encode()).digest()[:4], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_NOTIFICATION_LOCK_CLASS, key])


def _receiving_account(*, iban: str, currency: str) -> BankAccount | None:
    """The customer account that can take a credit to `iban` in `currency`: active, customer-owned,
    same currency. A frozen or closed account, a currency that differs or an internal account:
    None (the credit waits in suspense for staff, who may return it or book it by hand)."""
    account = BankAccount.objects.filter(iban=iban).exclude(kind=BankAccount.Kind.INTERNAL).first()
    if account is None or account.owner_id is None:
        return None
    if account.status != BankAccount.Status.ACTIVE or account.currency != currency:
        return None
    return account


def _description(notification_debtor: str, remittance: str) -> str:
    text = f"From {notification_debtor}" if notification_debtor else "Incoming payment"
    if remittance:
        text = f"{text}: {remittance}"
    return text[:140]


def incoming_credit_apply(*, notification: CreditNotification) -> tuple[IncomingCredit, bool]:
    """Apply one credit notification: (the IncomingCredit, True) the first time, (the existing one,
    False) for every later delivery of the same notification id.

    Atomic: the IncomingCredit row, the posting (settlement clearing -> the customer's account,
    or -> suspense), the customer's alert (PAYMENT_RECEIVED, sent after COMMIT) and the audit
    event commit together. Deliveries of one id are serialised by an advisory lock taken first
    (then the accounts, pk order, then the audit head); the unique notification id refuses a
    second row even so, and that refusal undoes this attempt's posting (savepoint).
    """

    def work() -> tuple[IncomingCredit, bool]:
        _notification_lock(notification.id)
        existing = IncomingCredit.objects.filter(notification_id=notification.id).first()
        if existing is not None:
            return existing, False
        currency = notification.currency
        account = _receiving_account(iban=notification.iban, currency=currency)
        clearing = internal_account(purpose="settlement_clearing", currency=currency)
        target = account or internal_account(purpose="suspense", currency=currency)
        debtor = notification.debtor
        description = _description(debtor.name, notification.remittance_information)
        posting = posting_prepare(
            kind=Transaction.Kind.DEPOSIT,
            legs=[Leg(clearing.pk, -notification.amount), Leg(target.pk, notification.amount)],
            currency=currency,
            reference=f"gateway credit {notification.id}"[:140],
            description=description,
            source_account_id=clearing.pk,
            destination_account_id=target.pk,
            amount=notification.amount,
        )
        now = timezone.now()
        credit = IncomingCredit(
            notification_id=notification.id,
            iban=notification.iban[:34],
            amount=notification.amount,
            currency=currency,
            debtor_name=debtor.name[:140],
            debtor_iban=debtor.iban[:34],
            remittance_information=notification.remittance_information[:140],
            booked_at=notification.booked_at,
            status=IncomingCredit.Status.POSTED if account is not None else IncomingCredit.Status.SUSPENSE,
            account=account,
            transaction=posting.journal,
            received_at=now,
        )
        alerts = []
        if account is not None:
            amount_text = format_amount(notification.amount, currency)
            alerts.append(
                notice(
                    user_id=account.owner_id,
                    event=Event.PAYMENT_RECEIVED,
                    context={
                        "amount": amount_text,
                        "currency": currency,
                        "from": debtor.name,
                        "account": mask_iban(account.iban),
                        "remittance_information": notification.remittance_information,
                        "transfer_id": str(posting.journal.pk),
                    },
                    key=f"credit:{notification.id}",
                )
            )
        audit = audit_event(
            action=f"incoming_credit.{credit.status}",
            actor="gateway",
            target=posting.journal,
            details={
                "notification_id": notification.id,
                "iban": notification.iban,
                "amount": format_amount(notification.amount, currency),
                "currency": currency,
                "debtor_iban": debtor.iban,
            },
        )
        posting_write(posting, notices=alerts, audit=audit)
        try:
            with transaction.atomic():
                credit.save(force_insert=True)
        except IntegrityError:
            # Only a writer that skipped the advisory lock gets here: it won. Raising out of
            # the transaction undoes this attempt's posting.
            raise _AlreadyApplied() from None
        return credit, True

    try:
        return atomic_with_retry(work)
    except _AlreadyApplied:
        return IncomingCredit.objects.get(notification_id=notification.id), False


class _AlreadyApplied(Exception):
    """Raised out of the transaction so its posting rolls back; the winner's row is returned."""


def incoming_credit_resolve(*, credit_id: Any, iban: str, actor: Any) -> IncomingCredit:
    """Staff move a credit held in suspense to a customer account: suspense -> the account.

    Atomic and audited. Locks the credit row, then the two accounts (pk order). Raises
    SuspenseNotResolvable when the credit is not in suspense (resolved already) or the IBAN is
    no active customer account in the credit's currency. The customer is told, as for any credit.
    """
    try:
        iban = iban_normalize(iban)
    except InvalidIBAN as exc:
        raise SuspenseNotResolvable(f"Not a valid IBAN: {exc}") from None

    def work() -> IncomingCredit:
        credit = IncomingCredit.objects.select_for_update(of=("self",)).filter(pk=credit_id).first()
        if credit is None or credit.status != IncomingCredit.Status.SUSPENSE:
            raise SuspenseNotResolvable("This credit is not in suspense (resolved already?).")
        account = _receiving_account(iban=iban, currency=credit.currency)
        if account is None:
            raise SuspenseNotResolvable(f"No active customer account in {credit.currency} has IBAN {iban}.")
        suspense = internal_account(purpose="suspense", currency=credit.currency)
        accounts = bank_accounts_for_update([suspense.pk, account.pk])
        posting = posting_prepare(
            kind=Transaction.Kind.DEPOSIT,
            legs=[Leg(suspense.pk, -credit.amount), Leg(account.pk, credit.amount)],
            currency=credit.currency,
            initiated_by=actor if getattr(actor, "is_authenticated", False) else None,
            reference=f"suspense resolution {credit.notification_id}"[:140],
            description=_description(credit.debtor_name, credit.remittance_information),
            source_account_id=suspense.pk,
            destination_account_id=account.pk,
            amount=credit.amount,
            locked=accounts,
        )
        alert = notice(
            user_id=account.owner_id,
            event=Event.PAYMENT_RECEIVED,
            context={
                "amount": format_amount(credit.amount, credit.currency),
                "currency": credit.currency,
                "from": credit.debtor_name,
                "account": mask_iban(account.iban),
                "remittance_information": credit.remittance_information,
                "transfer_id": str(posting.journal.pk),
            },
            key=f"credit:{credit.notification_id}",
        )
        posting_write(posting, notices=[alert])
        credit.status = IncomingCredit.Status.RESOLVED
        credit.account = account
        credit.resolution = posting.journal
        credit.resolved_by = actor if getattr(actor, "is_authenticated", False) else None
        credit.save(update_fields=["status", "account", "resolution", "resolved_by"])
        audit_record(
            action="incoming_credit.resolved",
            actor=actor,
            target=credit,
            details={
                "account": str(account.pk),
                "iban": iban,
                "amount": format_amount(credit.amount, credit.currency),
                "transaction": str(posting.journal.pk),
            },
        )
        return credit

    return atomic_with_retry(work)

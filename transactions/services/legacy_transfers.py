"""Transfers between a bankcore account and an account on the legacy core, exactly once on both sides.

bankcore → legacy: hold on the source, 0200 credit at the core; approved: capture the hold
(source → `legacy_clearing`); declined: nothing posts (422/400); outcome unknown: nothing posts,
the 0200 is reversed (0400) by Celery until the core acknowledges, and the app gets 503.
legacy → bankcore: 0200 debit at the core; approved: post `legacy_clearing` → destination.

## Crash safety: what is committed when

The customer's request runs in ONE database transaction on the "default" connection
(bankcore/idempotency.py, "T" below), so nothing it writes is visible, or survives a crash,
before it commits. The core, however, applies a 0200 the moment it arrives. So every 0200 is
first written to the request journal (LegacyRequest) through a SECOND connection to the same
database ("journal" alias), which commits at once:

1. T takes a transaction-scoped advisory lock on the request's RRN (`_request_lock`), then the
   journal commits the row (status `sent`, the OriginalRequest as JSON). The lock says "the
   request that owns this row is still running" and is released by PostgreSQL when T ends in
   any way: commit, rollback, or the process dying (its connection closes).
2. The 0200 is sent. The core's answer is committed through the journal at once: `approved`,
   `declined`, `not_sent` (nothing left), or `reversal_pending` (timeout / garbage: unknown).
3. Approved: T posts and sets the row `completed` with its posting — in T, so the row is
   `completed` if and only if the bankcore posting committed.

Whoever finds a row in `sent`, `approved` or `reversal_pending` and can take its advisory lock
(`legacy_request_reverse`, the task and the sweep) knows that its request is over and did not
post: the row was never completed. It reverses the 0200 (0400, applied once per RRN by the core;
a 0400 for a 0200 the core never got is remembered, so a late 0200 is declined) until the core
acknowledges. So a transfer either completes on both sides or has no effect on either:
T rolled back (error, 503, deadlock retry, lost idempotency claim), a timeout, the web process
or the worker SIGKILLed at any point — each leaves the row open and unlocked, and it is reversed.
The row is never reversed while its request may still commit, because that request holds the
lock until its commit is over. (A rolled-back savepoint releases the lock with the posting.)
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Sum, When
from django.utils import timezone

from accounts.models import BankAccount, LegacyAccountLink
from accounts.services.bank_accounts import internal_account
from accounts.services.legacy_links import legacy_account_number_of, legacy_iban, legacy_link_record_balance
from accounts.services.step_up import step_up_consume
from bankcore.api.exceptions import ServiceUnavailable
from bankcore.audit import audit_event
from bankcore.money import format_amount
from integrations.legacy.client import default_client
from integrations.legacy.errors import LegacyError
from integrations.legacy.messages import LegacyResult, OriginalRequest
from notifications.events import Event
from transactions.exceptions import (
    AccountFrozen,
    AccountNotFound,
    CurrencyMismatch,
    InsufficientFunds,
    SameAccount,
    UnknownDestination,
)
from transactions.models import LegacyRequest, Transaction
from transactions.services.holds import hold_capture, hold_place
from transactions.services.ledger import Leg, available_balance, posting_prepare, posting_write
from transactions.services.limits import check_limits, limits_and_accounts_lock
from transactions.services.notices import notice
from transactions.services.transfers import STEP_UP_PURPOSE, mask_iban

logger = logging.getLogger(__name__)
JOURNAL_DB = "journal"
CLEARING = "legacy_clearing"
# Advisory-lock namespace of "the request that sent this RRN is running" (unused elsewhere).
_REQUEST_LOCK_CLASS = 0x4C47
REVERSAL_TASK = "transactions.tasks.legacy_reversal_retry"
_OPEN = (LegacyRequest.Status.SENT, LegacyRequest.Status.APPROVED, LegacyRequest.Status.REVERSAL_PENDING)


class LegacyCoreUnavailable(ServiceUnavailable):
    """503 `unavailable`: the core did not answer; nothing was posted. Retry with the same key."""

    default_message = "The legacy core banking system is not answering; nothing was booked. Please retry."


# --- the request journal -------------------------------------------------------------------


def _request_lock(rrn: str) -> None:
    """Held by the customer's request transaction (T) until it ends (see the module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_REQUEST_LOCK_CLASS, rrn])


def _request_try_lock(rrn: str) -> bool:
    """True when no running request owns `rrn` (then held until this transaction ends)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [_REQUEST_LOCK_CLASS, rrn])
        return bool(cursor.fetchone()[0])


def _journal_insert(**fields: Any) -> LegacyRequest:
    """Committed at once through the journal connection, whatever T does later."""
    now = timezone.now()
    with transaction.atomic(using=JOURNAL_DB):
        return LegacyRequest.objects.using(JOURNAL_DB).create(created_at=now, updated_at=now, **fields)


def _journal_mark(row: LegacyRequest, **fields: Any) -> None:
    """Record the core's answer at once (committed), independent of T."""
    fields["updated_at"] = timezone.now()
    with transaction.atomic(using=JOURNAL_DB):
        LegacyRequest.objects.using(JOURNAL_DB).filter(pk=row.pk).update(**fields)
    for name, value in fields.items():
        setattr(row, name, value)


@dataclass(frozen=True)
class _Sent:
    row: LegacyRequest
    result: LegacyResult


def _send(
    *,
    user: Any,
    original: OriginalRequest,
    direction: str,
    link: LegacyAccountLink | None,
    bankcore_account: BankAccount,
    description: str,
    hold_id: Any = None,
) -> _Sent:
    """Steps 1 and 2: lock, journal, send, journal the answer. Returns only when approved;
    raises the customer-facing error otherwise (T then rolls back or keeps a stored 422)."""
    _request_lock(original.rrn)
    row = _journal_insert(
        customer_id=user.pk,
        direction=direction,
        link_id=link.pk if link is not None else None,
        legacy_account_number=original.account_number,
        legacy_iban=link.iban if link is not None else legacy_iban(original.account_number),
        bankcore_account_id=bankcore_account.pk,
        amount=original.amount,
        currency=original.currency,
        description=description,
        rrn=original.rrn,
        original=original.to_dict(),
        hold_id=hold_id,
    )
    try:
        result = default_client().send(original)
    except LegacyError as exc:
        if exc.outcome_unknown:
            _journal_mark(row, status=LegacyRequest.Status.REVERSAL_PENDING, last_error=str(exc)[:500])
            _enqueue_reversal(row.pk)
            logger.warning("legacy request %s (rrn %s): outcome unknown, reversal stored: %s", row.pk, row.rrn, exc)
        else:
            _journal_mark(row, status=LegacyRequest.Status.NOT_SENT, last_error=str(exc)[:500])
        raise LegacyCoreUnavailable() from exc
    if not result.approved:
        _journal_mark(row, status=LegacyRequest.Status.DECLINED, response_code=result.response_code)
        raise _declined(result, direction=direction, original=original)
    _journal_mark(
        row,
        status=LegacyRequest.Status.APPROVED,
        response_code=result.response_code,
        approval_code=result.approval_code,
    )
    return _Sent(row, result)


def _complete(sent: _Sent, journal: Transaction) -> None:
    """Step 3, in T: the row is completed with the posting, or neither commits."""
    updated = LegacyRequest.objects.filter(pk=sent.row.pk, status=LegacyRequest.Status.APPROVED).update(
        status=LegacyRequest.Status.COMPLETED, transaction=journal, updated_at=timezone.now()
    )
    if updated != 1:  # cannot happen while we hold the request lock; never post without it
        raise RuntimeError(f"legacy request {sent.row.pk} changed under its own request")
    if sent.result.balance is not None:
        legacy_link_record_balance(account_number=sent.row.legacy_account_number, balance=sent.result.balance)
    LegacyRequest.transaction.field.set_cached_value(sent.row, journal)
    Transaction.legacy_request.related.set_cached_value(journal, sent.row)  # type: ignore[attr-defined]


def _declined(result: LegacyResult, *, direction: str, original: OriginalRequest) -> Exception:
    code = result.response_code
    if code == "51":
        return InsufficientFunds(details={"legacy_response_code": code})
    if code == "62":
        return AccountFrozen(details={"legacy_response_code": code})
    if code == "14":
        field = "destination" if direction == LegacyRequest.Direction.TO_LEGACY else "source_account"
        return UnknownDestination(details={field: ["The legacy core has no open account with this number."]})
    if code == "12":
        return CurrencyMismatch(details={"legacy_response_code": code, "currency": original.currency})
    return LegacyCoreUnavailable(f"The legacy core refused the transfer ({code}); nothing was booked.")


def _enqueue_reversal(request_id: int) -> None:
    """Ask a worker now; if the broker is down the beat sweep finds the row later anyway."""
    from bankcore.celery import app

    try:
        app.send_task(REVERSAL_TASK, args=(request_id,), countdown=1)
    except Exception:
        logger.exception("legacy request %s: could not enqueue its reversal; the sweep will", request_id)


# --- transfers -----------------------------------------------------------------------------


def _in_transaction(work: Any) -> Any:
    """The caller's transaction (the idempotent request) or one of our own - never a retrying
    one: a retried unit of work would send another 0200."""
    if connection.in_atomic_block:
        return work()
    with transaction.atomic():
        return work()


def _require_core() -> None:
    if not settings.LEGACY_CORE_ADDRESS:  # not configured: as if the core were down
        raise LegacyCoreUnavailable()


def is_legacy_iban(iban: str) -> bool:
    return legacy_account_number_of(iban) is not None


def transfer_to_legacy(
    *,
    user: Any,
    source_account_id: UUID,
    destination_iban: str,
    amount: int,
    currency: str,
    description: str = "",
    step_up_token: str | None = None,
) -> Transaction:
    """bankcore account → legacy account: hold, 0200 credit, capture (or release and reverse).

    Call inside the request's transaction (idempotent POST); see the module docstring for what
    is committed when. Locks the customer, the source account (global order), later the clearing
    account. Raises AccountNotFound, UnknownDestination (400, also the core's 14), CurrencyMismatch,
    AccountFrozen, LimitExceeded, StepUpRequired, InsufficientFunds, LegacyCoreUnavailable (503:
    nothing posted; a 0200 that may have arrived is being reversed).
    """
    account_number = legacy_account_number_of(destination_iban)
    if account_number is None:
        raise UnknownDestination(details={"destination": ["Not an account on the legacy core."]})
    _require_core()
    link = LegacyAccountLink.objects.filter(account_number=account_number).first()

    def work() -> Transaction:
        limits, accounts = limits_and_accounts_lock(
            user=user, currency=currency, source_account_id=source_account_id, destination_iban=destination_iban
        )
        source = accounts.get(source_account_id)
        if source is None or source.owner_id != user.pk or source.kind == BankAccount.Kind.INTERNAL:
            raise AccountNotFound()
        source.owner = user
        legacy_currency = link.currency if link is not None else currency
        if source.currency != currency or legacy_currency != currency:
            raise CurrencyMismatch(
                details={"source": source.currency, "destination": legacy_currency, "currency": currency}
            )
        check_limits(limits=limits, amount=amount)
        if source.status != BankAccount.Status.ACTIVE:
            raise AccountFrozen()
        if amount > available_balance(source):
            raise InsufficientFunds(details={"available": format_amount(available_balance(source), currency)})
        if amount > limits.step_up_threshold:
            step_up_consume(
                user=user,
                token=step_up_token,
                purpose=STEP_UP_PURPOSE,
                amount=format_amount(amount, currency),
                currency=currency,
                payee=destination_iban,
            )
        original = default_client().prepare_credit(account_number, amount, currency)
        hold = hold_place(account=source, amount=amount, reference=f"legacy {original.rrn}")
        sent = _send(
            user=user,
            original=original,
            direction=LegacyRequest.Direction.TO_LEGACY,
            link=link,
            bankcore_account=source,
            description=description,
            hold_id=hold.pk,
        )
        clearing = internal_account(purpose=CLEARING, currency=currency)
        shared = {"amount": format_amount(amount, currency), "currency": currency}
        journal = hold_capture(
            hold=hold,
            clearing_account_id=clearing.pk,
            description=description,
            reference=f"legacy {original.rrn}",
            kind=Transaction.Kind.TRANSFER,
            initiated_by=user,
            audit=audit_event(
                action="transfer.posted",
                actor=user,
                target=None,
                target_type="legacy_request",
                target_id=str(sent.row.pk),
                details={
                    "source": str(source.pk),
                    "destination": destination_iban,
                    "legacy_rrn": original.rrn,
                    "amount": shared["amount"],
                    "currency": currency,
                },
            ),
            notices=[
                notice(
                    user_id=user.pk,
                    event=Event.TRANSFER_SENT,
                    context={**shared, "description": description, "to": f"{mask_iban(destination_iban)}"},
                    key=f"legacy-{original.rrn}",
                )
            ],
        )
        _complete(sent, journal)
        return journal

    return _in_transaction(work)


def transfer_from_legacy(
    *,
    user: Any,
    link_id: UUID,
    destination_iban: str,
    amount: int,
    currency: str,
    description: str = "",
    step_up_token: str | None = None,
) -> Transaction:
    """The customer's linked legacy account → an account at this bank: 0200 debit, then post
    `legacy_clearing` → destination (or nothing, and the 0200 reversed). As transfer_to_legacy
    otherwise; the core's 51 is InsufficientFunds, its 62 AccountFrozen."""
    link = LegacyAccountLink.objects.filter(customer=user, pk=link_id).first()
    if link is None:
        raise AccountNotFound()
    _require_core()
    if link.iban == destination_iban:
        raise SameAccount()

    def work() -> Transaction:
        limits, accounts = limits_and_accounts_lock(
            user=user, currency=currency, source_account_id=link.pk, destination_iban=destination_iban
        )
        target = next((a for a in accounts.values() if a.iban == destination_iban), None)
        if target is None or target.kind == BankAccount.Kind.INTERNAL or target.status == BankAccount.Status.CLOSED:
            raise UnknownDestination(details={"destination": ["No open account at this bank has this IBAN."]})
        if link.currency != currency or target.currency != currency:
            raise CurrencyMismatch(
                details={"source": link.currency, "destination": target.currency, "currency": currency}
            )
        check_limits(limits=limits, amount=amount)
        if target.status != BankAccount.Status.ACTIVE:
            raise AccountFrozen()
        if amount > limits.step_up_threshold:
            step_up_consume(
                user=user,
                token=step_up_token,
                purpose=STEP_UP_PURPOSE,
                amount=format_amount(amount, currency),
                currency=currency,
                payee=target.iban,
            )
        original = default_client().prepare_debit(link.account_number, amount, currency)
        sent = _send(
            user=user,
            original=original,
            direction=LegacyRequest.Direction.FROM_LEGACY,
            link=link,
            bankcore_account=target,
            description=description,
        )
        clearing = internal_account(purpose=CLEARING, currency=currency)
        posting = posting_prepare(
            kind=Transaction.Kind.TRANSFER,
            legs=[Leg(clearing.pk, -amount), Leg(target.pk, amount)],
            currency=currency,
            initiated_by=user,
            description=description,
            reference=f"legacy {original.rrn}",
            source_account_id=clearing.pk,
            destination_account_id=target.pk,
            amount=amount,
        )
        shared = {"amount": format_amount(amount, currency), "currency": currency}
        alerts = []
        if target.owner_id is not None:
            alerts.append(
                notice(
                    user_id=target.owner_id,
                    event=Event.TRANSFER_RECEIVED,
                    context={**shared, "description": description, "from": mask_iban(link.iban)},
                    key=f"legacy-{original.rrn}",
                )
            )
        event = audit_event(
            action="transfer.posted",
            actor=user,
            target=None,
            target_type="legacy_request",
            target_id=str(sent.row.pk),
            details={
                "source": link.iban,
                "destination": str(target.pk),
                "legacy_rrn": original.rrn,
                "amount": shared["amount"],
                "currency": currency,
            },
        )
        posting_write(posting, notices=alerts, audit=event)
        _complete(sent, posting.journal)
        return posting.journal

    return _in_transaction(work)


# --- store-and-forward reversals ------------------------------------------------------------


@dataclass(frozen=True)
class ReversalOutcome:
    """`done`: nothing (more) to do for this row; otherwise retry after `retry_in` seconds."""

    done: bool
    retry_in: float = 0.0
    reason: str = ""


def _backoff(attempts: int) -> float:
    base = settings.LEGACY_REVERSAL_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return min(base, settings.LEGACY_REVERSAL_RETRY_MAX_SECONDS) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter


def legacy_request_reverse(*, request_id: int) -> ReversalOutcome:
    """Send the 0400 for an open legacy request whose customer request is over, once per call.

    Safe to call at any time, from any process, any number of times: a row whose request still
    runs (its advisory lock is held) is left alone (`retry_in`); a completed, declined or
    reversed row is done; the core applies a reversal once per RRN. Acknowledged (00 or 25):
    the row is `reversed`. Otherwise the attempt is counted, and after
    LEGACY_REVERSAL_ALERT_AFTER attempts every further failure is logged at ERROR for operators.
    """
    with transaction.atomic():
        row = LegacyRequest.objects.filter(pk=request_id).only("rrn", "status").first()
        if row is None or row.status not in _OPEN:
            return ReversalOutcome(done=True, reason="not open")
        if not _request_try_lock(row.rrn):
            return ReversalOutcome(done=False, retry_in=settings.LEGACY_REVERSAL_RETRY_SECONDS, reason="in flight")
        # Read again after the lock: its request may have committed `completed` just now.
        row = LegacyRequest.objects.select_for_update().get(pk=request_id)
        if row.status not in _OPEN:
            return ReversalOutcome(done=True, reason="not open")
        original = OriginalRequest.from_dict(row.original)
        now = timezone.now()
        try:
            result = default_client().reverse(original)
        except LegacyError as exc:
            return _reversal_failed(row, now=now, error=str(exc))
        if not result.acknowledged:
            return _reversal_failed(
                row, now=now, error=f"0410 answered {result.response_code}", code=result.response_code
            )
        row.status = LegacyRequest.Status.REVERSED
        row.reversal_response_code = result.response_code
        row.reversal_attempts += 1
        row.next_attempt_at = None
        row.updated_at = now
        row.save(
            update_fields=["status", "reversal_response_code", "reversal_attempts", "next_attempt_at", "updated_at"]
        )
        if result.balance is not None:
            legacy_link_record_balance(account_number=row.legacy_account_number, balance=result.balance)
        logger.info("legacy request %s (rrn %s) reversed at the core (%s)", row.pk, row.rrn, result.response_code)
        return ReversalOutcome(done=True, reason="reversed")


def _reversal_failed(row: LegacyRequest, *, now: datetime, error: str, code: str = "") -> ReversalOutcome:
    row.status = LegacyRequest.Status.REVERSAL_PENDING
    row.reversal_attempts += 1
    row.reversal_response_code = code
    row.last_error = error[:500]
    delay = _backoff(row.reversal_attempts)
    row.next_attempt_at = now + timedelta(seconds=delay)
    row.updated_at = now
    row.save(
        update_fields=[
            "status",
            "reversal_attempts",
            "reversal_response_code",
            "last_error",
            "next_attempt_at",
            "updated_at",
        ]
    )
    log = logger.error if row.reversal_attempts >= settings.LEGACY_REVERSAL_ALERT_AFTER else logger.warning
    log(
        "legacy reversal of request %s (rrn %s, %s %s %s) failed %s times: %s",
        row.pk,
        row.rrn,
        row.direction,
        format_amount(row.amount, row.currency),
        row.currency,
        row.reversal_attempts,
        error,
    )
    return ReversalOutcome(done=False, retry_in=delay, reason=error)


def legacy_reversals_due(*, limit: int = 500) -> list[int]:
    """Open rows to (re)try now: pending reversals whose next attempt is due, and rows left
    `sent`/`approved` longer than LEGACY_REQUEST_STALE_SECONDS (their request died). Rows whose
    request still runs are filtered out by `legacy_request_reverse`'s lock, not here."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LEGACY_REQUEST_STALE_SECONDS)
    rows = LegacyRequest.objects.filter(status__in=_OPEN).order_by("created_at")
    due = [
        row.pk
        for row in rows.only("status", "created_at", "next_attempt_at")[:limit]
        if (row.status == LegacyRequest.Status.REVERSAL_PENDING and (row.next_attempt_at or now) <= now)
        or (row.status != LegacyRequest.Status.REVERSAL_PENDING and row.created_at <= stale)
    ]
    return due


def legacy_open_requests() -> list[LegacyRequest]:
    """Every request not finished on both sides (for reconciliation)."""
    return list(LegacyRequest.objects.filter(status__in=_OPEN).order_by("created_at"))


def legacy_request_of(journal: Transaction) -> LegacyRequest | None:
    """The legacy request of a posting, when the relation was loaded (never a query)."""
    related = Transaction.legacy_request.related  # type: ignore[attr-defined]
    # select_related caches None for "no legacy request"; the descriptor would raise on it.
    if related.is_cached(journal):
        cached: LegacyRequest | None = related.get_cached_value(journal)  # type: ignore[assignment]
        return cached
    return None


def legacy_clearing_expected(*, currency: str) -> int:
    """What `legacy_clearing` should hold in `currency`: credits sent to the core minus debits
    taken from it, over every completed request."""
    signed = Case(
        When(direction=LegacyRequest.Direction.TO_LEGACY, then=F("amount")),
        default=-F("amount"),
        output_field=BigIntegerField(),
    )
    completed = LegacyRequest.objects.filter(status=LegacyRequest.Status.COMPLETED, currency=currency)
    return int(completed.aggregate(total=Sum(signed))["total"] or 0)

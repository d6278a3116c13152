"""Settlement: pending payments leave for the gateway in batches and come back settled or rejected.

Exactly-once effect under crashes. Every step records its outcome in the database before the
next side effect; no network call runs inside a database transaction; every step may be run
again (a task's retry, the sweep, an operator) and then changes nothing twice:

- form (one DB transaction per batch): due pending payments, locked SKIP LOCKED oldest first,
  become one SettlementBatch whose pain.001 is built, XSD-validated and stored with it; the
  payments move to `batched`. `payment_cancel` locks the payment row and requires `pending`,
  so a payment is either batched or cancelled, never both.
- submit (HTTP, then one DB transaction): the stored bytes go to the gateway under the batch's
  message id; the receipt moves the batch to `submitted` and its payments with it. A crash
  between the gateway's receipt and our record re-sends the same message id, which the gateway
  deduplicates.
- report (HTTP, then DB transactions in chunks): the pain.002 is stored; each payment still
  `submitted` is, under its row lock, settled (hold captured: one debit against the settlement
  clearing account) or rejected (hold released, limit usage given back, customer told). The
  status check under the lock and the hold's own "active" check make a re-driven chunk a no-op.
- sweep (beat): re-drives what a lost task or a killed worker left behind, forms the batches of
  a missed cut-off, and alerts operators once per payment left open too long.

Lock order (transactions/lock_objects.py): payment rows first (this module and payment_cancel
lock one payment row before anything else), then customers, then bank accounts in pk order -
the settlement clearing account is an account like any other, so it is locked with the chunk's
other accounts, in pk order, in one statement.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, DateTimeField, F, Q, QuerySet
from django.db.models.functions import Cast, Greatest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from accounts.services.bank_accounts import internal_account
from bankcore.db.retry import atomic_with_retry
from bankcore.ids import uuid7
from bankcore.maintenance import maintenance_active
from bankcore.money import format_amount
from integrations.gateway.client import GatewayClient
from integrations.gateway.errors import GatewayRejected, GatewayUnavailable, InvalidMessage, UnknownMessage
from integrations.gateway.iso20022 import build_pain001
from integrations.gateway.messages import (
    CreditTransfer,
    CreditTransferBatch,
    Party,
    StatusReport,
    SubmissionReceipt,
    TransactionStatus,
)
from notifications.events import Event
from transactions.lock_objects import bank_accounts_for_update
from transactions.models import Payment, PaymentEvent, SettlementBatch
from transactions.services.holds import hold_capture
from transactions.services.notices import notice, notices_queue
from transactions.services.payments import payment_record_status, payment_release
from transactions.services.transfers import mask_iban

logger = logging.getLogger(__name__)

# ISO 20022 reason codes we set ourselves when a payment cannot be put into a valid pain.001.
REASON_CURRENCY_NOT_ALLOWED = "AM03"  # NotAllowedCurrency: the gateway is SEPA, EUR only
REASON_INVALID_FORMAT = "FF01"  # InvalidFileFormat: a value the pain.001 schema refuses
# Refusals of a whole batch back off this long, doubling per attempt, up to the cap.
REFUSED_BACKOFF = timedelta(minutes=5)
REFUSED_BACKOFF_MAX = timedelta(hours=6)


# --- the gateway and the bank's own account at it ----------------------------------------------


# Why settlement does not run now; formed and submitted batches stay due and the first sweep
# afterwards re-drives them (and forms the batches of a cut-off that was skipped).
PAUSED = "paused: maintenance mode"
NO_GATEWAY = "idle: PAYMENT_GATEWAY_URL is not set"


def settlement_held_back(*, fresh: bool = False) -> str | None:
    """PAUSED while maintenance mode is on, NO_GATEWAY while no gateway is configured (payments
    wait, pending), else None. `fresh` reads the maintenance switch from the database rather
    than this process's few-seconds memo (an operator command)."""
    if maintenance_active(fresh=fresh):
        return PAUSED
    if not settings.PAYMENT_GATEWAY_URL:
        logger.warning("settlement idle: PAYMENT_GATEWAY_URL is not set; payments to other banks wait")
        return NO_GATEWAY
    return None


_clients = threading.local()


def gateway_client() -> GatewayClient:
    """This thread's client for settings.PAYMENT_GATEWAY_URL (a client's HTTP session is not
    shared across threads; the circuit breaker is one per process whatever the client)."""
    key = (settings.PAYMENT_GATEWAY_URL, settings.PAYMENT_GATEWAY_TIMEOUT)
    if getattr(_clients, "key", None) != key:
        _clients.client = GatewayClient.from_settings()
        _clients.key = key
    client: GatewayClient = _clients.client
    return client


def settlement_debtor() -> Party:
    """The bank's settlement account at the gateway: the debtor of every pain.001."""
    return Party(
        name=settings.SETTLEMENT_DEBTOR_NAME, iban=settings.SETTLEMENT_DEBTOR_IBAN, bic=settings.SETTLEMENT_DEBTOR_BIC
    )


def _message_id(batch_id: UUID) -> str:
    """The pain.001 MsgId (Max35Text, unique): the batch's uuid7 in hex, 35 characters."""
    return f"BC-{batch_id.hex}"


# --- status changes in bulk --------------------------------------------------------------------

_ADVANCE_SQL = """
UPDATE transactions_payment SET status = %s, updated_at = %s{batch}
WHERE {where} AND status = %s
RETURNING id
"""


def _advance(
    *, where: str, params: Sequence[Any], from_status: str, to_status: str, at: datetime, batch_id: UUID | None = None
) -> list[UUID]:
    """Move every payment matching `where` that is still `from_status` to `to_status`, with its
    timeline event; returns the payments moved. Call inside a transaction.

    The bulk form of payments.payment_record_status for the steps that move a whole batch at
    once (one UPDATE and one INSERT instead of two statements per payment). The status
    condition makes a repeated step move nothing; the timeline's (payment, status) uniqueness
    would refuse a repeated event anyway.
    """
    batch_sql, batch_params = (", batch_id = %s", [batch_id]) if batch_id is not None else ("", [])
    sql = _ADVANCE_SQL.format(batch=batch_sql, where=where)
    with connection.cursor() as cursor:
        cursor.execute(sql, [to_status, at, *batch_params, *params, from_status])
        moved = [row[0] for row in cursor.fetchall()]
    PaymentEvent.objects.bulk_create(
        [PaymentEvent(payment_id=pk, status=to_status, at=at) for pk in moved], batch_size=2000
    )
    return moved


# --- 1. forming batches -------------------------------------------------------------------------


def _due_pending(today: date) -> QuerySet[Payment]:
    return Payment.objects.filter(status=Payment.Status.PENDING, requested_execution_date__lte=today)


def _transfer(payment: Payment) -> CreditTransfer:
    return CreditTransfer(
        end_to_end_id=payment.end_to_end_id,
        amount=payment.amount,
        currency=payment.currency,
        creditor=Party(name=payment.creditor_name, iban=payment.creditor_iban, bic=payment.creditor_bic),
        remittance_information=payment.remittance_information,
    )


def _unsendable(
    transfers: list[CreditTransfer], make: Any, error: InvalidMessage | None = None
) -> dict[str, InvalidMessage]:
    """The transfers that make the pain.001 invalid, by end-to-end id, with the schema's error.

    Bisects: k offenders among n transfers cost about 2k·log2(n) builds, not n.
    """
    if error is None:
        try:
            build_pain001(make(transfers))
            return {}
        except InvalidMessage as exc:
            error = exc
    if len(transfers) == 1:
        return {transfers[0].end_to_end_id: error}
    middle = len(transfers) // 2
    return {**_unsendable(transfers[:middle], make), **_unsendable(transfers[middle:], make)}


def _reason_for(payment: Payment, error: InvalidMessage) -> str:
    return REASON_CURRENCY_NOT_ALLOWED if "SEPA transfers are in EUR" in str(error) else REASON_INVALID_FORMAT


def _form_one(
    *, currency: str, today: date, now: datetime, debtor: Party
) -> tuple[SettlementBatch | None, dict[UUID, str]]:
    """Form at most one batch of `currency` in one transaction. Returns the batch (None when no
    payment was free, or none of them could be sent) and the unsendable payments with the
    reason code each should be rejected with (they are still pending: the caller rejects them)."""
    unsendable: dict[UUID, str] = {}
    with transaction.atomic():
        payments = list(
            _due_pending(today)
            .filter(currency=currency)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("created_at", "id")[: settings.SETTLEMENT_BATCH_MAX]
        )
        if not payments:
            return None, unsendable
        batch_id = uuid7()
        message_id = _message_id(batch_id)

        def make(transfers: list[CreditTransfer]) -> CreditTransferBatch:
            return CreditTransferBatch(
                message_id=message_id, debtor=debtor, requested_execution_date=today, transfers=transfers
            )

        transfers = [_transfer(payment) for payment in payments]
        try:
            xml = build_pain001(make(transfers))
        except InvalidMessage as exc:
            offenders = _unsendable(transfers, make, exc)
            if not offenders:  # the batch as a whole is invalid, every payment alone is fine
                logger.error(
                    "settlement batch cannot be built: %s", exc, extra={"currency": currency, "count": len(payments)}
                )
                raise
            for payment in payments:
                error = offenders.get(payment.end_to_end_id)
                if error is not None:
                    unsendable[payment.pk] = _reason_for(payment, error)
                    logger.error(
                        "payment %s cannot be sent: its pain.001 fails the schema (%s); rejecting it",
                        payment.pk,
                        error,
                        extra={"payment_id": str(payment.pk), "end_to_end_id": payment.end_to_end_id},
                    )
            payments = [payment for payment in payments if payment.pk not in unsendable]
            if not payments:
                return None, unsendable
            transfers = [_transfer(payment) for payment in payments]
            xml = build_pain001(make(transfers))
        batch = SettlementBatch.objects.create(
            id=batch_id,
            message_id=message_id,
            currency=currency,
            payment_count=len(payments),
            control_sum=sum(payment.amount for payment in payments),
            requested_execution_date=today,
            xml=xml.decode("utf-8"),
            created_at=now,
            next_attempt_at=now + _sweep_after(),
        )
        moved = _advance(
            where="id = ANY(%s::uuid[])",
            params=[[str(payment.pk) for payment in payments]],
            from_status=Payment.Status.PENDING,
            to_status=Payment.Status.BATCHED,
            at=now,
            batch_id=batch.pk,
        )
        if len(moved) != len(payments):  # rows were locked by us: a bug, not a race
            raise AssertionError(f"batched {len(moved)} of {len(payments)} locked payments")
    logger.info(
        "settlement batch formed",
        extra={"batch_id": str(batch.pk), "message_id": message_id, "count": batch.payment_count},
    )
    return batch, unsendable


def settlement_form_batches(*, now: datetime | None = None) -> list[SettlementBatch]:
    """Put every due pending payment (requested_execution_date <= today) into settlement batches.

    One DB transaction per batch: at most SETTLEMENT_BATCH_MAX payments of one currency, oldest
    first, locked FOR UPDATE SKIP LOCKED (a payment being cancelled, or batched by a concurrent
    run, is left to that transaction). The pain.001 is built and validated against the XSD
    before anything is stored; nothing is sent here (settlement_submit does that).

    A payment whose data the schema refuses (say a malformed IBAN, or a currency the SEPA
    gateway does not take) is found by bisecting the batch, logged at ERROR and rejected with
    an ISO reason code (FF01, AM03): hold released, limit given back, customer told. It is not
    parked: a payment that can never be sent would otherwise hold its customer's money and sit
    in front of every later batch forever. The rest of the batch goes as usual.
    Returns the batches formed by this call.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    debtor = settlement_debtor()
    batches: list[SettlementBatch] = []
    currencies = sorted(set(_due_pending(today).values_list("currency", flat=True).distinct()))
    for currency in currencies:
        while True:
            batch, unsendable = _form_one(currency=currency, today=today, now=now, debtor=debtor)
            for payment_id, reason in unsendable.items():
                payment_reject(payment_id=payment_id, reason_code=reason, from_status=Payment.Status.PENDING)
            if batch is not None:
                batches.append(batch)
            elif not unsendable:
                break
    return batches


# --- 2. submitting ------------------------------------------------------------------------------


def _sweep_after() -> timedelta:
    return timedelta(seconds=settings.SETTLEMENT_SWEEP_AFTER_SECONDS)


def _refused_backoff(attempts: int) -> timedelta:
    return min(REFUSED_BACKOFF * 2 ** max(attempts - 1, 0), REFUSED_BACKOFF_MAX)


@dataclass(frozen=True)
class SubmitResult:
    batch: SettlementBatch
    receipt: SubmissionReceipt | None  # None: the batch was not formed (nothing was sent)
    recorded: bool  # this call moved the batch to submitted


def _submit_failed(batch_id: UUID, error: str, *, next_attempt_at: datetime) -> SettlementBatch:
    with transaction.atomic():
        batch = SettlementBatch.objects.select_for_update().get(pk=batch_id)
        batch.submit_attempts += 1
        batch.last_error = error[:255]
        batch.next_attempt_at = next_attempt_at
        batch.save(update_fields=["submit_attempts", "last_error", "next_attempt_at"])
    return batch


def settlement_submit(*, batch_id: UUID, now: datetime | None = None) -> SubmitResult:
    """Send a formed batch's stored pain.001 to the gateway and record its receipt.

    Idempotent: a batch that is not `formed` is left alone (nothing is sent). The HTTP call
    runs outside any transaction; the receipt is recorded in one transaction (batch locked,
    still formed) that moves the batch to `submitted` and its `batched` payments with it.
    Sending the same message id again after an unknown outcome is safe: the gateway
    deduplicates by it and answers with a duplicate receipt.

    Raises GatewayUnavailable (outcome unknown; attempts and the error are recorded: retry)
    and GatewayRejected (4xx; logged at ERROR, staff alerted once per batch, the batch stays
    formed and the sweep tries again only after a growing back-off).
    """
    batch = SettlementBatch.objects.get(pk=batch_id)
    if batch.status != SettlementBatch.Status.FORMED:
        return SubmitResult(batch, None, False)
    try:
        receipt = gateway_client().submit(batch.xml.encode("utf-8"), message_id=batch.message_id)
        if not receipt.accepted:
            raise GatewayRejected(200, "the gateway did not accept the message")
    except GatewayUnavailable as exc:
        moment = timezone.now()
        _submit_failed(batch_id, f"unavailable: {exc}", next_attempt_at=moment + _sweep_after())
        logger.warning("settlement batch submit failed, will retry: %s", exc, extra={"batch_id": str(batch_id)})
        raise
    except GatewayRejected as exc:
        moment = timezone.now()
        failed = _submit_failed(
            batch_id, f"refused: {exc}", next_attempt_at=moment + _refused_backoff(batch.submit_attempts + 1)
        )
        logger.error(
            "the gateway refused settlement batch %s: %s", batch.message_id, exc, extra={"batch_id": str(batch_id)}
        )
        _alert_refused_batch(failed, str(exc))
        raise
    now = now or timezone.now()
    with transaction.atomic():
        batch = SettlementBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status != SettlementBatch.Status.FORMED:  # a concurrent submit recorded it first
            return SubmitResult(batch, receipt, False)
        batch.status = SettlementBatch.Status.SUBMITTED
        batch.submitted_at = now
        batch.submit_attempts += 1
        batch.last_error = ""
        batch.next_attempt_at = now + timedelta(seconds=settings.SETTLEMENT_REPORT_POLL_SECONDS) + _sweep_after()
        batch.save(update_fields=["status", "submitted_at", "submit_attempts", "last_error", "next_attempt_at"])
        # After an UnknownMessage resubmission the payments are `submitted` already: none move.
        _advance(
            where="batch_id = %s",
            params=[batch.pk],
            from_status=Payment.Status.BATCHED,
            to_status=Payment.Status.SUBMITTED,
            at=now,
        )
    logger.info(
        "settlement batch submitted",
        extra={"batch_id": str(batch.pk), "message_id": batch.message_id, "duplicate": receipt.duplicate},
    )
    return SubmitResult(batch, receipt, True)


def _alert_refused_batch(batch: SettlementBatch, error: str) -> None:
    """E-mail staff that the gateway refused a batch, once per batch (claimed by alerted_at)."""
    claimed = SettlementBatch.objects.filter(pk=batch.pk, alerted_at=None).update(alerted_at=timezone.now())
    if not claimed:
        return
    _email_staff(
        subject=f"Settlement batch {batch.message_id} refused by the payment gateway",
        lines=[
            f"The gateway refused settlement batch {batch.message_id} ({batch.payment_count} payments,"
            f" {format_amount(batch.control_sum, batch.currency)} {batch.currency}):",
            error,
            "",
            "The batch stays formed and is retried with a growing back-off; its payments stay open.",
        ],
    )


# --- 3. applying the status report --------------------------------------------------------------


class ReportOutcome(StrEnum):
    COMPLETED = "completed"  # every payment of the batch is final
    NOT_READY = "not_ready"  # no report yet (or some payments still pending at the gateway): poll again
    RESUBMIT = "resubmit"  # the gateway never got the message: the batch is formed again
    NOT_SUBMITTED = "not_submitted"  # the batch is still formed: submit it first


@dataclass
class ReportResult:
    outcome: ReportOutcome
    settled: int = 0
    rejected: int = 0
    open: int = 0


def _verdict(report: StatusReport, verdicts: dict[str, TransactionStatus], end_to_end_id: str) -> TransactionStatus:
    # A report may carry only the group status (all accepted, or the whole message rejected).
    return verdicts.get(end_to_end_id) or TransactionStatus(end_to_end_id, report.group_status)


def settlement_apply_report(*, batch_id: UUID, now: datetime | None = None) -> ReportResult:
    """Fetch the batch's pain.002 and settle or reject each of its submitted payments.

    Outside any transaction: the HTTP call. Then the report's XML is stored on the batch, and
    the payments are applied in chunks of SETTLEMENT_APPLY_CHUNK, one DB transaction each
    (payment_settle / payment_reject semantics: row locked, must still be `submitted`). A
    payment already final is skipped, so re-applying a report changes nothing. When no payment
    of the batch is open any more, the batch is `completed`.

    UnknownMessage (the gateway never got it, e.g. it lost its store) moves the batch back to
    `formed` so it is resubmitted with the same message id. GatewayUnavailable propagates: retry.
    """
    batch = SettlementBatch.objects.get(pk=batch_id)
    if batch.status == SettlementBatch.Status.COMPLETED:
        return ReportResult(ReportOutcome.COMPLETED)
    if batch.status == SettlementBatch.Status.FORMED:
        return ReportResult(ReportOutcome.NOT_SUBMITTED)
    try:
        report = gateway_client().status_report(batch.message_id)
    except UnknownMessage:
        with transaction.atomic():
            updated = SettlementBatch.objects.filter(pk=batch_id, status=SettlementBatch.Status.SUBMITTED).update(
                status=SettlementBatch.Status.FORMED,
                last_error="the gateway does not know the message: resubmitting it",
                next_attempt_at=timezone.now() + _sweep_after(),
            )
        logger.warning(
            "the gateway does not know settlement batch %s; it goes back to be resubmitted",
            batch.message_id,
            extra={"batch_id": str(batch_id), "moved": updated},
        )
        return ReportResult(ReportOutcome.RESUBMIT)
    moment = now or timezone.now()
    if report is None:
        SettlementBatch.objects.filter(pk=batch_id).update(
            next_attempt_at=moment + timedelta(seconds=settings.SETTLEMENT_REPORT_POLL_SECONDS) + _sweep_after()
        )
        return ReportResult(ReportOutcome.NOT_READY)
    if report.original_message_id != batch.message_id:
        raise InvalidMessage(
            f"report {report.message_id} is about {report.original_message_id}, not {batch.message_id}"
        )
    SettlementBatch.objects.filter(pk=batch_id).update(status_report=report.xml.decode("utf-8"))

    verdicts = {status.end_to_end_id: status for status in report.transactions}
    result = ReportResult(ReportOutcome.NOT_READY)
    open_payments = list(
        Payment.objects.filter(batch_id=batch_id, status=Payment.Status.SUBMITTED)
        .order_by("pk")
        .values_list("pk", "end_to_end_id")
    )
    decided = {pk: _verdict(report, verdicts, e2e) for pk, e2e in open_payments}
    final = [pk for pk, verdict in decided.items() if verdict.accepted or verdict.rejected]
    chunk = settings.SETTLEMENT_APPLY_CHUNK
    for start in range(0, len(final), chunk):
        ids = final[start : start + chunk]
        settled, rejected = atomic_with_retry(functools.partial(_apply_chunk, ids, decided, moment))
        result.settled += settled
        result.rejected += rejected
    if _complete_if_done(batch_id, moment):
        result.outcome = ReportOutcome.COMPLETED
    else:
        result.open = Payment.objects.filter(batch_id=batch_id, status__in=Payment.OPEN_STATUSES).count()
        SettlementBatch.objects.filter(pk=batch_id).update(
            next_attempt_at=moment + timedelta(seconds=settings.SETTLEMENT_REPORT_POLL_SECONDS) + _sweep_after()
        )
    logger.info(
        "settlement report applied",
        extra={
            "batch_id": str(batch_id),
            "settled": result.settled,
            "rejected": result.rejected,
            "outcome": str(result.outcome),
        },
    )
    return result


def _complete_if_done(batch_id: UUID, now: datetime) -> bool:
    with transaction.atomic():
        batch = SettlementBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status == SettlementBatch.Status.COMPLETED:
            return True
        if Payment.objects.filter(batch_id=batch_id, status__in=Payment.OPEN_STATUSES).exists():
            return False
        batch.status = SettlementBatch.Status.COMPLETED
        batch.completed_at = now
        batch.next_attempt_at = None
        batch.save(update_fields=["status", "completed_at", "next_attempt_at"])
    return True


def _clearing_account_id(currency: str) -> UUID:
    return internal_account(purpose="settlement_clearing", currency=currency).pk  # type: ignore[no-any-return]


def _apply_chunk(ids: list[UUID], decided: dict[UUID, TransactionStatus], now: datetime) -> tuple[int, int]:
    """Settle or reject the payments `ids` (call inside one transaction). Returns (settled, rejected).

    Locks, in the global order: the payment rows (only those still `submitted`; payment_cancel
    too locks the payment row before anything else), then every account involved - the payers
    and the clearing accounts - in pk order, in one statement, so the per-payment captures and
    releases below only re-take locks this transaction holds; the audit chain head (a
    rejection's audit record) comes last.
    """
    payments = list(
        Payment.objects.select_for_update(of=("self",))
        .select_related("hold")
        .filter(pk__in=ids, status=Payment.Status.SUBMITTED)
        .order_by("pk")
    )
    if not payments:
        return 0, 0
    clearing = {currency: _clearing_account_id(currency) for currency in {payment.currency for payment in payments}}
    bank_accounts_for_update([*(payment.source_account_id for payment in payments), *clearing.values()])
    settled = rejected = 0
    rejection_notices = []
    for payment in payments:
        verdict = decided[payment.pk]
        if verdict.accepted:
            _settle_locked(payment, clearing_account_id=clearing[payment.currency], now=now)
            settled += 1
        else:
            rejection_notices.append(_reject_locked(payment, reason_code=verdict.reason_code or "NARR"))
            rejected += 1
    notices_queue(journal=None, notices=rejection_notices)
    return settled, rejected


def _payment_notice(payment: Payment, event: Event, **extra: str) -> dict[str, Any]:
    return notice(
        user_id=payment.customer_id,
        event=event,
        context={
            "payment_id": str(payment.pk),
            "amount": format_amount(payment.amount, payment.currency),
            "currency": payment.currency,
            "to": f"{payment.creditor_name} {mask_iban(payment.creditor_iban)}",
            "remittance_information": payment.remittance_information,
            **extra,
        },
        key=str(payment.pk),
    )


def _settle_locked(payment: Payment, *, clearing_account_id: UUID, now: datetime) -> None:
    """Capture the hold (one debit against the clearing account) and mark the payment settled.
    Call with the payment row and both accounts locked, the payment `submitted`."""
    journal = hold_capture(
        hold=payment.hold,
        clearing_account_id=clearing_account_id,
        description=f"Payment to {payment.creditor_name}"[:255],
        reference=payment.end_to_end_id,
        notices=[_payment_notice(payment, Event.PAYMENT_SETTLED)],
    )
    payment.transaction = journal  # saved with the status (a settled payment has its posting)
    payment_record_status(payment=payment, status=Payment.Status.SETTLED, at=now)


# What the customer reads for the reason codes a gateway gives most (ISO 20022 ExternalStatusReason1Code).
REASON_TEXT = {
    "AC01": "the account number is incorrect",
    "AC04": "the account is closed",
    "AC06": "the account is blocked",
    "AG01": "the receiving bank does not accept this transaction",
    "AM03": "the currency is not accepted",
    "BE04": "the creditor's address is missing",
    "FF01": "the payment data could not be sent",
    "MS02": "the receiving bank refused it",
    "MS03": "the receiving bank refused it",
    "RC01": "the bank code (BIC) is incorrect",
}


def _reject_locked(payment: Payment, *, reason_code: str) -> dict[str, Any]:
    """Release the hold, give the limit usage back (payments.payment_release) and mark the payment
    rejected with `reason_code`; returns the customer's alert to queue. Call with the payment row
    locked and `submitted` or `pending`."""
    reason_code = reason_code[:8]
    payment_release(payment=payment, status=Payment.Status.REJECTED, reason_code=reason_code)
    return _payment_notice(
        payment, Event.PAYMENT_REJECTED, reason_code=reason_code, reason=REASON_TEXT.get(reason_code, "")
    )


def payment_reject(*, payment_id: UUID, reason_code: str, from_status: str) -> bool:
    """Reject one payment that is still `from_status` (our own verdict, e.g. it cannot be put into
    a valid pain.001). Atomic; idempotent (False if it was not `from_status` any more)."""

    def work() -> bool:
        payment = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("hold")
            .filter(pk=payment_id, status=from_status)
            .first()
        )
        if payment is None:
            return False
        notices_queue(journal=None, notices=[_reject_locked(payment, reason_code=reason_code)])
        return True

    return atomic_with_retry(work)


# --- 4. the sweep -------------------------------------------------------------------------------


def cutoff_schedule() -> crontab:
    """settings.SETTLEMENT_CUTOFF ("minute hour day-of-month month day-of-week", cron order)."""
    minute, hour, day_of_month, month, day_of_week = settings.SETTLEMENT_CUTOFF.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month, day_of_week=day_of_week)


def last_cutoff(now: datetime) -> datetime | None:
    """The latest cut-off at or before `now` within the last 8 days (None if none)."""
    schedule = cutoff_schedule()
    moment = now.astimezone(timezone.get_current_timezone()).replace(second=0, microsecond=0)
    for _ in range(8 * 24 * 60):
        weekday = (moment.isoweekday()) % 7  # crontab: Sunday = 0
        if (
            moment.minute in schedule.minute
            and moment.hour in schedule.hour
            and moment.day in schedule.day_of_month
            and moment.month in schedule.month_of_year
            and weekday in schedule.day_of_week
        ):
            return moment
        moment -= timedelta(minutes=1)
    return None


@dataclass
class SweepResult:
    submit: list[UUID] = field(default_factory=list)  # formed batches whose submission to (re)drive
    poll: list[UUID] = field(default_factory=list)  # submitted batches whose report to (re)fetch
    formed: int = 0  # batches formed because a cut-off run was missed
    alerted: int = 0  # payments newly reported to operators as open too long


def settlement_sweep(*, now: datetime | None = None) -> SweepResult:
    """Find what a lost task, a killed worker or a missed cut-off left behind (beat, every minute).

    - formed batches whose next attempt is due: to submit (again; the gateway dedups);
    - submitted batches whose next poll is due: to fetch and apply the report;
    - pending payments that were due at the last cut-off but are still pending: formed now;
    - payments open longer than PAYMENT_PENDING_ALERT_AFTER (counted from when they became due):
      an ERROR log and one e-mail to active staff, once per payment (Payment.alerted_at).
    Each batch picked gets its next attempt pushed back by SETTLEMENT_SWEEP_AFTER_SECONDS, so
    consecutive sweeps do not pile up tasks for a batch whose task is merely slow. Returns what
    to enqueue; the task does the enqueuing.
    """
    now = now or timezone.now()
    result = SweepResult()
    due = SettlementBatch.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        status__in=[SettlementBatch.Status.FORMED, SettlementBatch.Status.SUBMITTED],
    )
    with transaction.atomic():
        picked = list(due.select_for_update(skip_locked=True).order_by("created_at").values_list("pk", "status")[:500])
        SettlementBatch.objects.filter(pk__in=[pk for pk, _ in picked]).update(next_attempt_at=now + _sweep_after())
    for pk, status in picked:
        (result.submit if status == SettlementBatch.Status.FORMED else result.poll).append(pk)

    cutoff = last_cutoff(now)
    if cutoff is not None:
        missed = _due_pending(timezone.localdate(cutoff)).filter(created_at__lt=cutoff)
        if missed.exists():
            logger.warning("pending payments missed the %s settlement cut-off; forming their batches now", cutoff)
            batches = settlement_form_batches(now=now)
            result.formed = len(batches)
            result.submit += [batch.pk for batch in batches]

    result.alerted = _alert_stuck_payments(now)
    return result


def _alert_stuck_payments(now: datetime) -> int:
    after = settings.PAYMENT_PENDING_ALERT_AFTER
    open_since = Greatest(F("created_at"), Cast(F("requested_execution_date"), DateTimeField()))
    with transaction.atomic():
        stuck = list(
            Payment.objects.filter(status__in=Payment.OPEN_STATUSES, alerted_at=None)
            .annotate(open_since=open_since)
            .filter(open_since__lt=now - after)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("created_at")
            .values_list("pk", "status", "end_to_end_id", "amount", "currency", "created_at")[:1000]
        )
        if not stuck:
            return 0
        Payment.objects.filter(pk__in=[row[0] for row in stuck]).update(alerted_at=now)
    lines = [
        f"{pk} {status} {e2e} {format_amount(amount, currency)} {currency} since {created:%Y-%m-%d %H:%M} UTC"
        for pk, status, e2e, amount, currency, created in stuck
    ]
    logger.error(
        "%d payment(s) open longer than %s", len(stuck), after, extra={"payments": [str(row[0]) for row in stuck[:50]]}
    )
    _email_staff(
        subject=f"{len(stuck)} payment(s) open longer than {after}",
        lines=[f"These payments are still open after {after}:", *lines],
    )
    return len(stuck)


def _email_staff(*, subject: str, lines: Iterable[str]) -> int:
    """E-mail every active staff member (as verify.ledger_alert_staff does); never raises."""
    from django.core.mail import send_mail

    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    recipients = list(staff.values_list("email", flat=True))
    if not recipients:
        return 0
    try:
        send_mail(f"[{settings.BANK_NAME}] {subject}", "\n".join(lines), settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # the ERROR log already carries it; a mail outage must not stop the sweep
        logger.exception("could not e-mail staff: %s", subject)
        return 0
    return len(recipients)


# --- metrics ------------------------------------------------------------------------------------


def open_payments_by_status() -> dict[str, int]:
    """Open payments per status (pending, batched, submitted), zeros included."""
    counts = dict(
        Payment.objects.filter(status__in=Payment.OPEN_STATUSES)
        .values_list("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    return {str(status): int(counts.get(status, 0)) for status in Payment.OPEN_STATUSES}


class OpenPaymentsCollector:
    """Prometheus gauge `bankcore_payments_open{status}`: open payments per status, counted at
    scrape time from the database (so every web process reports the same, current figure)."""

    NAME = "bankcore_payments_open"
    HELP = "Payments to other banks not yet settled, rejected or cancelled, by status."

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["status"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = open_payments_by_status()
        except Exception:  # a scrape must not fail because the database is away; the gauge is absent
            logger.warning("open payments gauge: database not readable", exc_info=True)
            return
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family


_collector = OpenPaymentsCollector()


def register_open_payments_gauge() -> None:
    """Expose the gauge in this process's default registry (idempotent; AppConfig.ready)."""
    with contextlib.suppress(ValueError):  # registered already
        REGISTRY.register(_collector)

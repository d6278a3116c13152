"""Celery tasks: thin wrappers that call one service."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from integrations.gateway.errors import GatewayRejected, GatewayUnavailable
from transactions.services.settlement import settlement_held_back


@shared_task
def run_standing_orders() -> int:
    """Beat: pay every due standing order (idempotent per order and due date)."""
    from transactions.services.payees import standing_orders_run_due

    return len(standing_orders_run_due())


@shared_task
def verify_ledger() -> dict:
    """Daily beat: prove the ledger invariants; alert staff on any violation."""
    from transactions.services.verify import ledger_alert_staff, ledger_verify

    report = ledger_verify()
    if not report.ok:
        ledger_alert_staff(report=report, staff=get_user_model().objects.filter(is_staff=True, is_active=True))
    return {"ok": report.ok, "violations": len(report.violations), "transactions": report.transactions}


@shared_task(acks_late=True)
def drain_ledger_notices() -> int:
    """Woken after postings commit: turn every queued alert into notifications (once each)."""
    from transactions.services.notices import notices_drain

    return notices_drain()


@shared_task
def sweep_ledger_notices() -> int:
    """Beat: send alerts whose task was lost (broker down at commit, worker crash)."""
    from transactions.services.notices import notices_sweep

    return notices_sweep()


# --- settlement (queue `settlement`): ids in, one service call each; the sweep re-drives losses ---


@shared_task(acks_late=True)
def run_settlement() -> list[str] | str:
    """Beat, at the cut-off: form the due payments' batches, then send each (one task per batch)."""
    from transactions.services.settlement import settlement_form_batches

    if (held_back := settlement_held_back()) is not None:
        return held_back
    batches = settlement_form_batches()
    for batch in batches:  # formed and committed: a lost enqueue is re-driven by the sweep
        submit_settlement_batch.delay(str(batch.pk))
    return [str(batch.pk) for batch in batches]


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(GatewayUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=10,
)
def submit_settlement_batch(self: Any, batch_id: str) -> str:
    """Send a formed batch; on its receipt, start polling for the status report.

    GatewayUnavailable (outcome unknown) retries with backoff: the same message id, which the
    gateway deduplicates. A refusal (4xx) is logged, alerted and left to the sweep's back-off.
    """
    from transactions.services.settlement import settlement_submit

    if (held_back := settlement_held_back()) is not None:
        return held_back
    try:
        result = settlement_submit(batch_id=UUID(batch_id))
    except GatewayRejected:
        return "refused"
    if result.recorded:
        apply_settlement_report.apply_async((batch_id,), countdown=settings.SETTLEMENT_REPORT_POLL_SECONDS)
    return str(result.batch.status)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(GatewayUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=10,
)
def apply_settlement_report(self: Any, batch_id: str) -> str:
    """Fetch the batch's status report and settle or reject its payments; poll again until every
    payment is final (bounded: the sweep takes over after SETTLEMENT_REPORT_MAX_POLLS)."""
    from transactions.services.settlement import ReportOutcome, settlement_apply_report

    if (held_back := settlement_held_back()) is not None:
        return held_back
    result = settlement_apply_report(batch_id=UUID(batch_id))
    if result.outcome == ReportOutcome.RESUBMIT:
        submit_settlement_batch.delay(batch_id)
    elif result.outcome == ReportOutcome.NOT_READY:
        raise self.retry(
            countdown=settings.SETTLEMENT_REPORT_POLL_SECONDS, max_retries=settings.SETTLEMENT_REPORT_MAX_POLLS
        )
    return str(result.outcome)


@shared_task(acks_late=True)
def sweep_settlement() -> dict | str:
    """Beat, every minute: re-drive formed and submitted batches whose task was lost, form a
    missed cut-off's batches, alert operators about payments open too long."""
    from transactions.services.settlement import settlement_sweep

    if (held_back := settlement_held_back()) is not None:
        return held_back
    result = settlement_sweep()
    for batch_id in result.submit:
        submit_settlement_batch.delay(str(batch_id))
    for batch_id in result.poll:
        apply_settlement_report.delay(str(batch_id))
    return {"submit": len(result.submit), "poll": len(result.poll), "formed": result.formed, "alerted": result.alerted}


# --- legacy core: store-and-forward reversals (transactions/services/legacy_transfers.py) ---


@shared_task(bind=True, acks_late=True, max_retries=12)
def legacy_reversal_retry(self: Any, request_id: int) -> str:
    """Reverse one legacy request (0400) until the core acknowledges it; retried with backoff,
    then left to the beat sweep (which also finds rows whose task was lost with a worker)."""
    from transactions.services.legacy_transfers import legacy_request_reverse

    outcome = legacy_request_reverse(request_id=request_id)
    if not outcome.done and self.request.retries < self.max_retries:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.reason


@shared_task
def legacy_reversals_sweep() -> int:
    """Beat, every minute: enqueue a reversal for every legacy request that needs one now."""
    from transactions.services.legacy_transfers import legacy_reversals_due

    due = legacy_reversals_due()
    for request_id in due:
        legacy_reversal_retry.delay(request_id)
    return len(due)

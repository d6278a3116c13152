"""Celery tasks: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model


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


# --- legacy core: store-and-forward reversals (transactions/services/legacy_transfers.py) ---


@shared_task(bind=True, acks_late=True, max_retries=12)
def legacy_reversal_retry(self, request_id: int) -> str:  # type: ignore[no-untyped-def]
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

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

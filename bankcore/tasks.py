"""Operational Celery tasks (queue: maintenance)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task
def heartbeat() -> str:
    """Proves beat and a worker are alive; its log line is what an operator greps for."""
    now = timezone.now().isoformat()
    logger.info("heartbeat", extra={"at": now})
    return now


@shared_task
def verify_audit_log() -> dict:
    from bankcore.audit import ChainBreak, verify_chain
    from bankcore.audit_checkpoint import CheckpointInvalid, latest_checkpoint

    try:
        checkpoint = latest_checkpoint()
    except CheckpointInvalid as exc:
        logger.error("audit checkpoint invalid", extra={"reason": str(exc)})
        return {"ok": False, "reason": str(exc)}
    if checkpoint is None:
        logger.warning("no audit checkpoint yet: only the chains' own consistency is checked")
    checked = 0
    for step in verify_chain(checkpoint=checkpoint.chains if checkpoint else ()):
        if isinstance(step, ChainBreak):
            logger.error("audit chain broken", extra={"event_id": step.event_id, "reason": step.reason})
            return {"ok": False, "event_id": step.event_id, "reason": step.reason}
        checked = step
    return {"ok": True, "checked": checked}


@shared_task
def audit_checkpoint() -> dict:
    """Anchors the audit chains outside the database (bankcore.audit_checkpoint); logs an error when refused."""
    from bankcore.audit_checkpoint import CheckpointError, audit_checkpoint_write

    try:
        checkpoint = audit_checkpoint_write()
    except CheckpointError as exc:
        logger.error("audit checkpoint refused", extra={"reason": str(exc)})
        return {"ok": False, "reason": str(exc)}
    return {"ok": True, "name": checkpoint.name, "location": checkpoint.location, "chains": len(checkpoint.chains)}


@shared_task
def expire_idempotency_keys() -> int:
    """Beat: forget Idempotency-Keys older than 24 hours."""
    from bankcore.models import IdempotencyKey

    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# A backup or a drill of a large database outlives the default task time limit.
_BACKUP_LIMITS = {
    "time_limit": settings.BACKUP_TASK_TIME_LIMIT,
    "soft_time_limit": settings.BACKUP_TASK_TIME_LIMIT - 60,
}


@shared_task(**_BACKUP_LIMITS)
def backup() -> dict:
    """An encrypted backup of the database now (bankcore.backups); logs an error when it fails."""
    from bankcore.backups.services import backup_create

    try:
        result = backup_create()
    except Exception as exc:  # noqa: BLE001 - reported in the result, the log and the BackupRecord row
        logger.error("backup failed", extra={"reason": str(exc)})
        return {"ok": False, "reason": str(exc)}
    return {"ok": True, "backup_id": result.backup_id, "size": result.size, "location": result.location}


@shared_task(**_BACKUP_LIMITS)
def backup_if_due() -> dict:
    """Beat, every few minutes: a backup when the newest good one is older than BACKUP_INTERVAL."""
    from bankcore.backups.services import BackupRefused
    from bankcore.backups.services import backup_if_due as make_backup_if_due

    try:
        result = make_backup_if_due()
    except BackupRefused as exc:  # another backup is running: this tick has nothing to do
        return {"ok": True, "skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the result, the log and the BackupRecord row
        logger.error("backup failed", extra={"reason": str(exc)})
        return {"ok": False, "reason": str(exc)}
    if result is None:
        return {"ok": True, "skipped": "a good backup is newer than BACKUP_INTERVAL"}
    return {"ok": True, "backup_id": result.backup_id, "size": result.size, "location": result.location}


@shared_task
def prune_backups() -> dict:
    """Beat, daily: delete the backups the retention policy does not keep."""
    from bankcore.backups.services import backups_prune

    result = backups_prune()
    return {"kept": len(result.kept), "deleted": [info.backup_id for info in result.deleted]}


@shared_task(**_BACKUP_LIMITS)
def dr_drill() -> dict:
    """Beat, weekly: the disaster-recovery drill (needs DR_DRILL_DATABASE_URL with CREATEDB in production)."""
    from bankcore.backups.services import dr_drill_run

    result = dr_drill_run()
    return {"ok": result.ok, "drill": result.drill.pk, "rto": result.drill.rto_seconds, "rpo": result.drill.rpo_seconds}


@shared_task
def add(x: int, y: int) -> int:
    """A trivial task used by the worker smoke test and by operators to check a worker answers."""
    return x + y

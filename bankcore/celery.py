"""The Celery app. Tasks are thin: they take ids and call one service."""

import os

from celery import Celery, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")

# Every task, reviewed: why running it twice (a redelivery after a worker died or lost the broker,
# under acks_late + reject_on_worker_lost, the defaults in settings) does no harm. A new task
# joins this list after the same review, or sets acks_late=False on its decorator (a test
# checks that every registered task is one or the other).
IDEMPOTENT_TASKS: dict[str, str] = {
    "bankcore.tasks.heartbeat": "logs a line",
    "bankcore.tasks.add": "pure",
    "bankcore.tasks.verify_audit_log": "read-only",
    "bankcore.tasks.audit_checkpoint": "anchors the current chain heads again",
    "bankcore.tasks.expire_idempotency_keys": "deletes what is expired",
    "bankcore.tasks.backup": "an interrupted backup is not recorded as good; a re-run makes a new one",
    "bankcore.tasks.backup_if_due": "runs only when no good backup is newer than the interval (under the lock)",
    "bankcore.tasks.prune_backups": "the retention policy is a function of what exists",
    "bankcore.tasks.dr_drill": "a scratch database per drill, dropped after",
    "accounts.tasks.purge_auth_records": "deletes what is past retention",
    "transactions.tasks.run_standing_orders": "once per order and due date (unique execution)",
    "transactions.tasks.verify_ledger": "read-only; staff may get the same alert twice",
    "transactions.tasks.drain_ledger_notices": "each outbox row is claimed and sent once",
    "transactions.tasks.sweep_ledger_notices": "each outbox row is claimed and sent once",
    "transactions.tasks.run_settlement": "forms batches from payments not yet batched",
    "transactions.tasks.submit_settlement_batch": "the same message id, which the gateway deduplicates",
    "transactions.tasks.apply_settlement_report": "applies each payment's outcome once (status check)",
    "transactions.tasks.sweep_settlement": "re-drives only quiet steps",
    "transactions.tasks.legacy_reversal_retry": "the reversal carries the original's RRN; the core dedupes",
    "transactions.tasks.legacy_reversals_sweep": "re-enqueues only open reversals",
    "notifications.tasks.deliver": "a lease per send; an outcome-unknown SMTP send is not repeated",
    "notifications.tasks.deliver_many": "as deliver",
    "notifications.tasks.fanout_incident_update": "a keyset cursor and a unique delivery key",
    "notifications.tasks.sweep_notifications": "re-enqueues only stuck rows",
}

app = Celery("bankcore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "settlement", "notifications", "maintenance")]
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _refuse_privileged_database_role(**kwargs: object) -> None:
    """In production a worker or beat connected as a superuser or the tables' owner does not start.

    Celery logs and swallows a signal handler's exceptions, so this exits instead.
    """
    from django.core.exceptions import ImproperlyConfigured

    from bankcore.db.roles import arm_runtime_role_check

    try:
        arm_runtime_role_check()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"bankcore: {exc}") from exc

"""The Celery app. Tasks are thin: they take ids and call one service."""

import os

from celery import Celery, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")

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

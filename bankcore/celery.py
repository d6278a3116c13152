"""The Celery app. Tasks are thin: they take ids and call one service."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")

app = Celery("bankcore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "settlement", "notifications", "maintenance")]
app.autodiscover_tasks()

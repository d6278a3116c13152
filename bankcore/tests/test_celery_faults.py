"""Celery under faults, as configured: every task idempotent and acknowledged late, put back if
its worker dies; a visibility timeout above the longest task; a worker that starts before its
broker, or loses it, waits and reconnects; publishing gives up within a bounded time."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings

from bankcore.celery import IDEMPOTENT_TASKS, app
from bankcore.testing import CeleryWorker, free_port, process_env
from bankcore.tests.outage import TcpForwarder


def _our_tasks() -> dict[str, object]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_is_reviewed_idempotent_and_acknowledged_late_or_opts_out():
    tasks = _our_tasks()
    assert set(IDEMPOTENT_TASKS) <= set(tasks), set(IDEMPOTENT_TASKS) - set(tasks)  # no stale entry
    for name, task in tasks.items():
        if name in IDEMPOTENT_TASKS:
            assert task.acks_late and task.reject_on_worker_lost, name
        else:
            assert not task.acks_late, f"{name}: not reviewed as idempotent, so it must not be redelivered"


def test_the_visibility_timeout_exceeds_the_longest_task_and_delay():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    longest_task = max(task.time_limit or app.conf.task_time_limit for task in _our_tasks().values())
    assert visibility > longest_task
    assert visibility > settings.NOTIFICATIONS_RETRY_MAX_SECONDS
    assert visibility > settings.LEGACY_REVERSAL_RETRY_MAX_SECONDS


def test_broker_connections_are_retried_at_start_and_at_run_time_and_publishing_is_bounded():
    assert app.conf.broker_connection_retry_on_startup is True
    assert app.conf.broker_connection_retry is True and app.conf.broker_connection_max_retries is None
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True
    policy = app.conf.task_publish_retry_policy
    assert app.conf.task_publish_retry and policy["max_retries"] <= 3


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_worker_started_before_its_broker_waits_for_it_and_reconnects_after_losing_it(redis_flushed, tmp_path):
    """The broker is reached through a forwarder the test switches on and off: absent when the
    worker starts, then up; later down again, while a task is published, then up."""
    redis = urlparse(settings.CELERY_BROKER_URL)
    forwarder = TcpForwarder((redis.hostname or "127.0.0.1", redis.port or 6379), free_port())
    broker = f"redis://127.0.0.1:{forwarder.port}{redis.path}"
    app.control.purge()
    log = tmp_path / "worker.log"
    worker = CeleryWorker(
        queues=("maintenance",), concurrency=1, env=process_env(CELERY_BROKER_URL=broker), log_path=log
    )

    def broker_appears() -> None:  # once the worker has failed to reach it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (log.exists() and "Cannot connect" in log.read_text()):
            time.sleep(0.1)
        forwarder.up()

    threading.Thread(target=broker_appears, daemon=True).start()
    try:
        worker.start(timeout=40)
        assert app.send_task("bankcore.tasks.add", args=(2, 3), queue="maintenance").get(timeout=20) == 5

        forwarder.down()  # the worker loses its broker
        result = app.send_task("bankcore.tasks.add", args=(4, 5), queue="maintenance")  # published meanwhile
        time.sleep(1)
        forwarder.up()
        assert result.get(timeout=40) == 9
    finally:
        worker.stop()
        forwarder.down()


def test_publishing_to_an_unreachable_broker_gives_up_within_a_bounded_time():
    from kombu.exceptions import OperationalError

    started = time.monotonic()
    with (
        app.connection_for_write(f"redis://127.0.0.1:{free_port()}/7") as connection,
        pytest.raises(OperationalError),
    ):
        app.send_task("bankcore.tasks.add", args=(1, 1), connection=connection)
    assert time.monotonic() - started < 10

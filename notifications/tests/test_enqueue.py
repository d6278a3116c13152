"""The services enqueue tasks by name (they never import notifications.tasks): the names must be the tasks'."""

from __future__ import annotations

import pytest

from bankcore.celery import app
from notifications import tasks
from notifications.services.enqueue import DELIVER_MANY_TASK, DELIVER_TASK, FANOUT_TASK, SWEEP_TASK


@pytest.mark.parametrize(
    ("name", "task"),
    [
        (DELIVER_TASK, tasks.deliver),
        (DELIVER_MANY_TASK, tasks.deliver_many),
        (FANOUT_TASK, tasks.fanout_incident_update),
        (SWEEP_TASK, tasks.sweep_notifications),
    ],
)
def test_every_task_name_the_services_send_is_a_registered_notifications_task(name, task):
    assert app.tasks[name].name == task.name == name
    assert app.tasks[name].ignore_result  # so sending by name without a result matches the task

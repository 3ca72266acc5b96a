"""Work for the workers, enqueued by task name once the transaction commits.

The domain names the tasks it needs; `workers/tasks.py` declares each with `name=Task.X`. Nothing
here imports the workers: the Celery app is found by name (`CELERY_APP`) when a message is sent,
the way Zulip's `queue_event_on_commit` never imports the consumer of its queue.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string


class Task(StrEnum):
    """Task names; the prefix routes each to the queue of the resource it needs."""

    RUN_ROUND_CHUNK = "rollout.run_round_chunk"
    RESCORE_TRAJECTORY = "sandbox.rescore_trajectory"
    RUN_SFT_JOB = "train.run_sft_job"


def enqueue(task: Task, **ids: int) -> None:
    """Send `task` with keyword ids after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task, ids))


def send(task: Task, kwargs: dict[str, Any]) -> None:
    app = import_string(settings.CELERY_APP)
    if app.conf.task_always_eager:  # send_task never runs eagerly; the registered task does
        app.loader.import_default_modules()  # the app's autodiscovered tasks
        app.tasks[task.value].apply(kwargs=kwargs)
    else:
        app.send_task(task.value, kwargs=kwargs)

"""The Celery app, configured from Django settings (the CELERY_ namespace)."""

import os

from celery import Celery
from kombu import Queue as KombuQueue

from workers.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("start")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[KombuQueue(q.value) for q in Queue],
    task_default_queue=Queue.DEFAULT.value,
    # Routed by task name: the name's prefix says which resource it needs.
    task_routes={
        "rollout.*": {"queue": Queue.ROLLOUT.value},
        "sandbox.*": {"queue": Queue.SANDBOX.value},
        "train.*": {"queue": Queue.TRAIN.value},
    },
    # Rollout chunks and SFT jobs run for minutes to days: take one message at a time.
    worker_prefetch_multiplier=1,
    task_acks_late=False,  # opted into per task, only where the task is idempotent
    task_reject_on_worker_lost=False,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks(["workers"])

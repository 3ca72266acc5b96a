"""Celery tasks: thin, named, taking ids. Each re-fetches its rows and calls one function.

The name's prefix routes it to the queue of the resource it needs (see workers.celery); each task
states that queue too. What each one does when things go wrong, in one place:

- rollout chunk: acks_late, because it is idempotent (trajectories are unique per sample and a
  re-run skips them); soft time limit ROLLOUT_CHUNK_TIME_LIMIT_S; retried when the database or
  the broker is lost for a moment.
- rescore: acks_late, idempotent too (it scores the current text and drops a score of an older
  one); 10 minutes; retried on the same errors and while the sandbox is down.
- SFT job: not acks_late: a job killed mid-training is failed and shown (its heartbeat stops;
  its training processes die with the worker), never restarted unseen ("Run again" does it);
  no time limit (jobs run for days); never retried (a person starts a job).

A soft limit raises inside the task (the chunk records the error; "Re-run failed chunks" resumes
it); the hard limit, a minute later, kills the process.
"""

from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError

from curation.dispatch import Task
from curation.models import Trajectory
from curation.services import (
    round_chunks_recover,
    sft_jobs_orphaned,
    sft_jobs_recover,
    trajectory_score,
)
from workers import rounds, sandbox, sft
from workers.celery import app
from workers.queues import Queue

# A database that restarts or a broker that blinks: retry with exponential backoff and jitter.
TRANSIENT = (OperationalError, InterfaceError, ConnectionError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@app.task(
    name=Task.RUN_ROUND_CHUNK,
    queue=Queue.ROLLOUT,
    bind=True,
    acks_late=True,
    soft_time_limit=settings.ROLLOUT_CHUNK_TIME_LIMIT_S,
    time_limit=settings.ROLLOUT_CHUNK_TIME_LIMIT_S + 60,
    **RETRY,
)
def run_round_chunk(self, chunk_id: int) -> None:
    """Idempotent (trajectories are unique per sample), so a lost worker's chunk may run again."""
    rounds.run_chunk(chunk_id, worker=self.request.hostname or "")


@app.task(
    name=Task.RESCORE_TRAJECTORY,
    queue=Queue.SANDBOX,
    bind=True,
    acks_late=True,
    soft_time_limit=600,
    time_limit=660,
    **{**RETRY, "max_retries": 30},
)
def rescore_trajectory(self, trajectory_id: int) -> None:
    """Idempotent (it scores the current text; a score of an older text is dropped). A sandbox
    that is down leaves the score pending: try again, backing off up to a minute."""
    trajectory = Trajectory.objects.select_related("problem").filter(pk=trajectory_id).first()
    if trajectory is None:
        return
    trajectory_score(trajectory=trajectory, runner=sandbox.run)
    if trajectory.score_details.get("pending"):
        raise self.retry(countdown=min(2**self.request.retries, 60))


@app.task(name=Task.RUN_SFT_JOB, queue=Queue.TRAIN, bind=True)
def run_sft_job(self, job_id: int) -> None:
    """Not acks_late: a job killed mid-training is marked failed, never silently restarted.
    The worker only supervises: training runs in a child process group (workers.sft)."""
    sft.run_job(job_id, worker=self.request.hostname)


@worker_ready.connect
def recover_after_a_restart(sender, **kwargs) -> None:
    """A worker that starts again fails the SFT jobs it held when it died (and any job whose
    worker went silent), and re-enqueues rollout chunks whose worker went silent."""
    sft_jobs_orphaned(worker=sender.hostname)
    sft_jobs_recover()
    round_chunks_recover()

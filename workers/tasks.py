"""Celery tasks: thin, named, taking ids. Each re-fetches its rows and calls one function.

The name's prefix routes it to the queue of the resource it needs (see workers.celery).
"""

from celery.signals import worker_ready

from curation.models import Trajectory
from curation.services import sft_jobs_orphaned, trajectory_score
from workers import rounds, sft
from workers.celery import app


@app.task(name="rollout.run_round_chunk", acks_late=True)
def run_round_chunk(chunk_id: int) -> None:
    """Idempotent (trajectories are unique per sample), so a lost worker's chunk may run again."""
    rounds.run_chunk(chunk_id)


@app.task(name="sandbox.rescore_trajectory", acks_late=True)
def rescore_trajectory(trajectory_id: int) -> None:
    trajectory = Trajectory.objects.select_related("problem").filter(pk=trajectory_id).first()
    if trajectory is not None:
        trajectory_score(trajectory=trajectory)


@app.task(name="train.run_sft_job", bind=True)
def run_sft_job(self, job_id: int) -> None:
    """Not acks_late: a job killed mid-training is marked failed, never silently restarted."""
    sft.run_job(job_id, worker=self.request.hostname)


@worker_ready.connect
def fail_orphaned_sft_jobs(sender, **kwargs) -> None:
    """A worker that starts again fails the jobs it held when it died."""
    sft_jobs_orphaned(worker=sender.hostname)

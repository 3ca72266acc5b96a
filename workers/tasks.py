"""Celery tasks: thin, named, taking ids. Each re-fetches its rows and calls one function.

The name's prefix routes it to the queue of the resource it needs (see workers.celery).
"""

from celery.signals import worker_ready

from curation.dispatch import Task
from curation.models import Trajectory
from curation.services import sft_jobs_orphaned, trajectory_score
from workers import rounds, sandbox, sft
from workers.celery import app


@app.task(name=Task.RUN_ROUND_CHUNK, acks_late=True)
def run_round_chunk(chunk_id: int) -> None:
    """Idempotent (trajectories are unique per sample), so a lost worker's chunk may run again."""
    rounds.run_chunk(chunk_id)


@app.task(name=Task.RESCORE_TRAJECTORY, bind=True, acks_late=True, max_retries=30)
def rescore_trajectory(self, trajectory_id: int) -> None:
    """Idempotent (it scores the current text; a score of an older text is dropped). A sandbox
    that is down leaves the score pending: try again, backing off up to a minute."""
    trajectory = Trajectory.objects.select_related("problem").filter(pk=trajectory_id).first()
    if trajectory is None:
        return
    trajectory_score(trajectory=trajectory, runner=sandbox.run)
    if trajectory.score_details.get("pending"):
        raise self.retry(countdown=min(2**self.request.retries, 60))


@app.task(name=Task.RUN_SFT_JOB, bind=True)
def run_sft_job(self, job_id: int) -> None:
    """Not acks_late: a job killed mid-training is marked failed, never silently restarted."""
    sft.run_job(job_id, worker=self.request.hostname)


@worker_ready.connect
def fail_orphaned_sft_jobs(sender, **kwargs) -> None:
    """A worker that starts again fails the jobs it held when it died."""
    sft_jobs_orphaned(worker=sender.hostname)

"""SFT jobs through a real train worker: it launches `accelerate launch -m training.sft` as a child
process group and only supervises it (progress, heartbeat, cancel, the log)."""

import os
import signal
from pathlib import Path

import pytest

from curation import services
from curation.models import RunStatus, SFTJob
from tests.conftest import purge_queues, start_worker, stop_worker, wait_until
from tests.training.jobs import (
    ended,
    job_when,
    launch_job,
    processes_of,
    training_output_root,
)
from workers.sft import job_dir

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def train_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A worker on the train queue whose jobs write under a temporary folder."""
    with training_output_root(tmp_path_factory.mktemp("policies")):
        purge_queues()
        proc = start_worker("train", queues="train")
        yield proc
        stop_worker(proc)


def test_a_job_trains_in_an_accelerate_child_and_registers_its_policy(train_worker, base_model_dir):
    job = launch_job(base_model_dir, config={"max_steps": 4, "learning_rate": 1e-3})
    job = job_when(job, ended)
    assert job.status == RunStatus.DONE, job.error or job.log
    assert "accelerate.commands.launch --mixed_precision no" in job.command
    assert "--cpu --num_machines 1 --num_processes 1 -m training.sft --config" in job.command
    assert [point["step"] for point in job.history] == [1, 2, 3, 4]  # relayed from the child
    assert job.step == job.total_steps == 4
    assert '"loss"' in job.log  # the training processes' own log lines
    policy = job.output_policy
    assert policy.parent == job.base_policy
    assert (Path(policy.path) / "config.json").is_file()
    assert not processes_of(job_dir(job))


def test_cancel_stops_every_process_of_the_group(train_worker, base_model_dir):
    job = launch_job(base_model_dir, config={"max_steps": 100_000, "learning_rate": 1e-3})
    job = job_when(job, lambda j: j.step >= 2 or ended(j))
    assert job.status == RunStatus.RUNNING, job.error or job.log
    running = processes_of(job_dir(job))
    assert len(running) >= 2  # accelerate's launcher and the training process
    services.sft_job_cancel(job=job)
    job = job_when(job, ended, timeout=60)
    assert job.status == RunStatus.CANCELLED and job.output_policy is None
    assert wait_until(lambda: not processes_of(job_dir(job)), timeout=30)
    assert not any(job_dir(job).glob(".model.partial")), "a cancelled run leaves no model"


def test_a_killed_training_process_fails_the_job_and_registers_nothing(
    train_worker, base_model_dir
):
    job = launch_job(base_model_dir, config={"max_steps": 100_000, "learning_rate": 1e-3})
    job = job_when(job, lambda j: j.step >= 1 or ended(j))
    assert job.status == RunStatus.RUNNING, job.error or job.log
    for pid in processes_of(job_dir(job)):
        os.kill(pid, signal.SIGKILL)  # the launcher and the training, not the worker
    job = job_when(job, ended, timeout=60)
    assert job.status == RunStatus.FAILED and job.output_policy is None
    assert "its partial model was not registered" in job.error


def test_a_job_run_again_over_what_its_lost_run_left_trains_to_the_end(
    train_worker, base_model_dir
):
    """A run lost after it wrote its model (a worker killed as training ended) left a folder
    that training refuses ('output_dir ... is not empty'); running the job again clears it."""
    job = launch_job(base_model_dir, config={"max_steps": 2, "learning_rate": 1e-3}, name="again")
    job = job_when(job, ended)
    assert job.status == RunStatus.DONE, job.error or job.log
    leftover = job_dir(job) / "model"
    assert (leftover / "config.json").is_file()
    # As a lost run leaves it: failed, its model on disk and unregistered.
    policy = job.output_policy
    SFTJob.objects.filter(pk=job.pk).update(status=RunStatus.FAILED, output_policy=None)
    policy.delete()
    services.sft_job_rerun(job=job)
    job = job_when(job, ended)
    assert job.status == RunStatus.DONE, job.error or job.log
    assert job.output_policy.path == str(leftover)

"""Chaos: the train worker is SIGKILLed mid-job. Its training processes die with it, the job's
page says which worker was lost and that the partial model was not registered, and "Run again"
(one action) trains it to the end on another worker."""

import os
import signal

import pytest
from django.test import override_settings
from django.urls import reverse

from curation.models import Policy, RunStatus
from tests.conftest import purge_queues, start_worker, stop_worker, wait_until
from tests.training.jobs import ended, job_when, launch_job, processes_of, training_output_root
from workers.sft import job_dir

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.worker,
    pytest.mark.timeout(1800),  # a job, its loss and a second run on two loaded cores
    pytest.mark.django_db(transaction=True),
]


def test_a_train_worker_killed_mid_job(tmp_path, tiny_policy_path, admin_client):
    with training_output_root(tmp_path):
        purge_queues()
        doomed = start_worker("train-doomed", queues="train")
        try:
            job = launch_job(tiny_policy_path, config={"max_steps": 4, "learning_rate": 1e-3})
            job = job_when(job, lambda j: j.step >= 1 or ended(j))
            assert job.status == RunStatus.RUNNING, job.error or job.log
            assert processes_of(job_dir(job))
            os.kill(doomed.pid, signal.SIGKILL)  # the worker alone, not its process group
            doomed.wait()
            # its training processes die with it: nothing trains on unsupervised
            assert wait_until(lambda: not processes_of(job_dir(job)), timeout=60)
        finally:
            stop_worker(doomed, sig=signal.SIGKILL)

        page_url = reverse("admin:curation_sftjob_progress", args=[job.pk])
        with override_settings(CHUNK_LOST_AFTER_S=3):  # noticed while someone watches its page
            page = wait_until(
                lambda: (r := admin_client.get(page_url)) and b"lost at" in r.content and r,
                timeout=30,
            )
        assert page, "the page never said the worker was lost"
        job.refresh_from_db()
        assert job.status == RunStatus.FAILED
        assert job.worker.startswith("train-doomed") and f"worker {job.worker} lost at" in job.error
        assert "its partial model was not registered" in page.content.decode()
        assert not Policy.objects.filter(name=job.output_name).exists()
        assert b"Run again" in page.content

        survivor = start_worker("train-survivor", queues="train")
        try:
            admin_client.post(reverse("admin:curation_sftjob_rerun", args=[job.pk]))
            job = job_when(job, ended)
        finally:
            stop_worker(survivor)
    assert job.status == RunStatus.DONE, job.error or job.log
    assert job.worker.startswith("train-survivor") and job.step == 4
    assert Policy.objects.filter(name=job.output_name).count() == 1

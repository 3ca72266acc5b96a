"""SFT jobs are validated by the service, whichever path launches them."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from curation import services
from curation.models import Dataset, DatasetVersion, RunStatus, SFTJob
from tests.factories import PolicyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    dataset = Dataset.objects.create(name="d-seed", kind="d_seed")
    return DatasetVersion.objects.create(dataset=dataset, number=1, content_hash="h", size=3)


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"epochs_please": 3}, "unknown config keys: epochs_please"),
        ({"output_dir": "/tmp/elsewhere"}, "are set by the job"),
        ({"distributed": "zero3", "num_processes": 0}, "num_processes must be >= 1"),
        ({"distributed": "ddp"}, "distributed must be one of"),
    ],
)
def test_bad_overrides_are_refused_before_a_job_exists(version, config, reason):
    with pytest.raises(ValueError, match=reason):
        services.sft_job_launch(
            dataset_version=version, base_policy=PolicyFactory(), output_name="s0", config=config
        )
    assert not SFTJob.objects.exists()


def test_good_overrides_make_a_queued_job(version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.sft_job_launch(
            dataset_version=version,
            base_policy=PolicyFactory(),
            output_name="s0",
            config={"learning_rate": 1e-4, "num_train_epochs": 2},
        )
    assert job.config == {"learning_rate": 1e-4, "num_train_epochs": 2}
    assert len(callbacks) == 1


def _running(version, *, beat_seconds_ago: float, name: str) -> SFTJob:
    job = services.sft_job_launch(
        dataset_version=version, base_policy=PolicyFactory(), output_name=name
    )
    services.sft_job_started(job=job, worker=f"train-{name}@host")
    SFTJob.objects.filter(pk=job.pk).update(
        step=3,
        total_steps=10,
        heartbeat_at=timezone.now() - timedelta(seconds=beat_seconds_ago),
    )
    return SFTJob.objects.get(pk=job.pk)


@override_settings(CHUNK_LOST_AFTER_S=60)
def test_a_job_whose_worker_went_silent_is_failed_and_says_why(version):
    silent = _running(version, beat_seconds_ago=90, name="silent")
    beating = _running(version, beat_seconds_ago=5, name="beating")
    assert services.sft_jobs_recover() == [silent]
    silent.refresh_from_db()
    assert silent.status == RunStatus.FAILED
    assert silent.error.startswith("worker train-silent@host lost at ")
    assert "at step 3 / 10; its partial model was not registered" in silent.error
    assert SFTJob.objects.get(pk=beating.pk).status == RunStatus.RUNNING
    assert not services.sft_job_heartbeat(job=silent)  # its worker, if alive, stops training


def test_run_again_queues_a_failed_job_afresh_and_refuses_a_running_one(
    version, django_capture_on_commit_callbacks
):
    job = _running(version, beat_seconds_ago=0, name="again")
    with pytest.raises(services.ConflictError, match="only a failed or cancelled job runs again"):
        services.sft_job_rerun(job=job)
    services.sft_job_finish(job=job, status=RunStatus.FAILED, error="worker lost")
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.sft_job_rerun(job=job)
    assert (job.status, job.step, job.error, job.worker) == (RunStatus.QUEUED, 0, "", "")
    assert len(callbacks) == 1

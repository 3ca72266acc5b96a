"""SFT jobs are validated by the service, whichever path launches them."""

import pytest

from curation import services
from curation.models import Dataset, DatasetVersion, SFTJob
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

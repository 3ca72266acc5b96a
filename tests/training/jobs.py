"""SFT jobs on a frozen version of approved trajectories, for the tests that run them."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from django.test import override_settings

from curation import services
from curation.datasets import dataset_version_freeze
from curation.models import (
    Candidate,
    Dataset,
    DatasetKind,
    ReviewStatus,
    RoundKind,
    RunStatus,
    SFTJob,
)
from curation.trajectory import output_block
from tests.conftest import wait_until
from tests.factories import RoundFactory, TrajectoryFactory

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."
TEXT = (
    "<think>\nLet me add.\n"
    + HINT
    + "```python\nprint(2 + 2)\n```\n"
    + output_block("4")
    + "So it is 4.\n</think>\n\nThe answer is \\boxed{4}."
)


def launch_job(base_model_dir, *, config: dict, size: int = 6, name: str = "start-0") -> SFTJob:
    """A D_seed version of `size` approved trajectories and a queued job training on it."""
    round_ = RoundFactory(kind=RoundKind.SEED)
    for _ in range(size):
        TrajectoryFactory(
            round=round_,
            text=TEXT,
            hints=[HINT],
            is_correct=True,
            candidate=Candidate.SEED,
            review_status=ReviewStatus.APPROVED,
        )
    dataset, _ = Dataset.objects.get_or_create(name=f"d-seed-{name}", kind=DatasetKind.SEED)
    version = dataset_version_freeze(dataset=dataset, rounds=[round_])
    base = services.policy_register(name=f"base-{name}", path=str(base_model_dir))
    return services.sft_job_launch(
        dataset_version=version, base_policy=base, output_name=name, config=config
    )


def job_when(job: SFTJob, predicate, *, timeout: float = 300) -> SFTJob:
    """The job once `predicate(job)` holds (or as it is at the timeout)."""
    wait_until(lambda: predicate(SFTJob.objects.get(pk=job.pk)), timeout=timeout, interval=0.5)
    return SFTJob.objects.get(pk=job.pk)


def ended(job: SFTJob) -> bool:
    return job.status not in (RunStatus.QUEUED, RunStatus.RUNNING)


def processes_of(job_dir) -> list[int]:
    """Pids whose command line names the job's folder (its launcher and training processes)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if str(job_dir).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def training_output_root(path: Path) -> Iterator[Path]:
    """Jobs write under `path`, here and in the workers started meanwhile (they read the
    environment), not under the project's .cache/policies."""
    previous = os.environ.get("TRAINING_OUTPUT_ROOT")
    os.environ["TRAINING_OUTPUT_ROOT"] = str(path)
    try:
        with override_settings(TRAINING_OUTPUT_ROOT=path):
            yield path
    finally:
        if previous is None:
            os.environ.pop("TRAINING_OUTPUT_ROOT")
        else:
            os.environ["TRAINING_OUTPUT_ROOT"] = previous

"""The command line a train worker launches, and the jobs a host refuses (no GPU needed)."""

from pathlib import Path

import pytest
import yaml

from curation.models import RunStatus
from tests.training.jobs import launch_job, training_output_root
from training.config import ConfigError
from training.launch import (
    ACCELERATE_CONFIGS,
    DISTRIBUTED,
    LaunchError,
    LaunchOptions,
    check_capacity,
    launch_command,
    visible_gpus,
)
from workers import sft

CONFIG = Path("/jobs/sft-job-1/sft.yaml")


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_launch_keys_are_split_from_the_training_config():
    options, rest = LaunchOptions.split(
        {"distributed": "zero3", "num_processes": 8, "learning_rate": 1e-5}
    )
    assert options == LaunchOptions(distributed="zero3", num_processes=8)
    assert rest == {"learning_rate": 1e-5}
    assert LaunchOptions.split({"seed": 1}) == (LaunchOptions(), {"seed": 1})


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"distributed": "ddp"}, "distributed must be one of"),
        ({"distributed": "fsdp", "num_processes": 0}, "num_processes must be >= 1"),
        ({"distributed": "fsdp", "num_processes": "8"}, "num_processes must be an integer"),
        ({"num_processes": 2}, "'single' runs one process, not 2"),
    ],
)
def test_bad_launch_keys_are_refused(config, reason):
    with pytest.raises(ConfigError, match=reason):
        LaunchOptions.split(config)


@pytest.mark.parametrize(
    ("options", "gpus", "message"),
    [
        (LaunchOptions("fsdp", 8), 2, "the job asks for 8 processes; this host has 2 GPUs"),
        (LaunchOptions("zero3", 2), 0, "asks for zero3 on 2 processes; this host has no GPU"),
    ],
)
def test_a_job_asking_for_more_than_the_host_has_is_refused_with_the_numbers(
    options, gpus, message
):
    with pytest.raises(LaunchError, match=message):
        check_capacity(options, gpus=gpus)


@pytest.mark.parametrize(
    ("options", "gpus"),
    [(LaunchOptions(), 0), (LaunchOptions(), 1), (LaunchOptions("fsdp", 8), 8)],
)
def test_what_the_host_has_is_accepted(options, gpus):
    check_capacity(options, gpus=gpus)


@pytest.mark.parametrize(
    ("distributed", "accelerate_type"), [("fsdp", "FSDP"), ("zero3", "DEEPSPEED")]
)
def test_a_sharded_job_on_many_gpus_runs_accelerate_with_its_config_and_count(
    distributed, accelerate_type
):
    cmd = launch_command(
        LaunchOptions(distributed, 8), config_path=CONFIG, gpus=8, main_process_port=29577
    )
    assert cmd[:3] == ["setpriv", "--pdeathsig", "TERM"]
    assert cmd[4:6] == ["-m", "accelerate.commands.launch"]
    config_file = Path(_flag(cmd, "--config_file"))
    assert config_file == ACCELERATE_CONFIGS / DISTRIBUTED[distributed]
    assert yaml.safe_load(config_file.read_text())["distributed_type"] == accelerate_type
    assert _flag(cmd, "--num_processes") == "8"
    assert _flag(cmd, "--num_machines") == "1"
    assert _flag(cmd, "--main_process_port") == "29577"
    assert "--cpu" not in cmd
    assert cmd[-4:] == ["-m", "training.sft", "--config", str(CONFIG)]


def test_a_single_process_job_on_a_cpu_host_runs_accelerate_on_the_cpu():
    cmd = launch_command(LaunchOptions(), config_path=CONFIG, gpus=0, main_process_port=29577)
    assert "--cpu" in cmd and "--config_file" not in cmd
    assert _flag(cmd, "--num_processes") == "1"
    assert _flag(cmd, "--mixed_precision") == "no"
    assert "--main_process_port" not in cmd  # one process: no rendezvous
    assert cmd[-4:] == ["-m", "training.sft", "--config", str(CONFIG)]


@pytest.mark.django_db
def test_a_job_asking_for_more_processes_than_the_host_has_fails_with_the_numbers(
    base_model_dir, tmp_path
):
    gpus = visible_gpus()
    with training_output_root(tmp_path):
        job = launch_job(base_model_dir, config={"distributed": "fsdp", "num_processes": gpus + 2})
        sft.run_job(job.pk, worker="train@host")
    job.refresh_from_db()
    assert job.status == RunStatus.FAILED
    expected = "this host has no GPU" if gpus == 0 else f"this host has {gpus} GPUs"
    assert f"{gpus + 2} processes" in job.error and expected in job.error
    assert job.command == "" and job.output_policy is None  # nothing was launched

"""Launch SFT as a supervised child process group: `accelerate launch -m training.sft`.

    options, train_config = LaunchOptions.split(job_config)   # torch-free; ConfigError says why
    check_capacity(options, gpus=visible_gpus())               # LaunchError names the numbers
    cmd = launch_command(options, config_path=path, gpus=gpus, main_process_port=port)
    env = supervised_env(stop_file=path)

A job's config carries two launch keys next to training.config's: `distributed` (single, fsdp or
zero3: the accelerate configs in training/configs/accelerate/) and `num_processes` (one per GPU).
The command starts under `setpriv --pdeathsig TERM`, so the launcher dies with the process that
supervises it; the training processes (`training.sft`'s cli, told by `SFT_STOP_FILE` that it is
supervised) die with the launcher in turn, and stop cleanly after the current step once the stop
file appears. Nothing here imports torch except `visible_gpus`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import ConfigError

ACCELERATE_CONFIGS = Path(__file__).resolve().parent / "configs" / "accelerate"
# distributed -> accelerate config file (None: accelerate's single-process defaults)
DISTRIBUTED = {"single": None, "fsdp": "fsdp.yaml", "zero3": "deepspeed_zero3.yaml"}
STOP_FILE_ENV = "SFT_STOP_FILE"


class LaunchError(RuntimeError):
    """The host cannot run the job as configured (more processes than it has GPUs)."""


@dataclass(frozen=True)
class LaunchOptions:
    distributed: str = "single"
    num_processes: int = 1

    @classmethod
    def split(cls, config: dict[str, Any]) -> tuple[LaunchOptions, dict[str, Any]]:
        """The launch keys of a job's config, validated, and the rest (training.config's)."""
        names = {f.name for f in dataclasses.fields(cls)}
        options = cls(**{k: v for k, v in config.items() if k in names})
        options.validate()
        return options, {k: v for k, v in config.items() if k not in names}

    def validate(self) -> None:
        if self.distributed not in DISTRIBUTED:
            raise ConfigError(
                f"distributed must be one of {tuple(DISTRIBUTED)}, got {self.distributed!r}"
            )
        if isinstance(self.num_processes, bool) or not isinstance(self.num_processes, int):
            raise ConfigError(f"num_processes must be an integer, got {self.num_processes!r}")
        if self.num_processes < 1:
            raise ConfigError(f"num_processes must be >= 1, got {self.num_processes}")
        if self.distributed == "single" and self.num_processes != 1:
            raise ConfigError(
                f"distributed 'single' runs one process, not {self.num_processes}: "
                "choose fsdp or zero3 for several"
            )


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def check_capacity(options: LaunchOptions, *, gpus: int) -> None:
    """Refuse a job this host cannot run, naming what it asks for and what the host has."""
    if options.distributed != "single" and gpus == 0:
        raise LaunchError(
            f"the job asks for {options.distributed} on {options.num_processes} processes; "
            "this host has no GPU"
        )
    if options.num_processes > max(gpus, 1):
        raise LaunchError(
            f"the job asks for {options.num_processes} processes; this host has {gpus} GPUs"
        )


def launch_command(
    options: LaunchOptions,
    *,
    config_path: Path,
    gpus: int,
    main_process_port: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line: accelerate's launcher with the job's config file and process count,
    running `training.sft --config config_path`; every value accelerate would otherwise default
    (and warn about) is given."""
    cmd = ["setpriv", "--pdeathsig", "TERM", python, "-m", "accelerate.commands.launch"]
    config_file = DISTRIBUTED[options.distributed]
    if config_file is not None:
        cmd += ["--config_file", str(ACCELERATE_CONFIGS / config_file)]
    else:
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]
        if gpus == 0:
            cmd += ["--cpu"]
    cmd += ["--num_machines", "1", "--num_processes", str(options.num_processes)]
    if options.num_processes > 1 and main_process_port is not None:
        cmd += ["--main_process_port", str(main_process_port)]
    return [*cmd, "-m", "training.sft", "--config", str(config_path)]


def supervised_env(*, stop_file: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env[STOP_FILE_ENV] = str(stop_file)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def die_with_parent() -> None:
    """In a supervised training process: end with the launcher that started it (Linux)."""
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent == 1 or os.getppid() != parent:  # the parent died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)

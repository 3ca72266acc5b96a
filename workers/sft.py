"""Run an SFT job: export its frozen dataset version, launch `accelerate launch -m training.sft` as
a child process group, supervise it, register a policy.

The Celery worker only supervises: the training processes (one, or one per GPU under FSDP or
ZeRO-3: training.launch) run in their own process group, which dies with the worker. While they
run, the worker relays their progress lines to the job, beats its heartbeat with the log's tail,
and, once the job is cancelled (or taken as lost), asks them to stop after the current step, then
kills the group if they have not after CANCEL_GRACE_S.

Every ending is recorded on the job with its reason; only a completed run registers a policy,
and `training.sft` publishes the model directory atomically, so no half-written policy exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import yaml
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from curation import services
from curation.exporting import Export
from curation.models import RunStatus, SFTJob

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
LOG_TAIL_CHARS = 64 * 1024
# Defaults for jobs launched from the app; a job's own config overrides them.
JOB_DEFAULTS = {"logging_steps": 1}
HEARTBEAT_S = 2  # also how soon a cancel reaches the training processes
CANCEL_GRACE_S = 120  # after a stop request, the group is killed if it has not ended


def job_dir(job: SFTJob) -> Path:
    """The job's own folder. Its creation time is in the name: ids start again with a new
    database, and a model of an earlier database's job must never block (or be overwritten)."""
    return Path(settings.TRAINING_OUTPUT_ROOT) / f"sft-job-{job.pk}-{job.created_at:%Y%m%d-%H%M%S}"


def _write_dataset(job: SFTJob, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for chunk in Export(job.dataset_version, "messages").chunks():
            fh.write(chunk)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_lines(stream: IO[str], lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _last_error(log_path: Path) -> str | None:
    """The training cli's own message ("error: ..." on its stderr), if it gave one."""
    errors = [line for line in _tail(log_path).splitlines() if line.startswith("error: ")]
    return errors[-1].removeprefix("error: ") if errors else None


def _supervise(job: SFTJob, proc: subprocess.Popen, *, stop_file: Path, log_path: Path) -> dict:
    """Relay progress, beat, stop on request; returns the run's result line (or {})."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    result: dict[str, Any] = {}
    stop_asked: float | None = None
    last_beat = time.monotonic()
    while True:
        try:
            line = lines.get(timeout=HEARTBEAT_S)
        except queue.Empty:
            line = ""
        if line is None:  # every process of the group has closed its stdout
            break
        record = _json_line(line)
        if "result" in record:
            result = record["result"]
        elif "status" in record:
            _while_database_answers(services.sft_job_progress, job=job, snapshot=record)
        elif line.strip():
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        now = time.monotonic()
        if now - last_beat >= HEARTBEAT_S:
            last_beat = now
            running = _while_database_answers(
                services.sft_job_heartbeat, job=job, log=_tail(log_path)
            )
            if running is False and stop_asked is None:
                stop_file.touch()
                stop_asked = now
        if stop_asked is not None and now - stop_asked > CANCEL_GRACE_S:
            _kill_group(proc)
    proc.wait()
    return result


def _while_database_answers(write, **kwargs: Any) -> Any:
    """A write of the supervisor; a database that is briefly gone costs a beat or a progress
    point, never the training (None then)."""
    try:
        return write(**kwargs)
    except (OperationalError, InterfaceError) as exc:
        log.warning(
            "SFT job %s: database unavailable (%s); training goes on", kwargs["job"].pk, exc
        )
        connection.close()
        return None


def _json_line(line: str) -> dict:
    if line.startswith("{"):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                return record
    return {}


def _ending(proc: subprocess.Popen, result: dict, log_path: Path) -> tuple[str, str]:
    """(status, error) of a finished run."""
    if result.get("status") == "completed" and proc.returncode == 0:
        return RunStatus.DONE, ""
    if result.get("status") == "cancelled":
        return RunStatus.CANCELLED, ""
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return RunStatus.FAILED, (
            f"training was killed ({name}); its partial model was not registered "
            "(the next run removes it)"
        )
    return RunStatus.FAILED, _last_error(log_path) or (
        f"training exited with code {proc.returncode}; see the log"
    )


def run_job(job_id: int, *, worker: str) -> None:
    """Train one job end to end; a missing, cancelled or already-claimed job is a no-op.

    `worker` (the Celery node name) is recorded so that a restarted worker can fail the jobs it
    was running when it died.
    """
    # Imported here: torch loads in train workers only.
    from training.config import ConfigError, config_from_dict
    from training.launch import (
        LaunchError,
        LaunchOptions,
        check_capacity,
        launch_command,
        supervised_env,
        visible_gpus,
    )

    job = (
        SFTJob.objects.select_related("dataset_version__dataset", "base_policy")
        .filter(pk=job_id)
        .first()
    )
    if job is None or not services.sft_job_started(job=job, worker=worker):
        return
    workdir = job_dir(job)
    log_path, stop_file, config_path = workdir / "train.log", workdir / "stop", workdir / "sft.yaml"
    # What an earlier run of this job left (a lost or cancelled run, never registered: a job runs
    # again only then) goes, or training would refuse a non-empty output directory.
    shutil.rmtree(workdir / "model", ignore_errors=True)
    try:
        options, train_config = LaunchOptions.split(job.config)
        gpus = visible_gpus()
        check_capacity(options, gpus=gpus)
        _write_dataset(job, workdir / "train.jsonl")
        cfg = config_from_dict(
            {
                **JOB_DEFAULTS,
                **train_config,
                "model_name_or_path": job.base_policy.path,
                "dataset": str(workdir / "train.jsonl"),
                "output_dir": str(workdir / "model"),
            }
        )
        config_path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
        cmd = launch_command(
            options, config_path=config_path, gpus=gpus, main_process_port=_free_port()
        )
    except (ConfigError, LaunchError) as exc:
        services.sft_job_finish(job=job, status=RunStatus.FAILED, error=str(exc))
        return
    stop_file.unlink(missing_ok=True)
    services.sft_job_launched(job=job, command=shlex.join(cmd))
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=supervised_env(stop_file=stop_file),
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            start_new_session=True,  # its own process group: cancel and kill reach every rank
        )
    try:
        result = _supervise(job, proc, stop_file=stop_file, log_path=log_path)
    except BaseException:
        _kill_group(proc)  # a worker stopping (or a bug here) takes its training down with it
        raise
    status, error = _ending(proc, result, log_path)
    services.sft_job_finish(
        job=job,
        status=status,
        error=error,
        log=_tail(log_path),
        result=result if status == RunStatus.DONE else None,
    )

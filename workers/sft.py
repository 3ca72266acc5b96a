"""Run an SFT job: export its frozen dataset version, train with `training.sft`, register a policy.

Every ending is recorded on the job with its reason; only a completed run registers a policy,
and `training.sft` publishes the model directory atomically, so no half-written policy exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from curation import services
from curation.exporting import Export
from curation.models import RunStatus, SFTJob

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 64 * 1024
# Defaults for jobs launched from the app; a job's own config overrides them.
JOB_DEFAULTS = {"logging_steps": 1}


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


def run_job(job_id: int, *, worker: str) -> None:
    """Train one job end to end; a missing, cancelled or already-claimed job is a no-op.

    `worker` (the Celery node name) is recorded so that a restarted worker can fail the jobs it
    was running when it died.
    """
    # Imported here: transformers and TRL load in train workers only.
    from training.config import ConfigError, config_from_dict
    from training.data import DatasetError
    from training.progress import ProgressCallback
    from training.sft import ModelNotFoundError, TrainingError, main

    job = (
        SFTJob.objects.select_related("dataset_version__dataset", "base_policy")
        .filter(pk=job_id)
        .first()
    )
    if job is None or not services.sft_job_started(job=job, worker=worker):
        return
    workdir = job_dir(job)
    dataset_path = workdir / "train.jsonl"
    log_path = workdir / "train.log"
    handler: logging.Handler | None = None
    try:
        _write_dataset(job, dataset_path)
        handler = logging.FileHandler(log_path)
        logging.getLogger().addHandler(handler)
        cfg = config_from_dict(
            {
                **JOB_DEFAULTS,
                **job.config,
                "model_name_or_path": job.base_policy.path,
                "dataset": str(dataset_path),
                "output_dir": str(workdir / "model"),
            }
        )
        progress = ProgressCallback(
            report=lambda snapshot: services.sft_job_progress(job=job, snapshot=snapshot),
            should_stop=lambda: SFTJob.objects.filter(
                pk=job.pk, status=RunStatus.CANCELLED
            ).exists(),
        )
        result = main(cfg, callbacks=[progress])
    except (ConfigError, DatasetError, ModelNotFoundError, TrainingError) as exc:
        services.sft_job_finish(
            job=job, status=RunStatus.FAILED, error=str(exc), log=_tail(log_path)
        )
        return
    except Exception as exc:
        log.exception("SFT job %s failed", job.pk)
        services.sft_job_finish(
            job=job,
            status=RunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            log=_tail(log_path),
        )
        return
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    status = RunStatus.DONE if result.status == "completed" else RunStatus.CANCELLED
    services.sft_job_finish(job=job, status=status, log=_tail(log_path), result=result.to_dict())

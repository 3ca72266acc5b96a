"""Writers of the domain: every change to the database goes through a function here.

Each is named `<entity>_<action>`, takes keyword-only arguments, and states its locking contract.
Side effects on other processes (Celery tasks) are enqueued only after the transaction commits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from curation import checks, scoring
from curation import trajectory as fmt
from curation.audit import audit_record
from curation.dispatch import Task, enqueue
from curation.execution import CodeRunner, load_runner
from curation.hints import HINTS, Hint, HintConfig
from curation.models import (
    ACTIVE_STATUSES,
    AuditAction,
    ChunkStatus,
    DatasetVersion,
    Flag,
    HintTemplate,
    Policy,
    Problem,
    ProblemSet,
    Round,
    RoundChunk,
    RoundKind,
    RunStatus,
    SFTJob,
    Trajectory,
)


class ConflictError(Exception):
    """The object changed since the caller read it, or is in a state that forbids the action."""


# --- Trajectories -----------------------------------------------------------------------------


def trajectory_store(
    *,
    round: Round,
    problem: Problem,
    hinted: bool,
    sample_index: int,
    text: str,
    hints: list[str],
    finish_reason: str,
    num_tokens: int = 0,
    num_tool_calls: int = 0,
    timings: dict[str, Any] | None = None,
    error: str = "",
) -> tuple[Trajectory, bool]:
    """Store one finished rollout; idempotent on (round, problem, hinted, sample_index).

    Returns (trajectory, created). A re-run chunk that finds the row already there keeps it.
    """
    try:
        with transaction.atomic():
            trajectory = Trajectory.objects.create(
                round=round,
                problem=problem,
                hinted=hinted,
                sample_index=sample_index,
                text=text,
                original_text=text,
                hints=hints,
                finish_reason=finish_reason,
                num_tokens=num_tokens,
                num_tool_calls=num_tool_calls,
                timings=timings or {},
                error=error,
            )
    except IntegrityError:
        existing = Trajectory.objects.get(
            round=round, problem=problem, hinted=hinted, sample_index=sample_index
        )
        return existing, False
    trajectory_score(trajectory=trajectory)
    return trajectory, True


def code_runner() -> CodeRunner:
    """The runner the CODE_RUNNER setting names (`workers.sandbox.run` unless configured)."""
    return load_runner(settings.CODE_RUNNER)


SCORING_PENDING = "scoring…"


def trajectory_score(
    *, trajectory: Trajectory, defer_code: bool = False, runner: CodeRunner | None = None
) -> Trajectory:
    """Re-run scoring and checks on the current text; replaces the score and the flags.

    A code problem's tests run through the code runner; with `defer_code` (edits in a web
    request) they run later on the sandbox queue and the score reads "scoring…" until then.
    A runner that fails leaves the score pending (`score_details["pending"]`) for a retry.
    The write is guarded by the version that was scored: a score of a text that has since
    changed is dropped (the newer text's own scoring follows). Locks nothing.
    """
    deferred = defer_code and trajectory.problem.domain == "code"
    if deferred:
        details: dict[str, Any] = {"reason": SCORING_PENDING, "pending": True}
        correct, answer = None, ""
    else:
        result = scoring.score(trajectory.problem, trajectory.text, run=runner or code_runner())
        details = {"reason": result.reason, **result.details}
        if result.reason.startswith(scoring.RUNNER_ERROR):
            details["pending"] = True
        correct, answer = result.correct, result.answer or ""
    flags = trajectory_flags(trajectory=trajectory)
    flag_count = sum(1 for f in flags if f.level != "info")
    with transaction.atomic():
        updated = Trajectory.objects.filter(pk=trajectory.pk, version=trajectory.version).update(
            is_correct=correct,
            extracted_answer=answer,
            score_details=details,
            flag_count=flag_count,
        )
        if not updated:
            return trajectory
        trajectory.is_correct, trajectory.extracted_answer = correct, answer
        trajectory.score_details, trajectory.flag_count = details, flag_count
        Flag.objects.filter(trajectory=trajectory).delete()
        Flag.objects.bulk_create(
            Flag(
                trajectory=trajectory,
                kind=f.kind,
                level=f.level,
                message=f.message,
                segment_index=f.segment_index,
                start=f.start,
                end=f.end,
            )
            for f in flags
        )
        if deferred:
            enqueue(Task.RESCORE_TRAJECTORY, trajectory_id=trajectory.pk)
    return trajectory


def trajectory_true_outputs(*, trajectory: Trajectory) -> set[str]:
    """The digests of the outputs known to be true: the generated text's (the rollout printed
    them) and those recorded since (re-runs, stale outputs an annotator kept)."""
    segments = fmt.parse(trajectory.original_text, hints=trajectory.hints)
    generated = checks.output_sources(segments, shared_state=trajectory.round.notebook)
    return {source.digest for source in generated} | set(trajectory.output_sources)


def trajectory_flags(*, trajectory: Trajectory) -> list[checks.Flag]:
    """The checks' findings on the current text, outputs whose code changed since they ran too."""
    return checks.find_flags(
        trajectory.text,
        trajectory.problem,
        hints=trajectory.hints,
        shared_state=trajectory.round.notebook,
        true_outputs=trajectory_true_outputs(trajectory=trajectory),
    )


# --- Policies and rounds ----------------------------------------------------------------------

# The paper's sampling per round kind: greedy seed rounds with and without hints; RFT samples
# each problem 16 times at T=0.6, top-p 0.95 without hints; eval rounds one sample.
ROUND_DEFAULTS: dict[str, dict[str, Any]] = {
    RoundKind.SEED: {"samples_hinted": 1, "samples_plain": 1, "temperature": 0.0, "top_p": 1.0},
    RoundKind.RFT: {"samples_hinted": 0, "samples_plain": 16, "temperature": 0.6, "top_p": 0.95},
    RoundKind.EVAL: {"samples_hinted": 0, "samples_plain": 1, "temperature": 0.0, "top_p": 1.0},
}
TOOL_CONFIG_KEYS = {"max_calls", "timeout_s", "memory_mb", "notebook", "run_code"}
# Which samples run the code they write (the paper's ablations): "all" (the default), "hinted"
# (baseline samples run none, as the paper's greedy base in a seed round), "none" (no tools at
# all: the QwQ-RFT control, an RFT round without tools).
RUN_CODE = ("all", "hinted", "none")


def policy_register(*, name: str, path: str, parent: Policy | None = None, user=None) -> Policy:
    """Register a model by path or hub id; registering the same name and path again is a no-op."""
    with transaction.atomic():
        policy, created = Policy.objects.get_or_create(
            name=name, defaults={"path": path, "parent": parent}
        )
        if created:
            audit_record(
                actor=user,
                action=AuditAction.POLICY_REGISTERED,
                target=policy,
                after={"name": name, "path": path, "parent": parent.name if parent else None},
            )
    if not created and policy.path != path:
        raise ConflictError(f"policy {name!r} is registered with another path: {policy.path}")
    return policy


class SettingError(ValueError):
    """A round setting out of bounds; `field` names it, so forms can put the message there."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# Bounds of the settings a round may ask for: (low, high), inclusive unless noted.
ROUND_BOUNDS: dict[str, tuple[float, float]] = {
    "samples_hinted": (0, 1024),
    "samples_plain": (0, 1024),
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),  # low bound exclusive
    "max_tokens": (1, 1_000_000),
    "reviews_required": (1, 10),
}
TOOL_BOUNDS: dict[str, tuple[float, float]] = {
    "max_calls": (0, 100),
    "timeout_s": (0.1, 600),
    "memory_mb": (16, 65536),
}


def round_settings(*, kind: str, **options: Any) -> dict[str, Any]:
    """The one validation of a round's settings (the admin form, the API, `launch_round` and
    `round_create` all call it): the kind's defaults for what is omitted (None), every value
    checked. Returns the settings to store; raises SettingError naming the field.
    """
    if kind not in RoundKind.values:
        raise SettingError("kind", f"must be one of {RoundKind.values}, got {kind!r}")
    values = {**ROUND_DEFAULTS[kind], **{k: v for k, v in options.items() if v is not None}}
    for field, (low, high) in ROUND_BOUNDS.items():
        value = values.get(field)
        if value is None:  # not set: the model's default (max_tokens)
            continue
        below = value <= low if field == "top_p" else value < low
        if below or value > high:
            bounds = f"({low}, {high}]" if field == "top_p" else f"[{low}, {high}]"
            raise SettingError(field, f"must be in {bounds}, got {value}")
    if values["samples_hinted"] + values["samples_plain"] == 0:
        raise SettingError("samples_hinted", "a round needs at least one sample per problem")
    known_hints = [hint.name for hint in hint_library()]
    # Without a choice of hints, the round draws from every enabled template.
    hint_config = {"hints": known_hints, **(values.get("hint_config") or {})}
    try:
        values["hint_config"] = HintConfig.from_dict(hint_config, known_hints=known_hints).to_dict()
    except ValueError as exc:
        raise SettingError("hint_config", str(exc)) from None
    tools = values.get("tool_config") or {}
    unknown_tools = set(tools) - TOOL_CONFIG_KEYS
    if unknown_tools:
        raise SettingError(
            "tool_config", f"unknown keys {sorted(unknown_tools)}: {sorted(TOOL_CONFIG_KEYS)}"
        )
    for field, (low, high) in TOOL_BOUNDS.items():
        if field in tools and not low <= tools[field] <= high:
            raise SettingError(field, f"must be in [{low}, {high}], got {tools[field]}")
    if tools.get("run_code", "all") not in RUN_CODE:
        raise SettingError("run_code", f"must be one of {RUN_CODE}, got {tools['run_code']!r}")
    return values


def round_create(
    *,
    name: str,
    kind: str,
    policy: Policy,
    problem_sets: Iterable[ProblemSet],
    user=None,
    **options: Any,
) -> Round:
    """Create a draft round with the kind's defaults, validating the hint and tool configs.

    Raises ValueError naming the bad setting.
    """
    values = round_settings(kind=kind, **options)
    problem_sets = list(problem_sets)
    if not problem_sets:
        raise ValueError("a round needs at least one problem set")
    with transaction.atomic():
        round = Round.objects.create(name=name, kind=kind, policy=policy, created_by=user, **values)
        round.problem_sets.set(problem_sets)
    return round


# The end-of-thinking hint repeats an evaluation sweep tries by default, and the most it may.
SWEEP_END_REPEATS = (0, 1, 2, 4)
SWEEP_MAX_END_REPEATS = 32


def evaluation_sweep_launch(
    *,
    name: str,
    policy: Policy | None,
    problem_sets: Iterable[ProblemSet],
    end_repeats: Iterable[int] = SWEEP_END_REPEATS,
    samples: int = 1,
    user=None,
    **options: Any,
) -> list[Round]:
    """Create and launch one eval round per number of end-of-thinking hints (the paper's
    test-time scaling): `samples` hinted samples per problem, no plain ones, every other setting
    equal, so the evaluation table's scaling chart draws them as one line per problem set.

    Hints go only at the end of thinking unless `hint_config` says otherwise (conjunction hints
    would blur the figure). The rounds are named `<name>-end<k>`; all are created and launched
    in one transaction, or none. A sweep without a policy or a problem set, or with fewer than
    two repeat counts, is a SettingError naming the field; a name already taken, a ConflictError.
    """
    if not name.strip():
        raise SettingError("name", "an evaluation sweep needs a name for its rounds")
    if policy is None:
        raise SettingError("policy", "an evaluation sweep needs a policy to evaluate")
    problem_sets = list(problem_sets)
    if not problem_sets:
        raise SettingError("problem_sets", "an evaluation sweep needs at least one problem set")
    repeats = list(end_repeats)
    if len(set(repeats)) != len(repeats) or len(repeats) < 2:
        raise SettingError(
            "end_repeats", f"give two or more different repeat counts, got {repeats}"
        )
    for k in repeats:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= SWEEP_MAX_END_REPEATS:
            raise SettingError(
                "end_repeats", f"each count must be an integer in [0, {SWEEP_MAX_END_REPEATS}]"
            )
    names = {k: f"{name}-end{k}" for k in sorted(repeats)}
    taken = sorted(Round.objects.filter(name__in=names.values()).values_list("name", flat=True))
    if taken:
        raise ConflictError(f"rounds named {taken} exist already: choose another sweep name")
    hint_config = {"conjunction_probability": 0.0, **(options.pop("hint_config", None) or {})}
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SettingError("samples", f"must be a positive integer, got {samples!r}")
    rounds = []
    with transaction.atomic():
        for k, round_name in names.items():
            round_ = round_create(
                name=round_name,
                kind=RoundKind.EVAL,
                policy=policy,
                problem_sets=problem_sets,
                user=user,
                samples_hinted=samples,
                samples_plain=0,
                hint_config={**hint_config, "end_of_thinking": True, "end_repeats": k},
                **options,
            )
            rounds.append(
                round_launch(round=round_, chunk_size=settings.ROLLOUT_CHUNK_SIZE, user=user)
            )
    return rounds


def round_problems(*, round: Round) -> Iterable[Problem]:
    problems = Problem.objects.filter(problem_set__in=round.problem_sets.all())
    if round.split:
        problems = problems.filter(split=round.split)
    return problems.order_by("id")


def round_hint_snapshot(*, round: Round) -> HintConfig:
    """The round's hint config with its library: the enabled templates it names, copied once
    (the first launch), so later edits of the templates never change what the round did.

    A named hint that is no longer enabled is a ConflictError naming it.
    """
    stored = round.hint_config or {}
    if stored.get("library"):
        return HintConfig.from_dict(stored)
    library = {hint.name: hint for hint in hint_library()}
    names = stored.get("hints", list(library))
    missing = [name for name in names if name not in library]
    if missing:
        raise ConflictError(
            f"round {round.name!r} names hints that are not enabled templates: {missing}"
        )
    snapshot = [asdict(library[name]) for name in names]
    return HintConfig.from_dict({**stored, "hints": names, "library": snapshot})


def policy_unreadable(*, policy: Policy) -> str | None:
    """Why the policy's weights cannot be read on this host, or None.

    Policies live on storage every host sees (the shared policies volume), so a local path this
    host cannot read, no engine host can. A hub id (``org/name``, not a path that exists here)
    is the engine's to fetch and is not checked.
    """
    path = Path(policy.path).expanduser()
    local = policy.path.startswith(("/", ".", "~")) or path.exists()
    if not local:
        return None
    if not os.access(path / "config.json", os.R_OK):
        return f"policy {policy.name!r}: {policy.path} cannot be read here (no config.json)"
    return None


def round_launch(*, round: Round, chunk_size: int, user=None) -> Round:
    """Plan a round's chunks and enqueue them on the rollout queue after commit.

    Takes the round's row lock, so two launches cannot both pass the status check.
    A round that already runs, or whose policy cannot be read, is a ConflictError.
    """
    unreadable = policy_unreadable(policy=round.policy)
    if unreadable:
        raise ConflictError(unreadable)
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        if locked.status in ACTIVE_STATUSES:
            raise ConflictError(f"round {locked.name!r} is already {locked.status}")
        problem_ids = list(round_problems(round=locked).values_list("id", flat=True))
        if not problem_ids:
            raise ConflictError(f"round {locked.name!r} has no problems to sample")
        samples = locked.samples_hinted + locked.samples_plain
        if not samples:
            raise ConflictError(f"round {locked.name!r} asks for no samples")
        locked.hint_config = round_hint_snapshot(round=locked).to_dict()
        before = {"status": locked.status}
        locked.chunks.all().delete()
        chunks = RoundChunk.objects.bulk_create(
            RoundChunk(round=locked, index=i, problem_ids=problem_ids[start : start + chunk_size])
            for i, start in enumerate(range(0, len(problem_ids), chunk_size))
        )
        locked.status = RunStatus.QUEUED
        locked.total = len(problem_ids) * samples
        locked.error = ""
        locked.started_at = timezone.now()
        locked.finished_at = None
        locked.save()
        audit_record(
            actor=user,
            action=AuditAction.ROUND_LAUNCHED,
            target=locked,
            before=before,
            after={"status": locked.status, "total": locked.total, "chunks": len(chunks)},
        )
        for chunk in chunks:
            enqueue(Task.RUN_ROUND_CHUNK, chunk_id=chunk.pk)
    return locked


def round_rerun_failed(*, round: Round, user=None) -> int:
    """Re-enqueue the round's unfinished chunks (existing trajectories are skipped by the chunk)."""
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        chunks = list(locked.chunks.exclude(status=ChunkStatus.DONE))
        RoundChunk.objects.filter(pk__in=[c.pk for c in chunks]).update(
            status=ChunkStatus.PENDING, error=""
        )
        if chunks:
            before = {"status": locked.status}
            locked.status = RunStatus.QUEUED
            locked.finished_at = None
            locked.save(update_fields=["status", "finished_at"])
            audit_record(
                actor=user,
                action=AuditAction.ROUND_RERUN_FAILED,
                target=locked,
                before=before,
                after={"status": locked.status, "chunks": sorted(c.index for c in chunks)},
            )
        for chunk in chunks:
            enqueue(Task.RUN_ROUND_CHUNK, chunk_id=chunk.pk)
    return len(chunks)


def round_cancel(*, round: Round, user=None) -> Round:
    """Mark the round cancelled; running chunks see it between trajectories and stop."""
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        _cancel_locked(locked, action=AuditAction.ROUND_CANCELLED, user=user)
    return locked


def _cancel_locked(locked: Round | SFTJob, *, action: str, user) -> None:
    """Cancel a locked round or job that is still active, and audit it; else do nothing."""
    if locked.status in ACTIVE_STATUSES:
        before = {"status": locked.status}
        locked.status = RunStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        audit_record(
            actor=user, action=action, target=locked, before=before, after={"status": locked.status}
        )


# A running chunk's worker beats this often; one silent for CHUNK_LOST_AFTER_S is taken as lost.
CHUNK_HEARTBEAT_S = 10


def round_chunk_started(*, chunk: RoundChunk, worker: str = "") -> None:
    """Mark the chunk (and, on its first chunk, the round) as running on `worker`."""
    RoundChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.RUNNING, error="", worker=worker, heartbeat_at=timezone.now()
    )
    Round.objects.filter(pk=chunk.round_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING
    )


def round_chunk_heartbeat(*, chunk: RoundChunk) -> None:
    RoundChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def round_chunks_recover(*, now: datetime | None = None) -> list[RoundChunk]:
    """Re-enqueue running chunks whose worker went silent (killed, its host lost).

    Neither broker gives a killed worker's message back in time (Redis after its visibility
    timeout, the filesystem broker never), so the heartbeat decides. Each recovery is a line in
    the chunk's `recoveries`, shown on the round's progress page. Called by every running
    chunk as it beats, by a worker as it starts, and by the progress page and `run_loop` as
    they poll. Locks the lost chunks' rows (skipping those another caller holds).
    """
    now = now or timezone.now()
    with transaction.atomic():
        lost = list(
            RoundChunk.objects.select_for_update(skip_locked=True).filter(
                status=ChunkStatus.RUNNING,
                heartbeat_at__lt=now - timedelta(seconds=settings.CHUNK_LOST_AFTER_S),
                round__status__in=ACTIVE_STATUSES,
            )
        )
        for chunk in lost:
            at = timezone.localtime(chunk.heartbeat_at).strftime("%H:%M:%S")
            worker = chunk.worker or "(unknown)"
            line = f"worker {worker} lost at {at}, chunk {chunk.index} re-enqueued"
            chunk.status = ChunkStatus.PENDING
            chunk.recoveries = "\n".join(filter(None, [chunk.recoveries, line]))
            chunk.save(update_fields=["status", "recoveries", "updated_at"])
            enqueue(Task.RUN_ROUND_CHUNK, chunk_id=chunk.pk)
    return lost


def round_fail(*, round: Round, error: str) -> None:
    """Fail an active round at once (an unreachable engine): its other chunks stop."""
    Round.objects.filter(pk=round.pk, status__in=ACTIVE_STATUSES).update(
        status=RunStatus.FAILED, error=error, finished_at=timezone.now()
    )


def round_chunk_finished(*, chunk: RoundChunk, error: str = "") -> Round:
    """Record a chunk's end and close the round once no chunk is left.

    Takes the round's row lock so that concurrent chunks close the round exactly once.
    """
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=chunk.round_id)
        RoundChunk.objects.filter(pk=chunk.pk).update(
            status=ChunkStatus.FAILED if error else ChunkStatus.DONE, error=error
        )
        open_chunks = locked.chunks.exclude(status__in=[ChunkStatus.DONE, ChunkStatus.FAILED])
        if locked.status == RunStatus.FAILED and error:
            locked.error = locked.error or error
            locked.save(update_fields=["error"])
        elif locked.status in ACTIVE_STATUSES and not open_chunks.exists():
            failed = locked.chunks.filter(status=ChunkStatus.FAILED)
            locked.status = RunStatus.FAILED if failed.exists() else RunStatus.DONE
            locked.error = "\n".join(failed.values_list("error", flat=True))
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "error", "finished_at"])
    return locked


# --- SFT jobs ---------------------------------------------------------------------------------


# Set by the job runner, never by a caller: the probe values stand in for them when validating
# (any existing file for the dataset the runner writes later).
SFT_RESERVED = {"model_name_or_path": "base", "dataset": __file__, "output_dir": "out"}


def sft_job_config_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check an SFT job's overrides against training.config and its launch keys (`distributed`,
    `num_processes`: training.launch), torch-free; ValueError says why. Whether the train host
    has the GPUs it asks for is checked there, when the job starts."""
    from training.config import ConfigError, config_from_dict  # the public config, no torch
    from training.launch import LaunchOptions

    if not isinstance(config, dict):
        raise ValueError("the SFT config must be a JSON object")
    reserved = sorted(set(config) & set(SFT_RESERVED))
    if reserved:
        raise ValueError(f"{reserved} are set by the job")
    try:
        _, train_config = LaunchOptions.split(config)
        config_from_dict({**train_config, **SFT_RESERVED}).validate()
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return config


def sft_job_launch(
    *,
    dataset_version: DatasetVersion,
    base_policy: Policy,
    output_name: str,
    config: dict[str, Any] | None = None,
    user=None,
) -> SFTJob:
    """Create a queued SFT job and enqueue it on the train queue after commit.

    The output name must be free: the job registers a policy of that name when it succeeds.
    """
    if Policy.objects.filter(name=output_name).exists():
        raise ConflictError(f"a policy named {output_name!r} already exists")
    if dataset_version.size == 0:
        raise ConflictError(f"{dataset_version} is empty: nothing to train on")
    config = sft_job_config_validate(config or {})
    with transaction.atomic():
        job = SFTJob.objects.create(
            dataset_version=dataset_version,
            base_policy=base_policy,
            output_name=output_name,
            config=config or {},
            status=RunStatus.QUEUED,
            created_by=user,
        )
        audit_record(
            actor=user,
            action=AuditAction.SFT_JOB_LAUNCHED,
            target=job,
            after={
                "dataset_version": str(dataset_version),
                "base_policy": base_policy.name,
                "output_name": output_name,
                "config": job.config,
            },
        )
        enqueue(Task.RUN_SFT_JOB, job_id=job.pk)
    return job


def sft_job_cancel(*, job: SFTJob, user=None) -> SFTJob:
    """Ask a queued or running job to stop; the runner stops after the current step.

    Takes the job's row lock, so a cancel and the runner's claim or finish never interleave.
    """
    with transaction.atomic():
        locked = SFTJob.objects.select_for_update().get(pk=job.pk)
        _cancel_locked(locked, action=AuditAction.SFT_JOB_CANCELLED, user=user)
    return locked


def sft_job_started(*, job: SFTJob, worker: str) -> bool:
    """Claim a queued job for this worker; False when it was cancelled or already taken."""
    claimed = SFTJob.objects.filter(pk=job.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING,
        worker=worker,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        error="",
    )
    return bool(claimed)


def sft_job_launched(*, job: SFTJob, command: str) -> None:
    """Record the command line the worker launched (shown on the job's page)."""
    SFTJob.objects.filter(pk=job.pk).update(command=command)


def sft_job_heartbeat(*, job: SFTJob, log: str | None = None) -> bool:
    """The supervising worker is alive; records the log's tail. False when the job is no longer
    running (cancelled, or taken as lost): the worker then stops its training processes."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if log is not None:
        fields["log"] = log
    return bool(SFTJob.objects.filter(pk=job.pk, status=RunStatus.RUNNING).update(**fields))


def _sft_job_lost(job: SFTJob, *, cause: str) -> str:
    return (
        f"{cause} at step {job.step} / {job.total_steps or '?'}; its partial model was not "
        "registered (the next run removes it); run the job again"
    )


def sft_jobs_recover(*, now: datetime | None = None) -> list[SFTJob]:
    """Fail running jobs whose worker went silent for CHUNK_LOST_AFTER_S (killed, host lost).

    The training processes die with their worker, so nothing of the job runs on; the page says
    which worker was lost when, and "Run again" (sft_job_rerun) starts it afresh. Called by a
    worker as it starts and by the job's progress page as it polls.
    """
    now = now or timezone.now()
    with transaction.atomic():
        lost = list(
            SFTJob.objects.select_for_update(skip_locked=True).filter(
                status=RunStatus.RUNNING,
                heartbeat_at__lt=now - timedelta(seconds=settings.CHUNK_LOST_AFTER_S),
            )
        )
        for job in lost:
            at = timezone.localtime(job.heartbeat_at).strftime("%H:%M:%S")
            job.status = RunStatus.FAILED
            job.error = _sft_job_lost(job, cause=f"worker {job.worker or '(unknown)'} lost at {at}")
            job.finished_at = now
            job.save(update_fields=["status", "error", "finished_at"])
    return lost


def sft_job_rerun(*, job: SFTJob, user=None) -> SFTJob:
    """Queue a failed or cancelled job again (one action after a lost worker); it trains afresh.

    Takes the job's row lock. Refused (ConflictError) for an active or finished job, or when its
    policy's name has been taken since.
    """
    with transaction.atomic():
        locked = SFTJob.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise ConflictError(
                f"SFT job {locked.pk} is {locked.status}: only a failed or cancelled job runs again"
            )
        if Policy.objects.filter(name=locked.output_name).exists():
            raise ConflictError(f"a policy named {locked.output_name!r} already exists")
        before = {"status": locked.status, "error": locked.error}
        locked.status = RunStatus.QUEUED
        locked.step = locked.total_steps = 0
        locked.metrics, locked.history = {}, []
        locked.error = locked.log = locked.worker = locked.command = ""
        locked.started_at = locked.finished_at = locked.heartbeat_at = None
        locked.save()
        audit_record(
            actor=user,
            action=AuditAction.SFT_JOB_LAUNCHED,
            target=locked,
            before=before,
            after={"status": locked.status, "run_again": True},
        )
        enqueue(Task.RUN_SFT_JOB, job_id=locked.pk)
    return locked


def sft_job_progress(*, job: SFTJob, snapshot: dict[str, Any]) -> None:
    """Record a progress snapshot (step, loss, lr, tokens/s, ETA) and extend the loss curve."""
    fields = {"metrics": snapshot}
    if snapshot.get("total_steps"):
        fields["total_steps"] = snapshot["total_steps"]
    with transaction.atomic():
        locked = SFTJob.objects.select_for_update().get(pk=job.pk)
        history = locked.history
        step, loss = snapshot.get("step"), snapshot.get("loss")
        if loss is not None and (not history or history[-1]["step"] != step):
            history.append({"step": step, "loss": loss, "lr": snapshot.get("learning_rate")})
        SFTJob.objects.filter(pk=job.pk).update(step=step or 0, history=history, **fields)


def sft_job_finish(
    *, job: SFTJob, status: str, error: str = "", log: str = "", result: dict | None = None
) -> SFTJob:
    """End a job; on success register its policy (parent: the base policy) in the same commit."""
    with transaction.atomic():
        locked = SFTJob.objects.select_for_update().get(pk=job.pk)
        if status == RunStatus.DONE:
            assert result is not None and result.get("output_dir")
            locked.output_policy = Policy.objects.create(
                name=locked.output_name,
                path=result["output_dir"],
                parent=locked.base_policy,
                metrics={**result, "dataset_version": str(locked.dataset_version)},
            )
            locked.metrics = {**locked.metrics, **result}
        locked.status = status
        locked.error = error
        locked.log = log
        locked.finished_at = timezone.now()
        locked.save()
    return locked


def sft_jobs_orphaned(*, worker: str) -> int:
    """Fail the jobs a restarted worker was running when it died: they never resume silently."""
    with transaction.atomic():
        orphans = list(
            SFTJob.objects.select_for_update().filter(worker=worker, status=RunStatus.RUNNING)
        )
        for job in orphans:
            job.status = RunStatus.FAILED
            job.error = _sft_job_lost(job, cause=f"worker {worker} stopped (killed or crashed)")
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
    return len(orphans)


# --- Hint templates ---------------------------------------------------------------------------


def hint_templates_seed(**_kwargs) -> None:
    """Create a template for each built-in hint that has none; runs after every `migrate`.

    Existing templates are left alone, so an admin's rephrasing survives upgrades.
    """
    for hint in HINTS:
        HintTemplate.objects.get_or_create(
            name=hint.name, defaults={"domain": hint.domain, "text": hint.text}
        )


def hint_library() -> list[Hint]:
    """The hints rounds draw from: the enabled templates (built-in ones as rephrased by admins),
    the paper's first and in its order."""
    return [
        Hint(name=t.name, domain=t.domain, text=t.text)
        for t in HintTemplate.objects.filter(enabled=True).order_by("id")
    ]


def _hint_template_fields(template: HintTemplate) -> dict[str, Any]:
    return {f: getattr(template, f) for f in ("name", "domain", "text", "enabled")}


def hint_template_save(*, template: HintTemplate, user=None) -> HintTemplate:
    """Add or rephrase a hint template; the audit log keeps the wording it replaced."""
    with transaction.atomic():
        stored = (
            HintTemplate.objects.select_for_update().filter(pk=template.pk).first()
            if template.pk
            else None
        )
        before = _hint_template_fields(stored) if stored else None
        template.save()
        after = _hint_template_fields(template)
        if after != before:
            audit_record(
                actor=user,
                action=AuditAction.HINT_EDITED,
                target=template,
                before=before,
                after=after,
            )
    return template


def hint_template_delete(*, template: HintTemplate, user=None) -> None:
    """Delete a hint template; the audit log keeps its last wording."""
    with transaction.atomic():
        audit_record(
            actor=user,
            action=AuditAction.HINT_EDITED,
            target=template,
            before=_hint_template_fields(template),
        )
        template.delete()

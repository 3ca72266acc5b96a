"""Writers of the domain: every change to the database goes through a function here.

Each is named `<entity>_<action>`, takes keyword-only arguments, and states its locking contract.
Side effects on other processes (Celery tasks) are enqueued only after the transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from curation import checks, scoring
from curation.models import (
    ACTIVE_STATUSES,
    ChunkStatus,
    Flag,
    Problem,
    Round,
    RoundChunk,
    RoundKind,
    RunStatus,
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


def trajectory_score(*, trajectory: Trajectory) -> Trajectory:
    """Re-run scoring and checks on the current text; replaces the score and the flags.

    Runs model-written code (code problems) through the sandbox. Locks nothing: the caller
    holds the row when the text may change concurrently (edits call it inside their lock).
    """
    result = scoring.score(trajectory.problem, trajectory.text)
    flags = checks.find_flags(trajectory.text, trajectory.problem, hints=trajectory.hints)
    with transaction.atomic():
        trajectory.is_correct = result.correct
        trajectory.extracted_answer = result.answer or ""
        trajectory.score_details = {"reason": result.reason, **result.details}
        trajectory.flag_count = len(flags)
        Trajectory.objects.filter(pk=trajectory.pk).update(
            is_correct=trajectory.is_correct,
            extracted_answer=trajectory.extracted_answer,
            score_details=trajectory.score_details,
            flag_count=trajectory.flag_count,
        )
        Flag.objects.filter(trajectory=trajectory).delete()
        Flag.objects.bulk_create(
            Flag(
                trajectory=trajectory,
                kind=f.kind,
                message=f.message,
                segment_index=f.segment_index,
                start=f.start,
                end=f.end,
            )
            for f in flags
        )
    return trajectory


# --- Rounds -----------------------------------------------------------------------------------


def round_problems(*, round: Round) -> Iterable[Problem]:
    problems = Problem.objects.filter(problem_set__in=round.problem_sets.all())
    if round.split:
        problems = problems.filter(split=round.split)
    return problems.order_by("id")


def round_launch(*, round: Round, chunk_size: int) -> Round:
    """Plan a round's chunks and enqueue them on the rollout queue after commit.

    Takes the round's row lock, so two launches cannot both pass the status check.
    A round that already runs is a ConflictError.
    """
    from workers import tasks  # workers depend on curation; only launching reaches back

    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        if locked.status in ACTIVE_STATUSES:
            raise ConflictError(f"round {locked.name!r} is already {locked.status}")
        problem_ids = list(round_problems(round=locked).values_list("id", flat=True))
        if not problem_ids:
            raise ConflictError(f"round {locked.name!r} has no problems to sample")
        samples = locked.samples_hinted + (
            locked.samples_plain if locked.kind != RoundKind.RFT else 0
        )
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
        for chunk in chunks:
            tasks.run_round_chunk.delay_on_commit(chunk.pk)
    return locked


def round_rerun_failed(*, round: Round) -> int:
    """Re-enqueue the round's unfinished chunks (existing trajectories are skipped by the chunk)."""
    from workers import tasks

    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        chunks = list(locked.chunks.exclude(status=ChunkStatus.DONE))
        RoundChunk.objects.filter(pk__in=[c.pk for c in chunks]).update(
            status=ChunkStatus.PENDING, error=""
        )
        if chunks:
            locked.status = RunStatus.QUEUED
            locked.finished_at = None
            locked.save(update_fields=["status", "finished_at"])
        for chunk in chunks:
            tasks.run_round_chunk.delay_on_commit(chunk.pk)
    return len(chunks)


def round_cancel(*, round: Round) -> Round:
    """Mark the round cancelled; running chunks see it between trajectories and stop."""
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round.pk)
        if locked.status in ACTIVE_STATUSES:
            locked.status = RunStatus.CANCELLED
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "finished_at"])
    return locked


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
        if locked.status in ACTIVE_STATUSES and not open_chunks.exists():
            failed = locked.chunks.filter(status=ChunkStatus.FAILED)
            locked.status = RunStatus.FAILED if failed.exists() else RunStatus.DONE
            locked.error = "\n".join(failed.values_list("error", flat=True))
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "error", "finished_at"])
    return locked

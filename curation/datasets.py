"""Candidate selection on stored rounds, and frozen, hashed dataset versions (D_seed, D_START)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Max

from curation import checks
from curation import selection as rules
from curation.audit import audit_record
from curation.models import (
    AuditAction,
    Candidate,
    Dataset,
    DatasetItem,
    DatasetKind,
    DatasetVersion,
    Flag,
    Round,
    RoundKind,
    Trajectory,
    TrajectoryQuerySet,
)
from curation.prompting import SYSTEM_PROMPT
from curation.trajectory import loss_mask_spans, parse

CANDIDATE_OF_KIND = {DatasetKind.SEED: Candidate.SEED, DatasetKind.START: Candidate.START}
ROUND_KIND_OF_DATASET = {DatasetKind.SEED: RoundKind.SEED, DatasetKind.START: RoundKind.RFT}
PROBLEMS_NAMED = 10  # offending problems a refused freeze names before "and N more"


def _samples(round: Round) -> list[rules.Sample]:
    rows = round.trajectories.values_list(
        "id", "problem_id", "hinted", "is_correct", "text", "hints"
    )
    kinds: dict[int, list[str]] = {}
    flags = Flag.objects.filter(trajectory__round=round).exclude(level="info")
    for trajectory_id, kind in flags.values_list("trajectory_id", "kind"):
        kinds.setdefault(trajectory_id, []).append(kind)
    return [
        rules.Sample(
            id=id_,
            problem_id=problem_id,
            hinted=hinted,
            correct=correct,
            clean_tool_calls=checks.tool_calls(text, hints=hints).clean,
            flag_kinds=tuple(kinds.get(id_, ())),
            length=len(text),
        )
        for id_, problem_id, hinted, correct, text, hints in rows
    ]


def _apply(round: Round, result: rules.Selection, candidate: str) -> dict:
    """Mark the chosen trajectories; unmark others still pending (reviewed ones keep their mark)."""
    with transaction.atomic():
        Round.objects.select_for_update().filter(pk=round.pk).get()
        round.trajectories.filter(candidate=candidate, review_status="pending").exclude(
            id__in=result.chosen
        ).update(candidate=Candidate.NONE)
        round.trajectories.filter(id__in=result.chosen).update(candidate=candidate)
        round.selection = result.as_dict()
        round.save(update_fields=["selection"])
    return round.selection


def select_seed_candidates(*, round: Round, drop_repetitive: bool = True) -> dict:
    """Propose D_seed candidates in a seed round; stores and returns the rule and its funnel."""
    result = rules.select_seed(_samples(round), drop_repetitive=drop_repetitive)
    return _apply(round, result, Candidate.SEED)


def select_start_candidates(*, round: Round, drop_repetitive: bool = True) -> dict:
    """Propose D_START candidates in an RFT round; stores and returns the rule and its funnel."""
    result = rules.select_start(_samples(round), drop_repetitive=drop_repetitive)
    return _apply(round, result, Candidate.START)


def select_candidates(*, round: Round) -> dict | None:
    """The selection rule of the round's kind (none for eval rounds)."""
    if round.kind == RoundKind.SEED:
        return select_seed_candidates(round=round)
    if round.kind == RoundKind.RFT:
        return select_start_candidates(round=round)
    return None


def content_hash(items: list[dict]) -> str:
    """SHA-256 over the exact training content, in a canonical order and encoding."""
    canonical = sorted(
        (item["prompt"], item["text"], [list(span) for span in item["mask_spans"]])
        for item in items
    )
    payload = json.dumps([SYSTEM_PROMPT, canonical], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _approved(dataset: Dataset) -> TrajectoryQuerySet:
    """Approved trajectories a dataset may take: the candidates of its kind (any, if custom)."""
    approved = Trajectory.objects.approved()
    if dataset.kind in CANDIDATE_OF_KIND:
        approved = approved.filter(candidate=CANDIDATE_OF_KIND[dataset.kind])
    return approved


def dataset_default_rounds(*, dataset: Dataset) -> list[Round]:
    """The rounds a freeze takes when the curator names none: the latest round of the dataset's
    kind that has approved candidates (a custom dataset: every round with approved ones)."""
    rounds = Round.objects.filter(pk__in=_approved(dataset).values("round_id"))
    round_kind = ROUND_KIND_OF_DATASET.get(dataset.kind)
    if round_kind is None:
        return list(rounds.order_by("created_at", "id"))
    latest = rounds.filter(kind=round_kind).order_by("-created_at", "-id").first()
    return [latest] if latest else []


def _excerpt(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _refuse_other_kinds(dataset: Dataset, rounds: list[Round]) -> None:
    round_kind = ROUND_KIND_OF_DATASET.get(dataset.kind)
    others = [r for r in rounds if r.kind != round_kind]
    if round_kind is not None and others:
        named = ", ".join(f"{r.name} ({r.kind})" for r in others)
        raise ValueError(
            f"{dataset.name}: a {dataset.get_kind_display()} version takes {round_kind} rounds "
            f"only, not {named}"
        )


def _refuse_extra_trajectories(dataset: Dataset, trajectories: list[Trajectory]) -> None:
    """The paper's D_START rule: at most one trajectory per problem."""
    by_problem: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        by_problem.setdefault(t.problem_id, []).append(t)
    extra = [ts for ts in by_problem.values() if len(ts) > 1]
    if not extra:
        return
    named = "; ".join(
        f"#{ts[0].problem_id} {_excerpt(ts[0].problem.prompt)!r} "
        f"(trajectories {', '.join(f'#{t.pk}' for t in ts)})"
        for ts in extra[:PROBLEMS_NAMED]
    )
    if len(extra) > PROBLEMS_NAMED:
        named += f"; and {len(extra) - PROBLEMS_NAMED} more"
    problems = "1 problem has" if len(extra) == 1 else f"{len(extra)} problems have"
    raise ValueError(
        f"{dataset.name}: {problems} more than one approved trajectory: {named}; "
        "reject the extras first"
    )


def dataset_version_freeze(
    *, dataset: Dataset, user=None, rounds: Iterable[Round] | None = None
) -> DatasetVersion:
    """Freeze the approved candidates of the chosen rounds into a new, immutable version.

    Rounds default to `dataset_default_rounds`: pooling every round would give a problem one
    trajectory per RFT round, or put other rounds' items in D_seed. A freeze that breaks a rule
    is refused with a ValueError that says what to fix, never fixed silently: rounds of another
    kind than the dataset's (D_seed takes seed rounds, D_START RFT rounds), nothing approved,
    more than one trajectory for a problem in D_START, nothing changed since the last version.

    Copies each text, its prompt and its loss-mask spans into the version, so later edits of a
    trajectory never change it. Locks the dataset row, so concurrent freezes number correctly.
    """
    chosen = dataset_default_rounds(dataset=dataset) if rounds is None else list(rounds)
    chosen = sorted(set(chosen), key=lambda r: r.pk)
    _refuse_other_kinds(dataset, chosen)
    approved = _approved(dataset).filter(round__in=chosen).select_related("problem", "round")
    trajectories = list(approved.order_by("id"))
    if not trajectories:
        where = f" in {', '.join(r.name for r in chosen)}" if rounds is not None and chosen else ""
        raise ValueError(f"{dataset.name}: no approved trajectories to freeze{where}")
    if dataset.kind == DatasetKind.START:
        _refuse_extra_trajectories(dataset, trajectories)

    items = [
        {
            "trajectory": t,
            "problem": t.problem,
            "prompt": t.problem.prompt,
            "text": t.text,
            "mask_spans": loss_mask_spans(parse(t.text, hints=t.hints)),
            "is_correct": t.is_correct,
        }
        for t in trajectories
    ]
    digest = content_hash(items)
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).get()
        latest = dataset.versions.order_by("-number").first()
        if latest and latest.content_hash == digest:
            raise ValueError(f"{dataset.name}: nothing changed since v{latest.number}")
        number = (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=number,
            content_hash=digest,
            size=len(items),
            created_by=user,
            rules={
                "system_prompt": SYSTEM_PROMPT,
                "rounds": {r.name: r.selection for r in chosen},
            },
            funnel=_funnel(chosen, approved_count=len(items)),
        )
        DatasetItem.objects.bulk_create(
            (DatasetItem(version=version, **item) for item in items), batch_size=500
        )
        audit_record(
            actor=user,
            action=AuditAction.DATASET_FROZEN,
            target=version,
            before=latest and {"number": latest.number, "content_hash": latest.content_hash},
            after={
                "number": number,
                "content_hash": digest,
                "size": len(items),
                "rounds": [r.name for r in chosen],
            },
        )
    return version


def _funnel(rounds: list[Round], *, approved_count: int) -> list[dict]:
    steps = []
    for round_ in rounds:
        steps += [{"round": round_.name, **step} for step in round_.selection.get("funnel", [])]
    steps.append({"step": "approved by annotators", "count": approved_count})
    return steps


def dataset_version_diff(*, old: DatasetVersion, new: DatasetVersion) -> dict[str, list[int]]:
    """Trajectory ids added, removed, and changed (same trajectory, other text or masks)."""

    def content(version: DatasetVersion) -> dict[int, tuple]:
        rows = version.items.values_list("trajectory_id", "prompt", "text", "mask_spans")
        return {tid: (prompt, text, spans) for tid, prompt, text, spans in rows}

    before, after = content(old), content(new)
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(t for t in before.keys() & after.keys() if before[t] != after[t]),
    }

"""Candidate selection on stored rounds, and frozen, hashed dataset versions (D_seed, D_START)."""

from __future__ import annotations

import hashlib
import json

from django.db import transaction
from django.db.models import Max

from curation import checks
from curation import selection as rules
from curation.models import (
    Candidate,
    Dataset,
    DatasetItem,
    DatasetKind,
    DatasetVersion,
    Flag,
    Round,
    RoundKind,
    Trajectory,
)
from curation.prompting import SYSTEM_PROMPT
from curation.trajectory import loss_mask_spans, parse

_CANDIDATE_OF_KIND = {DatasetKind.SEED: Candidate.SEED, DatasetKind.START: Candidate.START}


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


def dataset_version_freeze(*, dataset: Dataset, user=None, rounds=None) -> DatasetVersion:
    """Freeze the approved candidates of the dataset's kind into a new, immutable version.

    Copies each text, its prompt and its loss-mask spans into the version, so later edits of a
    trajectory never change it. Locks the dataset row, so concurrent freezes number correctly.
    Raises ValueError when nothing is approved or nothing changed since the last version.
    """
    approved = Trajectory.objects.approved().select_related("problem", "round")
    if dataset.kind in _CANDIDATE_OF_KIND:
        approved = approved.filter(candidate=_CANDIDATE_OF_KIND[dataset.kind])
    if rounds is not None:
        approved = approved.filter(round__in=rounds)
    trajectories = list(approved.order_by("id"))
    if not trajectories:
        raise ValueError(f"{dataset.name}: no approved trajectories to freeze")

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
    source_rounds = sorted({t.round for t in trajectories}, key=lambda r: r.pk)
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
                "rounds": {r.name: r.selection for r in source_rounds},
            },
            funnel=_funnel(source_rounds, approved_count=len(items)),
        )
        DatasetItem.objects.bulk_create(
            (DatasetItem(version=version, **item) for item in items), batch_size=500
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

"""Reads across several models, for views, the admin and the API."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from curation.evaluation import Table, build_table
from curation.models import (
    ChunkStatus,
    Flag,
    ReviewStatus,
    Revision,
    Round,
    RoundKind,
    Trajectory,
    TrajectoryQuerySet,
)

# --- Round progress (admin and API) -----------------------------------------------------------

MAX_CHUNK_ERRORS_SHOWN = 5


def round_progress(*, round: Round) -> dict[str, Any]:
    """Trajectories done of planned, errors, tokens/s since launch, and chunk counts."""
    stats = round.trajectories.aggregate(
        done=Count("id"),
        errors=Count("id", filter=~Q(error="")),
        tokens=Coalesce(Sum("num_tokens"), 0),
    )
    chunks = {status: 0 for status in ChunkStatus.values}
    chunks.update(round.chunks.values_list("status").annotate(n=Count("id")).order_by())
    chunk_errors = list(
        round.chunks.filter(status=ChunkStatus.FAILED)
        .exclude(error="")
        .values_list("error", flat=True)[:MAX_CHUNK_ERRORS_SHOWN]
    )
    elapsed = None
    if round.started_at:
        elapsed = ((round.finished_at or timezone.now()) - round.started_at).total_seconds()
    return {
        "status": round.status,
        "total": round.total,
        "done": stats["done"],
        "fraction": min(stats["done"] / round.total, 1.0) if round.total else 0.0,
        "errors": stats["errors"],
        "tokens": stats["tokens"],
        "elapsed_s": elapsed,
        "tokens_per_s": stats["tokens"] / elapsed if elapsed else None,
        "chunks": {"total": sum(chunks.values()), **chunks},
        "chunk_errors": chunk_errors,
        "recoveries": [
            line
            for lines in round.chunks.exclude(recoveries="").values_list("recoveries", flat=True)
            for line in lines.splitlines()
        ],
    }


# --- Evaluation (issue: the paper's comparison table) -------------------------------------------


def evaluation_table(*, rounds=None) -> Table:
    """pass@1 per (policy, with or without test-time hints) and problem set, over eval rounds.

    An unscored sample counts as wrong. Rows follow the order the policies were registered in.
    """
    rounds = rounds if rounds is not None else Round.objects.filter(kind=RoundKind.EVAL)
    rows = (
        Trajectory.objects.filter(round__in=rounds)
        .values("round__policy__name", "round__policy_id", "hinted", "problem__problem_set__name")
        .annotate(correct=Count("id", filter=Q(is_correct=True)), n=Count("id"))
        .order_by("round__policy_id", "hinted", "problem__problem_set__name")
    )
    return build_table(
        (
            row["round__policy__name"] + (" + Hint-infer" if row["hinted"] else ""),
            row["problem__problem_set__name"],
            row["correct"],
            row["n"],
        )
        for row in rows
    )


# --- The review queue and review progress (the annotators' workbench) ---------------------------

QUEUE_SORTS: dict[str, tuple[str, ...]] = {
    "oldest": ("id",),
    "newest": ("-id",),
    "flags": ("-flag_count", "id"),
    "shortest": ("num_tokens", "id"),
    "longest": ("-num_tokens", "-id"),
}
CORRECTNESS: dict[str, bool | None] = {"yes": True, "no": False, "unknown": None}
# Flags that inform rather than warn (where a hint went): not a reason to look, not a filter.
INFO_FLAG_KINDS = ("hint",)
# The facets counted from one grouped query, and the column each one groups by.
_CUBE = {
    "round": "round_id",
    "candidate": "candidate",
    "domain": "problem__domain",
    "status": "review_status",
    "correct": "is_correct",
}


@dataclass(frozen=True)
class QueueFilters:
    """What the queue shows: candidates, narrowed by each non-empty field, in `sort` order."""

    round: int | None = None
    candidate: str = ""  # Candidate value; "" any kind of candidate
    domain: str = ""
    status: str = ReviewStatus.PENDING  # "" any status
    correct: str = ""  # a CORRECTNESS key
    flag: str = ""  # a flag kind
    sort: str = "oldest"

    def _matches(self, facet: str, value: Any) -> bool:
        wanted = getattr(self, facet)
        if wanted in ("", None):
            return True
        if facet == "correct":
            return value is CORRECTNESS[wanted]
        return value == wanted


def queue_trajectories(
    *, filters: QueueFilters, without: Collection[str] = ()
) -> TrajectoryQuerySet:
    """The queue's candidates, filtered (except by the facets `without`) and sorted."""
    qs = trajectories_filtered(Trajectory.objects.candidates(), filters=filters, without=without)
    return qs.order_by(*QUEUE_SORTS.get(filters.sort, QUEUE_SORTS["oldest"]))


def trajectories_filtered(
    qs: TrajectoryQuerySet, *, filters: QueueFilters, without: Collection[str] = ()
) -> TrajectoryQuerySet:
    """`qs` narrowed by the filters the queue and the API share (except the facets `without`)."""
    if filters.round is not None and "round" not in without:
        qs = qs.filter(round_id=filters.round)
    if filters.candidate and "candidate" not in without:
        qs = qs.filter(candidate=filters.candidate)
    if filters.domain and "domain" not in without:
        qs = qs.filter(problem__domain=filters.domain)
    if filters.status and "status" not in without:
        qs = qs.filter(review_status=filters.status)
    if filters.correct in CORRECTNESS and "correct" not in without:
        wanted = CORRECTNESS[filters.correct]
        qs = qs.filter(is_correct__isnull=True) if wanted is None else qs.filter(is_correct=wanted)
    if filters.flag and "flag" not in without:
        qs = qs.filter(Exists(Flag.objects.filter(trajectory_id=OuterRef("pk"), kind=filters.flag)))
    return qs


@dataclass
class QueueFacets:
    total: int  # rows matching every filter
    counts: dict[str, dict[Any, int]]  # facet -> value -> rows matching the other filters


def queue_facets(*, filters: QueueFilters) -> QueueFacets:
    """Counts per filter value, each under the other filters, from two grouped queries.

    One query groups the candidates by every column facet at once (a small cube: rounds x kinds
    x domains x statuses x correctness); the counts of each facet are sums over that cube. Flag
    kinds, many per trajectory, are counted apart.
    """
    cube = list(
        queue_trajectories(filters=filters, without=_CUBE)
        .order_by()
        .values(*_CUBE.values())
        .annotate(n=Count("id"))
    )
    counts: dict[str, dict[Any, int]] = {facet: defaultdict(int) for facet in _CUBE}
    total = 0
    for row in cube:
        values = {facet: row[column] for facet, column in _CUBE.items()}
        misses = [f for f, v in values.items() if not filters._matches(f, v)]
        if not misses:
            total += row["n"]
        for facet in _CUBE:
            if not misses or misses == [facet]:
                counts[facet][values[facet]] += row["n"]
    counts["flag"] = _flag_kind_counts(queue_trajectories(filters=filters, without=("flag",)))
    return QueueFacets(total, {facet: dict(values) for facet, values in counts.items()})


def _flag_kind_counts(trajectories: TrajectoryQuerySet) -> dict[str, int]:
    """Trajectories per flag kind. Raw SQL for a hashed DISTINCT: the ORM's COUNT(DISTINCT)
    makes Postgres sort every (kind, trajectory) pair, twice as slow on 100k rows."""
    inner, params = trajectories.order_by().values("pk").query.sql_with_params()
    table = Flag._meta.db_table
    skipped = ", ".join(["%s"] * len(INFO_FLAG_KINDS))
    sql = (
        f"SELECT kind, COUNT(*) FROM (SELECT DISTINCT kind, trajectory_id FROM {table} "
        f"WHERE trajectory_id IN ({inner}) AND kind NOT IN ({skipped})) AS pairs GROUP BY kind"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *INFO_FLAG_KINDS])
        return dict(cursor.fetchall())


def queue_count(*, filters: QueueFilters) -> int:
    return queue_trajectories(filters=filters).order_by().count()


def queue_neighbors(
    *, filters: QueueFilters, trajectory: Trajectory
) -> tuple[int | None, int | None]:
    """The ids before and after `trajectory` in the queue's order (it need not be in it)."""
    order = QUEUE_SORTS.get(filters.sort, QUEUE_SORTS["oldest"])
    qs = queue_trajectories(filters=filters)

    def beyond(forward: bool) -> Q:
        condition = Q(pk__in=[])
        equal = Q()
        for key in order:
            field = key.lstrip("-")
            ascending = not key.startswith("-")
            lookup = "gt" if ascending == forward else "lt"
            value = getattr(trajectory, "pk" if field == "id" else field)
            condition |= equal & Q(**{f"{field}__{lookup}": value})
            equal &= Q(**{field: value})
        return condition

    reverse = [k[1:] if k.startswith("-") else f"-{k}" for k in order]
    after = qs.filter(beyond(True)).order_by(*order).values_list("pk", flat=True).first()
    before = qs.filter(beyond(False)).order_by(*reverse).values_list("pk", flat=True).first()
    return before, after


def trajectory_baselines(*, trajectory: Trajectory) -> QuerySet[Trajectory]:
    """Samples of the same problem without hints: its own round's first, then other rounds'."""
    return (
        Trajectory.objects.filter(problem_id=trajectory.problem_id, hinted=False)
        .exclude(pk=trajectory.pk)
        .select_related("round")
        .defer("text", "original_text", "timings", "score_details")
        .annotate(other_round=~Q(round_id=trajectory.round_id))
        .order_by("other_round", "round_id", "sample_index")
    )


def review_progress_by_round() -> list[dict[str, Any]]:
    """Per round with candidates: how many are approved, rejected, skipped and pending."""
    rows = (
        Trajectory.objects.candidates()
        .order_by()
        .values("round_id", "round__name")
        .annotate(**_status_counts())
        .order_by("-round_id")
    )
    return [{"id": r["round_id"], "name": r["round__name"], **_with_totals(r)} for r in rows]


def review_progress_by_annotator(*, round_id: int | None = None) -> list[dict[str, Any]]:
    """Per annotator: their decisions (approved, rejected, skipped), the pending items they hold
    now, and their edits; optionally within one round."""
    scope = Trajectory.objects.candidates()
    revisions = Revision.objects.exclude(action__startswith="decide_")
    if round_id is not None:
        scope = scope.filter(round_id=round_id)
        revisions = revisions.filter(trajectory__round_id=round_id)
    people: dict[int, dict[str, Any]] = {}

    def person(pk: int, name: str) -> dict[str, Any]:
        return people.setdefault(
            pk,
            {"name": name, "approved": 0, "rejected": 0, "skipped": 0, "pending": 0, "edits": 0},
        )

    decided = (
        scope.exclude(reviewed_by=None)
        .order_by()
        .values("reviewed_by_id", "reviewed_by__username")
        .annotate(**_status_counts())
    )
    for row in decided:
        entry = person(row["reviewed_by_id"], row["reviewed_by__username"])
        for status in ("approved", "rejected", "skipped"):
            entry[status] = row[status]
    held = (
        scope.filter(review_status=ReviewStatus.PENDING, claimed_until__gt=timezone.now())
        .order_by()
        .values_list("claimed_by_id", "claimed_by__username")
        .annotate(n=Count("id"))
    )
    for pk, name, n in held:
        person(pk, name)["pending"] = n
    edits = (
        revisions.order_by().values_list("author_id", "author__username").annotate(n=Count("id"))
    )
    for pk, name, n in edits:
        person(pk, name)["edits"] = n
    rows = [_with_totals(p) for p in people.values()]
    return sorted(rows, key=lambda r: (-r["reviewed"], r["name"]))


def _status_counts() -> dict[str, Count]:
    return {
        status: Count("id", filter=Q(review_status=status))
        for status in ("approved", "rejected", "skipped", "pending")
    }


def _with_totals(row: dict[str, Any]) -> dict[str, Any]:
    reviewed = row["approved"] + row["rejected"] + row["skipped"]
    return {**row, "reviewed": reviewed, "total": reviewed + row["pending"]}

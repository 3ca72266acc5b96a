"""Reads across several models, for views, the admin and the API."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.contrib.postgres.search import SearchQuery
from django.db import connection, connections
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from curation.evaluation import Cell, Record, Table, build_table, setting_of
from curation.models import (
    SEARCH_CONFIG,
    Assignment,
    ChunkStatus,
    Dataset,
    DatasetKind,
    Flag,
    Problem,
    QueueCount,
    Review,
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


# --- Evaluation (the paper's comparison table and its test-time scaling figure) -----------------


CELL_COUNTS = ("correct", "n", "tool_used", "calls", "tokens", "unscored")


def evaluation_table(*, rounds=None, policies=None, problem_sets=None) -> Table:
    """pass@1, tool use, calls and tokens per (policy, setting) and problem set, over eval
    rounds (all of them by default), optionally only those of `policies` and only the columns
    of `problem_sets`. A round's hinted and plain samples are two settings;
    rounds of one setting add up, rounds of unlike settings are separate rows. An unscored
    sample counts as not correct. Rows follow the order the policies were registered in,
    plain before hinted.
    """
    rounds = rounds if rounds is not None else Round.objects.filter(kind=RoundKind.EVAL)
    trajectories = Trajectory.objects.filter(round__in=rounds)
    if policies:
        trajectories = trajectories.filter(round__policy__in=policies)
    if problem_sets:
        trajectories = trajectories.filter(problem__problem_set__in=problem_sets)
    groups = (
        trajectories.values("round_id", "hinted", "problem__problem_set__name")
        .annotate(
            correct=Count("id", filter=Q(is_correct=True)),
            n=Count("id"),
            tool_used=Count("id", filter=Q(num_tool_calls__gte=1)),
            calls=Coalesce(Sum("num_tool_calls"), 0),
            tokens=Coalesce(Sum("num_tokens"), 0),
            unscored=Count("id", filter=Q(is_correct__isnull=True)),
        )
        .order_by()
    )
    groups = list(groups)
    by_id = Round.objects.select_related("policy").in_bulk({g["round_id"] for g in groups})
    records = []
    for group in groups:
        round_ = by_id[group["round_id"]]
        hinted = group["hinted"]
        setting = setting_of(
            hinted=hinted,
            samples=round_.samples_hinted if hinted else round_.samples_plain,
            temperature=round_.temperature,
            top_p=round_.top_p,
            max_tokens=round_.max_tokens,
            hint_config=round_.hint_config,
            tool_config=round_.tool_config,
        )
        cell = Cell(**{name: group[name] for name in CELL_COUNTS})
        column = group["problem__problem_set__name"]
        record = Record(round_.policy.name, setting, column, round_.name, cell)
        records.append(((round_.policy_id, hinted, round_.created_at, round_.pk), record))
    records.sort(key=lambda pair: (pair[0], pair[1].column))
    return build_table(record for _, record in records)


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
    search: str = ""  # words of the text or the problem's prompt (`trajectories_search`)
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
    if filters.search:
        qs = trajectories_search(qs, query=filters.search)
    return qs


# --- Search -----------------------------------------------------------------------------------

SEARCH_MAX_CHARS = 200
# Problems whose prompt matches are passed to the trajectory query by id up to this many (so
# that Postgres combines two index scans); more would make a long query to plan each time.
SEARCH_LISTED_PROBLEMS = 1000


class SearchError(ValueError):
    """A search that cannot select anything as written (the message says why)."""


def trajectories_search(qs: TrajectoryQuerySet, *, query: str) -> TrajectoryQuerySet:
    """`qs` narrowed to trajectories whose text, or whose problem's prompt, matches `query`, in
    the syntax of web search engines: words (all of them), "a phrase", -excluded, or.

    Postgres: full-text search (stemmed English, the GIN-indexed `search_vector` columns); the
    matching problems are fetched first, so that the trajectory query is a BitmapOr of two index
    scans instead of a join. SQLite (the demo): case-insensitive substrings, `search_like`.
    """
    query = query.strip()
    if not query:
        return qs
    if len(query) > SEARCH_MAX_CHARS:
        raise SearchError(f"a search has at most {SEARCH_MAX_CHARS} characters")
    if connections[qs.db].vendor != "postgresql":
        return search_like(qs, query=query)
    tsquery = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    with connections[qs.db].cursor() as cursor:
        cursor.execute("SELECT numnode(websearch_to_tsquery(%s, %s))", [SEARCH_CONFIG, query])
        if cursor.fetchone()[0] == 0:
            raise SearchError(
                f"“{query}” has no words to search for (very common words are ignored)"
            )
    matching = Problem.objects.filter(search_vector=tsquery).values_list("pk", flat=True)
    problems = list(matching[: SEARCH_LISTED_PROBLEMS + 1])
    if len(problems) > SEARCH_LISTED_PROBLEMS:  # a common word: a subquery, not a long list
        return qs.filter(Q(search_vector=tsquery) | Q(problem__in=matching))
    return qs.filter(Q(search_vector=tsquery) | Q(problem_id__in=problems))


_SEARCH_TOKEN = re.compile(r'(-)?"([^"]*)"?|(\S+)')


def search_like(qs: TrajectoryQuerySet, *, query: str) -> TrajectoryQuerySet:
    """The search without full text (the demo's SQLite): each word or "phrase" must occur in
    the text or the prompt (case-insensitive, unstemmed), a -word must not; `or` separates
    alternatives."""
    alternatives: list[Q] = []
    current = Q()
    for match in _SEARCH_TOKEN.finditer(query):
        negated, phrase, word = match.groups()
        if word is not None and word.lower() == "or":
            alternatives.append(current)
            current = Q()
            continue
        if word is not None and word.startswith("-") and len(word) > 1:
            negated, word = "-", word[1:]
        term = (phrase if phrase is not None else word).strip()
        if not term:
            continue
        hit = Q(text__icontains=term) | Q(problem__prompt__icontains=term)
        current &= ~hit if negated else hit
    alternatives.append(current)
    terms = [alternative for alternative in alternatives if alternative]
    if not terms:
        raise SearchError(f"“{query}” has no words to search for")
    condition = terms[0]
    for alternative in terms[1:]:
        condition |= alternative
    return qs.filter(condition)


@dataclass
class QueueFacets:
    total: int  # rows matching every filter
    counts: dict[str, dict[Any, int]]  # facet -> value -> rows matching the other filters


# Why the counts come from a table: grouping the candidates by every facet (the cube below) reads
# every candidate, ~2 s at a million on these machines, and grows with the rows; index-only scans
# per facet still read 600k index entries each. Cached counts would be stale right after a
# decision, and approximate ones wrong for small, correlated cells ("3 left with placeholders").
# So Postgres keeps `QueueCount` exact by triggers (migration 0006) and the counts read its few
# hundred rows, whatever the number of trajectories. A search narrows to rows no table can know
# in advance: its counts, and those on SQLite, are computed live over the matching rows.


def _counts_from_cells(filters: QueueFilters) -> bool:
    return connection.vendor == "postgresql" and not filters.search


# A search is counted by listing its matches (found by the GIN index, each read once), up to
# this many. Beyond it the queue says "10,000+" and does not count per filter value: a broad
# search's counts would read most of the table (seconds at a million).
SEARCH_COUNT_CAP = 10_000


def search_matches(*, filters: QueueFilters, without: Collection[str] = ()) -> list[int] | None:
    """The ids of the queue's trajectories that match its search (under the filters except those
    `without`); None when there are more than SEARCH_COUNT_CAP."""
    matches = queue_trajectories(filters=filters, without=without).order_by()
    ids = list(matches.values_list("pk", flat=True)[: SEARCH_COUNT_CAP + 1])
    return None if len(ids) > SEARCH_COUNT_CAP else ids


def queue_listing(*, filters: QueueFilters) -> tuple[TrajectoryQuerySet, int, bool]:
    """The queue's rows in order (to slice a page from), how many, and whether that number is a
    floor (a search with more than SEARCH_COUNT_CAP matches)."""
    if not filters.search:
        return queue_trajectories(filters=filters), queue_count(filters=filters), False
    ids = search_matches(filters=filters)
    if ids is None:  # most rows match: walking the sort order finds a page of them at once
        return queue_trajectories(filters=filters), SEARCH_COUNT_CAP, True
    return _by_id(ids, filters), len(ids), False


def queue_ordered(*, filters: QueueFilters) -> TrajectoryQuerySet:
    """The queue in its order, for the next item to claim and a page's neighbours: a selective
    search's matches are read by id (see `_by_id`)."""
    if filters.search:
        ids = search_matches(filters=filters)
        if ids is not None:
            return _by_id(ids, filters)
    return queue_trajectories(filters=filters)


def _by_id(ids: list[int], filters: QueueFilters) -> TrajectoryQuerySet:
    """The trajectories `ids` in the queue's order. Left to find a rare word's rows itself,
    Postgres may walk the whole sort order (seconds at a million when they are near its end)."""
    order = QUEUE_SORTS.get(filters.sort, QUEUE_SORTS["oldest"])
    return Trajectory.objects.filter(pk__in=ids).order_by(*order)


def queue_facets(*, filters: QueueFilters) -> QueueFacets | None:
    """Counts per filter value, each under the other filters; None for a search with more than
    SEARCH_COUNT_CAP matches.

    Both ways sum a small cube (rounds x kinds x domains x statuses x correctness): read from
    `QueueCount`, or grouped live from the candidates (flag kinds, many per trajectory, counted
    apart then).
    """
    if _counts_from_cells(filters):
        return _facets_from_cells(filters)
    ids = None
    if filters.search:  # its matches, once, by id; then the other filters on those
        ids = search_matches(filters=filters, without=(*_CUBE, "flag"))
        if ids is None:
            return None
        filters = replace(filters, search="")

    def scope(trajectories: TrajectoryQuerySet) -> TrajectoryQuerySet:
        return trajectories if ids is None else trajectories.filter(pk__in=ids)

    cube = (
        scope(queue_trajectories(filters=filters, without=_CUBE))
        .order_by()
        .values(*_CUBE.values())
        .annotate(n=Count("id"))
    )
    total, counts = _sum_cube(
        (({facet: row[column] for facet, column in _CUBE.items()}, row["n"]) for row in cube),
        filters,
    )
    flagged = scope(queue_trajectories(filters=filters, without=("flag",)))
    counts["flag"] = _flag_kind_counts(flagged)
    return QueueFacets(total, counts)


def _sum_cube(
    cells: Iterable[tuple[dict[str, Any], int]], filters: QueueFilters
) -> tuple[int, dict[str, dict[Any, int]]]:
    """The total under every filter, and per facet the counts of its values under the others."""
    counts: dict[str, dict[Any, int]] = {facet: defaultdict(int) for facet in _CUBE}
    total = 0
    for values, n in cells:
        misses = [f for f, v in values.items() if not filters._matches(f, v)]
        if not misses:
            total += n
        for facet in _CUBE:
            if not misses or misses == [facet]:
                counts[facet][values[facet]] += n
    return total, {facet: dict(values) for facet, values in counts.items()}


def _cells() -> QuerySet[QueueCount]:
    return QueueCount.objects.filter(n__gt=0).exclude(candidate="")


def _facets_from_cells(filters: QueueFilters) -> QueueFacets:
    """The cube of the trajectories with a flag of `filters.flag` (all of them: kind ""), and
    the flag kinds' counts under the other filters, from one read of `QueueCount`."""
    rows = _cells().values_list(
        "round_id", "candidate", "domain", "review_status", "correct", "flag_kind", "n"
    )
    cube = []
    flags: dict[str, int] = defaultdict(int)
    for round_id, candidate, domain, status, correct, kind, n in rows:
        values = {
            "round": round_id,
            "candidate": candidate,
            "domain": domain,
            "status": status,
            "correct": CORRECTNESS[correct],
        }
        if kind == filters.flag:
            cube.append((values, n))
        counted = kind and kind not in INFO_FLAG_KINDS
        if counted and all(filters._matches(f, v) for f, v in values.items()):
            flags[kind] += n
    total, counts = _sum_cube(cube, filters)
    counts["flag"] = dict(flags)
    return QueueFacets(total, counts)


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
    """How many trajectories the queue shows (from `QueueCount` where it can)."""
    if not _counts_from_cells(filters):
        return queue_trajectories(filters=filters).order_by().count()
    cells = _cells().filter(flag_kind=filters.flag)
    for facet, column in _CELL_COLUMNS.items():
        wanted = getattr(filters, facet)
        if wanted not in ("", None):
            cells = cells.filter(**{column: wanted})
    return cells.aggregate(n=Coalesce(Sum("n"), 0))["n"]


# The facets' columns in QueueCount (its `correct` holds the CORRECTNESS keys).
_CELL_COLUMNS = {
    "round": "round_id",
    "candidate": "candidate",
    "domain": "domain",
    "status": "review_status",
    "correct": "correct",
}


def queue_neighbors(
    *, filters: QueueFilters, trajectory: Trajectory
) -> tuple[int | None, int | None]:
    """The ids before and after `trajectory` in the queue's order (it need not be in it)."""
    order = QUEUE_SORTS.get(filters.sort, QUEUE_SORTS["oldest"])
    qs = queue_ordered(filters=filters)

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


# --- Teams: assignments, agreement, time on task ------------------------------------------------


def assigned_queues(*, user) -> list[TrajectoryQuerySet]:
    """The user's assignments that have quota left, oldest first, each as an ordered queue.

    An assignment's decisions are the user's reviews since it was made on the items its filters
    select in any review status (a decided item has left the pending queue).
    """
    queues = []
    for assignment in Assignment.objects.filter(annotator=user):
        filters = QueueFilters(**assignment.filters)
        done = Review.objects.filter(
            annotator=user,
            adjudication=False,
            decided_at__gte=assignment.created_at,
            trajectory__in=queue_trajectories(filters=replace(filters, status=""))
            .order_by()
            .values("pk"),
        ).count()
        if done < assignment.quota:
            queues.append(queue_trajectories(filters=filters))
    return queues


def assignments_progress() -> list[dict[str, Any]]:
    """Every assignment with its decisions so far, for the progress page."""
    rows = []
    for assignment in Assignment.objects.select_related("annotator", "created_by"):
        filters = QueueFilters(**assignment.filters)
        done = Review.objects.filter(
            annotator=assignment.annotator_id,
            adjudication=False,
            decided_at__gte=assignment.created_at,
            trajectory__in=queue_trajectories(filters=replace(filters, status=""))
            .order_by()
            .values("pk"),
        ).count()
        rows.append({"assignment": assignment, "done": min(done, assignment.quota)})
    return rows


def _live_reviews(round_id: int | None) -> QuerySet[Review]:
    reviews = Review.objects.filter(superseded=False, adjudication=False)
    return reviews.filter(trajectory__round_id=round_id) if round_id else reviews


def review_agreement(*, round_id: int | None = None) -> dict[str, Any]:
    """How often annotators agree, on the trajectories two or more of them reviewed.

    Per pair of annotators: the items both decided, the share they decided alike and Cohen's κ
    (scikit-learn); over everyone: Krippendorff's α, nominal (the `krippendorff` package), which
    allows any number of reviewers per item. κ and α are None where undefined (one decision
    only, as when everybody approved everything).
    """
    from krippendorff import alpha as krippendorff_alpha
    from sklearn.metrics import cohen_kappa_score

    decisions: dict[int, dict[str, str]] = defaultdict(dict)
    for item, who, decision in _live_reviews(round_id).values_list(
        "trajectory_id", "annotator__username", "decision"
    ):
        decisions[item][who] = decision
    overlapping = [d for d in decisions.values() if len(d) > 1]
    annotators = sorted({who for d in overlapping for who in d})
    pairs = []
    for a, b in itertools.combinations(annotators, 2):
        both = [(d[a], d[b]) for d in overlapping if a in d and b in d]
        if not both:
            continue
        first, second = zip(*both, strict=True)
        pairs.append(
            {
                "a": a,
                "b": b,
                "items": len(both),
                "agreement": sum(x == y for x, y in both) / len(both),
                "kappa": float(cohen_kappa_score(first, second))
                if len(set(first) | set(second)) > 1
                else None,
            }
        )
    values = sorted({v for d in overlapping for v in d.values()})
    alpha = None
    if len(values) > 1:
        codes = {value: float(i) for i, value in enumerate(values)}
        table = [[codes.get(d.get(who), math.nan) for d in overlapping] for who in annotators]
        alpha = float(krippendorff_alpha(reliability_data=table, level_of_measurement="nominal"))
    return {"items": len(overlapping), "pairs": pairs, "alpha": alpha}


def time_on_task(*, round_id: int | None = None) -> dict[str, Any]:
    """Per annotator (and per round): decisions, items per hour of time on task and the median
    seconds per decision, from each review's lease start to its decision; and the decisions
    per hour of the day, per annotator, for the chart."""
    reviews = _live_reviews(round_id).filter(started_at__isnull=False)
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    hourly: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for who, round_name, started, decided in reviews.values_list(
        "annotator__username", "trajectory__round__name", "started_at", "decided_at"
    ):
        seconds[who, round_name].append(max((decided - started).total_seconds(), 0.0))
        hour = timezone.localtime(decided).replace(minute=0, second=0, microsecond=0)
        hourly[who][hour] += 1

    def row(times: list[float], **names: str) -> dict[str, Any]:
        total_h = sum(times) / 3600
        return {
            **names,
            "decisions": len(times),
            "per_hour": len(times) / total_h if total_h else None,
            "median_s": statistics.median(times),
        }

    by_annotator: dict[str, list[float]] = defaultdict(list)
    for (who, _), times in seconds.items():
        by_annotator[who].extend(times)
    return {
        "annotators": [row(t, name=who) for who, t in sorted(by_annotator.items())],
        "rounds": [row(t, name=who, round=r) for (who, r), t in sorted(seconds.items())],
        "hourly": {who: sorted(hours.items()) for who, hours in sorted(hourly.items())},
    }


# --- Guidelines (workbench) -------------------------------------------------------------------


def trajectory_guidelines(*, trajectory: Trajectory) -> list[Dataset]:
    """Datasets whose guidelines apply to the trajectory: those of its candidate kind (D_seed,
    D_START) and the custom ones (they may take any approved trajectory), by name."""
    kinds = [DatasetKind.CUSTOM, *([trajectory.candidate] if trajectory.candidate else [])]
    return list(Dataset.objects.filter(kind__in=kinds).exclude(guidelines="").order_by("name"))

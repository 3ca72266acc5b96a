"""Search in the queue (Postgres full text; the LIKE fallback of the demo's SQLite) and the exact
queue counts Postgres keeps by triggers (`QueueCount`)."""

import itertools
import os
import subprocess
import sys

import pytest
from django.db import connection

from curation import review, selectors, services
from curation.models import Candidate, Flag, QueueCount, ReviewStatus, Trajectory
from curation.selectors import QueueFilters, SearchError
from tests.factories import ProblemFactory, RoundFactory, TrajectoryFactory, UserFactory

pytestmark = pytest.mark.django_db

THINK = "<think>\n{}\n</think>\n\nThe answer is \\boxed{{2}}."


def make(text: str, prompt: str = "What is 1 + 1?", **fields) -> Trajectory:
    return TrajectoryFactory(
        text=THINK.format(text),
        problem=ProblemFactory(prompt=prompt),
        candidate=Candidate.SEED,
        **fields,
    )


@pytest.fixture
def corpus():
    return {
        "sieve": make("I will sieve the primes below 100 with Python."),
        "factor": make("Factoring the polynomial gives two roots.", prompt="Factor x^2 - 1."),
        "both": make("A sieve, then factoring of each prime.", prompt="Count primes."),
        "triangle": make("The triangle's area is half the base times the height."),
    }


def found(query: str, **filters) -> set[int]:
    qs = selectors.queue_trajectories(filters=QueueFilters(status="", search=query, **filters))
    return set(qs.values_list("pk", flat=True))


def ids(corpus, *names) -> set[int]:
    return {corpus[name].pk for name in names}


def test_full_text_search_stems_words_and_reads_the_problem_prompt(corpus):
    assert found("sieve") == ids(corpus, "sieve", "both")
    assert found("primes") == ids(corpus, "sieve", "both")  # "prime" and "primes" stem alike
    assert found("factor") == ids(corpus, "factor", "both")  # the prompt "Factor x^2 - 1."
    assert found("sieve factoring") == ids(corpus, "both")  # every word
    assert found("sieve -factoring") == ids(corpus, "sieve")  # -excluded
    assert found("triangle or sieve") == ids(corpus, "sieve", "both", "triangle")
    assert found('"half the base"') == ids(corpus, "triangle")  # a phrase
    assert found('"base half"') == set()


def test_prompts_that_match_many_problems_are_a_subquery_with_the_same_answer(corpus, monkeypatch):
    monkeypatch.setattr(selectors, "SEARCH_LISTED_PROBLEMS", 0)
    assert found("factor") == ids(corpus, "factor", "both")
    assert found("primes") == ids(corpus, "sieve", "both")


def test_search_combines_with_the_queue_filters_and_its_counts(corpus):
    review.trajectory_decide(
        trajectory=corpus["both"],
        decision=ReviewStatus.APPROVED,
        user=UserFactory(),
        base_version=corpus["both"].version,
    )
    assert found("sieve", candidate=Candidate.SEED) == ids(corpus, "sieve", "both")
    pending = QueueFilters(search="sieve")  # the queue's default status: pending
    assert set(selectors.queue_trajectories(filters=pending).values_list("pk", flat=True)) == ids(
        corpus, "sieve"
    )
    assert selectors.queue_count(filters=pending) == 1
    facets = selectors.queue_facets(filters=pending)
    assert facets.total == 1
    assert facets.counts["status"] == {"pending": 1, "approved": 1}


def test_neighbours_and_the_next_claim_stay_within_the_search(corpus):
    filters = QueueFilters(search="sieve")
    sieve, factor, both = corpus["sieve"], corpus["factor"], corpus["both"]
    assert selectors.queue_neighbors(filters=filters, trajectory=factor) == (sieve.pk, both.pk)
    assert selectors.queue_neighbors(filters=filters, trajectory=sieve) == (None, both.pk)
    queue = selectors.queue_ordered(filters=filters)
    assert review.trajectory_claim_next(user=UserFactory(), queue=queue).pk == sieve.pk


@pytest.mark.parametrize("query", ["the of and", "&&& ||| !!!", "(((", "   "])
def test_a_search_with_nothing_to_look_for_says_so(corpus, query):
    if not query.strip():
        assert found(query) == set(Trajectory.objects.values_list("pk", flat=True))
        return
    with pytest.raises(SearchError, match="no words to search for"):
        found(query)


def test_an_overlong_search_is_refused(corpus):
    with pytest.raises(SearchError, match="at most 200 characters"):
        found("prime " * 40)


def test_search_syntax_characters_are_words_not_operators(corpus):
    assert found("sieve & (factoring | !") == ids(corpus, "both")
    assert found("sieve !triangle") == set()  # "!" is no negation: a word like the others
    assert found("sieve:*") == ids(corpus, "sieve", "both")


# --- The fallback without full text (SQLite) ------------------------------------------------


def like(query: str) -> set[int]:
    matches = selectors.search_like(Trajectory.objects.all(), query=query)
    return set(matches.values_list("pk", flat=True))


def test_the_like_fallback_reads_words_phrases_exclusions_and_or(corpus):
    assert like("SIEVE") == ids(corpus, "sieve", "both")  # case-insensitive
    assert like("Factor") == ids(corpus, "factor", "both")  # the prompt, and a substring
    assert like("sieve factoring") == ids(corpus, "both")
    assert like("sieve -factoring") == ids(corpus, "sieve")
    assert like("triangle OR sieve") == ids(corpus, "sieve", "both", "triangle")
    assert like('"half the base"') == ids(corpus, "triangle")
    assert like('"base half"') == set()
    assert like('-"two roots"') == ids(corpus, "sieve", "both", "triangle")
    with pytest.raises(SearchError, match="no words to search for"):
        like('or ""')


SQLITE_SEARCH = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from curation import selectors
from curation.models import Candidate, Policy, Problem, ProblemSet, Round, Trajectory
problems = ProblemSet.objects.create(name="s")
policy = Policy.objects.create(name="p", path="/m")
rnd = Round.objects.create(name="r", kind="seed", policy=policy)
for i, (text, prompt) in enumerate([("Sieve the primes", "Count"), ("A triangle", "Sieve it")]):
    problem = Problem.objects.create(problem_set=problems, external_id=str(i), domain="math",
                                     prompt=prompt)
    Trajectory.objects.create(round=rnd, problem=problem, hinted=True, sample_index=i, text=text,
                              original_text=text, finish_reason="stop", candidate=Candidate.SEED)
filters = selectors.QueueFilters(search="sieve -triangle")
print(selectors.queue_count(filters=filters), selectors.queue_facets(filters=filters).total,
      [t.text for t in selectors.queue_trajectories(filters=filters)])
"""


def test_the_demos_sqlite_migrates_and_searches_with_like(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_SEARCH],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "1 1 ['Sieve the primes']"


# --- Counts kept by triggers ----------------------------------------------------------------


def live_facets(filters: QueueFilters) -> tuple[selectors.QueueFacets, int]:
    """The facets grouped live from the trajectories (the path a search and SQLite take)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selectors, "_counts_from_cells", lambda _filters: False)
        return selectors.queue_facets(filters=filters), selectors.queue_count(filters=filters)


def assert_cells_match_live(round_id: int) -> None:
    filter_sets = [
        QueueFilters(),
        QueueFilters(status=""),
        QueueFilters(status="", flag="placeholder"),
        QueueFilters(status=ReviewStatus.APPROVED, correct="yes"),
        QueueFilters(status="", round=round_id, domain="code", flag="code_error"),
        QueueFilters(status="", candidate=Candidate.START, correct="unknown"),
    ]
    for filters in filter_sets:
        live, live_total = live_facets(filters)
        facets = selectors.queue_facets(filters=filters)
        assert facets == live, filters
        assert selectors.queue_count(filters=filters) == live_total == live.total, filters


def flag(trajectory: Trajectory, kind: str, start: int = 0) -> Flag:
    return Flag(trajectory=trajectory, kind=kind, message="m", start=start, end=start + 1)


def test_the_counts_table_follows_every_kind_of_write():
    assert connection.vendor == "postgresql"
    user = UserFactory()
    rounds = [RoundFactory(), RoundFactory()]
    problems = [ProblemFactory(domain=d) for d in ("math", "code", "science")]
    made = Trajectory.objects.bulk_create(
        Trajectory(
            round=rounds[i % 2],
            problem=problems[i % 3],
            hinted=True,
            sample_index=i,
            text=f"text {i}",
            original_text=f"text {i}",
            finish_reason="stop",
            candidate=[Candidate.SEED, Candidate.START, Candidate.NONE][i % 3],
            is_correct=[True, False, None, True][i % 4],
        )
        for i in range(24)
    )
    kinds = itertools.cycle(["placeholder", "code_error", "hint", "placeholder"])
    Flag.objects.bulk_create(flag(t, next(kinds), k) for t in made[:16] for k in range(2))
    assert_cells_match_live(rounds[0].pk)

    # Decisions, a candidate kind changed by update(), a score, a flag kind removed and added.
    for t in made[:6]:
        review.trajectory_decide(
            trajectory=t, decision=ReviewStatus.APPROVED, user=user, base_version=t.version
        )
    Trajectory.objects.filter(pk__in=[t.pk for t in made[6:12]]).update(candidate=Candidate.START)
    Trajectory.objects.filter(pk=made[12].pk).update(is_correct=None, round=rounds[1])
    Flag.objects.filter(trajectory=made[0], kind="placeholder").delete()
    Flag.objects.filter(trajectory=made[1]).update(kind="code_error")
    Flag.objects.bulk_create([flag(made[20], "placeholder"), flag(made[20], "placeholder", 5)])
    assert_cells_match_live(rounds[0].pk)

    # A problem moved to another domain, a claim (no count moves), deletions.
    problems[0].domain = "code"
    problems[0].save()
    review.trajectory_claim(trajectory=made[13], user=user)
    Flag.objects.filter(trajectory__in=made[14:16]).delete()
    Trajectory.objects.filter(pk__in=[t.pk for t in made[16:20]]).delete()
    assert_cells_match_live(rounds[1].pk)

    def cells():
        return sorted(
            QueueCount.objects.filter(n__gt=0).values_list(
                "round_id", "candidate", "domain", "review_status", "correct", "flag_kind", "n"
            )
        )

    kept = cells()
    with connection.cursor() as cursor:
        cursor.execute("SELECT curation_queue_counts_rebuild()")
    assert cells() == kept


def test_scoring_replaces_flags_and_the_counts_follow():
    t = make("x = ...\n```python\nvalue = ...\nprint(value)\n```\n")
    services.trajectory_score(trajectory=t)
    assert Flag.objects.filter(trajectory=t).exists()
    assert_cells_match_live(t.round_id)
    Trajectory.objects.filter(pk=t.pk).update(text=THINK.format("fixed"))
    t.refresh_from_db()
    services.trajectory_score(trajectory=t)
    assert_cells_match_live(t.round_id)

"""Server time of the workbench's two heaviest pages, through Django's full request stack.

    DATABASE_URL=postgres://... python -m tests.bench.bench_ui

- the trajectory page of a 32k-token trajectory (40 code cells with outputs, hints, flags);
- the queue page over 100k trajectories (60% of them candidates) with their flags; and the
  counts per filter value, which the page fetches in a second request once its rows are shown.

Everything lives in a throwaway database (`start_curation_bench`) on the configured Postgres
server, created, migrated and filled here, and dropped at the end. Texts of the 100k rows are
short: long texts are TOASTed out of the table's rows, and the queue never reads them.
Times are in-process (`django.test.Client`): middleware, view, queries and templates, no network.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable

BENCH_DB = "start_curation_bench"
TRAJECTORIES = 100_000
PROBLEMS = 10_000
ROUNDS = 5
REQUESTS = 40
WARMUP = 3
CELLS = 40  # a 32k-token trajectory: ~130k characters

_WORDS = [
    "the",
    "sum",
    "term",
    "value",
    "square",
    "root",
    "factor",
    "prime",
    "even",
    "odd",
    "integer",
    "ratio",
    "series",
    "bound",
    "limit",
    "check",
    "case",
    "modulo",
    "digit",
    "power",
    "divisor",
    "multiple",
    "triangle",
    "angle",
    "side",
    "area",
    "length",
    "circle",
    "radius",
    "chord",
    "point",
    "line",
    "slope",
    "equation",
    "solve",
    "substitute",
    "expand",
    "simplify",
    "compare",
    "assume",
    "therefore",
    "hence",
    "so",
    "but",
    "wait",
    "maybe",
    "perhaps",
    "indeed",
    "first",
    "next",
    "then",
    "finally",
    "again",
    "recall",
    "note",
    "that",
    "since",
    "because",
    "if",
    "when",
    "each",
    "every",
    "some",
    "all",
    "none",
    "both",
    "either",
    "neither",
    "total",
    "count",
    "number",
    "pair",
    "triple",
    "set",
    "list",
    "order",
    "sequence",
    "pattern",
    "step",
    "loop",
    "index",
    "result",
    "answer",
    "guess",
]


def _prose(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 18)))
        number = f" {rng.randint(2, 99999)} {rng.choice(_WORDS)} {rng.randint(2, 999)}."
        words.append(sentence.capitalize() + number)
        size += len(words[-1]) + 1
    return " ".join(words)


def long_trajectory_text(seed: int = 7) -> str:
    """About 32k tokens: reasoning runs, hints, code cells with outputs, a final answer."""
    rng = random.Random(seed)
    hint = "I can use Python to perform complex calculations for this problem."
    parts = ["<think>\n"]
    for cell in range(CELLS):
        parts.append(_prose(rng, rng.randint(800, 5000)) + " Wait, ")
        parts.append(hint if cell % 4 == 0 else "let me compute it.")
        lines = [f"values_{cell} = [i * i for i in range(1, {cell + 10})]"]
        lines += [f"acc_{cell}_{k} = sum(values_{cell}[:{k + 2}]) % {cell + 7}" for k in range(10)]
        lines += [f"print(acc_{cell}_{k})" for k in range(0, 10, 3)]
        if cell % 9 == 4:
            lines.append("def helper(x):\n    ...")
        parts.append("```python\n" + "\n".join(lines) + "\n```\n")
        outputs = "\n".join(str(rng.randint(0, 50)) for _ in range(4))
        parts.append(f"```output\n{outputs}\n```\n")
    parts.append(_prose(rng, 1500) + "\n</think>\n\nThe answer is \\boxed{385}.")
    return "".join(parts)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _timed(request: Callable[[], object]) -> list[float]:
    for _ in range(WARMUP):
        request()
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        request()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _admin_connection():
    import psycopg
    from django.db import connection

    params = connection.settings_dict
    return psycopg.connect(
        dbname="postgres",
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        autocommit=True,
    )


def _drop(admin) -> None:
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
        [BENCH_DB],
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')


def _populate() -> tuple[int, object]:
    """Rows of the bench; returns the long trajectory's id and a user who may review."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from curation.models import (
        Candidate,
        Flag,
        Policy,
        Problem,
        ProblemSet,
        ReviewStatus,
        Round,
        Trajectory,
    )
    from curation.roles import ANNOTATOR
    from curation.services import trajectory_score

    rng = random.Random(1)
    user = get_user_model().objects.create_user("bench", password="bench-password")
    user.groups.add(Group.objects.get(name=ANNOTATOR))
    others = [get_user_model().objects.create_user(f"annotator{i}") for i in range(5)]
    problem_set = ProblemSet.objects.create(name="bench")
    domains = ["math", "math", "code", "science"]
    problems = Problem.objects.bulk_create(
        Problem(
            problem_set=problem_set,
            external_id=f"p{i}",
            domain=domains[i % 4],
            prompt=f"Problem {i}: what is the sum of the first {i} squares?",
            answer=str(i),
        )
        for i in range(PROBLEMS)
    )
    policy = Policy.objects.create(name="bench-policy", path="/models/tiny")
    rounds = [
        Round.objects.create(name=f"bench-round-{r}", kind="seed", policy=policy)
        for r in range(ROUNDS)
    ]
    short = (
        "<think>\nLet me compute. Wait, I can use Python to perform complex calculations for "
        "this problem.```python\nprint(sum(i * i for i in range(11)))\n```\n```output\n385\n```\n"
        "</think>\n\nThe answer is \\boxed{385}."
    )
    statuses = (
        [ReviewStatus.PENDING] * 14
        + [ReviewStatus.APPROVED] * 4
        + [
            ReviewStatus.REJECTED,
            ReviewStatus.SKIPPED,
        ]
    )
    kinds = ["placeholder", "identifier_twin", "code_error", "undefined_name", "repetition"]
    per_round = TRAJECTORIES // ROUNDS
    batch: list[Trajectory] = []
    for number in range(TRAJECTORIES):
        round_index, index = divmod(number, per_round)
        problem = problems[index % PROBLEMS]
        candidate = rng.random() < 0.6
        status = rng.choice(statuses) if candidate else ReviewStatus.PENDING
        batch.append(
            Trajectory(
                round=rounds[round_index],
                problem=problem,
                hinted=index % 2 == 0,
                sample_index=index // PROBLEMS,
                text=short,
                original_text=short,
                finish_reason="stop",
                num_tokens=rng.randint(300, 32000),
                num_tool_calls=rng.randint(0, 6),
                is_correct=rng.choice([True, True, False, None]),
                flag_count=rng.choice([0, 0, 1, 1, 2, 3]),
                candidate=rng.choice([Candidate.SEED, Candidate.START]) if candidate else "",
                review_status=status,
                reviewed_by=rng.choice(others) if status != ReviewStatus.PENDING else None,
            )
        )
        if len(batch) == 5000:
            Trajectory.objects.bulk_create(batch)
            batch = []
    flags = []
    for pk, count in Trajectory.objects.values_list("pk", "flag_count").iterator(chunk_size=5000):
        for k in range(count):
            flags.append(
                Flag(trajectory_id=pk, kind=rng.choice(kinds), message="bench", start=k, end=k + 3)
            )
        if len(flags) >= 5000:
            Flag.objects.bulk_create(flags)
            flags = []
    Flag.objects.bulk_create(flags)

    text = long_trajectory_text()
    long = Trajectory.objects.create(
        round=rounds[0],
        problem=problems[0],
        hinted=True,
        sample_index=10_000,
        text=text,
        original_text=text,
        hints=["I can use Python to perform complex calculations for this problem.```python"],
        finish_reason="stop",
        num_tokens=32_768,
        num_tool_calls=CELLS,
        candidate=Candidate.SEED,
    )
    trajectory_score(trajectory=long)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum leaves a table that is read much
    return long.pk, user


def run_bench() -> dict[str, float]:
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client
    from django.urls import reverse

    connection = connections["default"]
    if connection.vendor != "postgresql":
        raise RuntimeError("bench_ui needs Postgres: set DATABASE_URL")
    original_name = connection.settings_dict["NAME"]
    admin = _admin_connection()
    _drop(admin)
    admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    connection.close()
    connection.settings_dict["NAME"] = BENCH_DB
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        long_pk, user = _populate()
        populate_s = time.perf_counter() - started
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        page_url = reverse("ui:trajectory", args=[long_pk])
        started = time.perf_counter()
        first = client.get(page_url)
        first_ms = (time.perf_counter() - started) * 1000
        if first.status_code != 200:
            raise RuntimeError(f"trajectory page answered {first.status_code}")
        page = _timed(lambda: client.get(page_url))
        queue_url = reverse("ui:queue")
        queue = _timed(lambda: client.get(queue_url))
        counts_url = reverse("ui:queue_counts")
        counts = _timed(lambda: client.get(counts_url, HTTP_HX_REQUEST="true"))
        narrow = {"status": "pending", "flag": "placeholder", "sort": "flags"}
        filtered = _timed(lambda: client.get(queue_url, narrow))
        filtered_counts = _timed(lambda: client.get(counts_url, narrow, HTTP_HX_REQUEST="true"))
        figures = {
            "ui.trajectory_page": page,
            "ui.queue_page": queue,
            "ui.queue_counts": counts,
            "ui.queue_filtered": filtered,
            "ui.queue_filtered_counts": filtered_counts,
        }
        results = {}
        for name, samples in figures.items():
            p50, p95 = _percentiles(samples)
            results[f"{name}_p50_ms"] = round(p50, 1)
            results[f"{name}_p95_ms"] = round(p95, 1)
        results["ui.trajectory_page_first_ms"] = round(first_ms, 1)
        results["ui.trajectory_page_kb"] = round(len(first.content) / 1024, 1)
        results["ui.bench_populate_s"] = round(populate_s, 1)
        return results
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original_name
        _drop(admin)
        admin.close()


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    django.setup()
    print(json.dumps(run_bench(), indent=2))

"""The workbench's speed, on the server and in the browser.

    DATABASE_URL=postgres://... python -m tests.bench.bench_ui

On the server, through Django's full request stack (`django.test.Client`, in-process: middleware,
view, queries and templates, no network):
- the trajectory page of a 130 kB, ~32k-token trajectory (69 code cells with outputs, hints,
  flags);
- the queue over 1M trajectories (an RFT round of 50k problems x 16 samples is 800k; 60% of them
  candidates) with their flags: its page, the counts per filter value (the page fetches them in
  a second request once its rows are shown), both narrowed by filters, and a full-text search
  (a word in 0.2% of the texts) with its counts, and a search for a word in every text.
In Chromium (Playwright, Debian's build), against a live server on the same data: navigation
start to the last segment of the long trajectory visible, median of 5 cold loads (a fresh
context each: no cache), and the bytes it moved.

Everything lives in a throwaway database (`start_curation_bench`) on the configured Postgres
server, created, migrated and filled here with INSERT ... SELECT generate_series (the triggers
that keep the queue's counts are off during the load, then the counts are rebuilt once), and
dropped at the end. Texts of the 1M rows are short: long texts are TOASTed out of the table's
rows, and the queue never reads them.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Callable

BENCH_DB = "start_curation_bench"
TRAJECTORIES = 1_000_000
PROBLEMS = 50_000
ROUNDS = 5
REQUESTS = 40
WARMUP = 3
CELLS = 69  # the trajectory: 69 cells with outputs, ~130k characters, ~32k tokens
RARE_WORDS = 500  # the searched word is one of these: each is in 1/500 of the texts
BROWSER_LOADS = 5
FLAG_KINDS = ["placeholder", "identifier_twin", "code_error", "undefined_name", "repetition"]

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
    """About 130k characters, ~32k tokens: reasoning runs, hints, code cells with outputs, a
    final answer."""
    rng = random.Random(seed)
    hint = "I can use Python to perform complex calculations for this problem."
    parts = ["<think>\n"]
    for cell in range(CELLS):
        parts.append(_prose(rng, rng.randint(400, 2100)) + " Wait, ")
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


def _insert_select(cursor, model, columns: dict, source: str, params=()) -> None:
    """INSERT INTO the model's table SELECT the `columns` (field name -> SQL, or (SQL, params))
    FROM `source`; every other field gets its default, so a field added later needs no change
    here."""
    from django.db import connection

    names, values, arguments = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.generated:
            continue
        names.append(connection.ops.quote_name(field.column))
        spec = columns.get(field.name)
        if spec is None:
            sql, sql_params = "%s", [field.get_db_prep_save(field.get_default(), connection)]
        elif isinstance(spec, str):
            sql, sql_params = spec, []
        else:
            sql, sql_params = spec
        values.append(sql)
        arguments.extend(sql_params)
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(names)}) "
        f"SELECT {', '.join(values)} FROM {source}"
    )
    cursor.execute(sql, [*arguments, *params])


def _populate() -> tuple[int, object]:
    """Rows of the bench; returns the long trajectory's id and a user who may review."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from curation.models import Candidate, Flag, Policy, Problem, ProblemSet, Round, Trajectory
    from curation.roles import ANNOTATOR
    from curation.services import trajectory_score

    user = get_user_model().objects.create_user("bench", password="bench-password")
    user.groups.add(Group.objects.get(name=ANNOTATOR))
    others = [get_user_model().objects.create_user(f"annotator{i}").pk for i in range(5)]
    problem_set = ProblemSet.objects.create(name="bench")
    policy = Policy.objects.create(name="bench-policy", path="/models/tiny")
    rounds = [
        Round.objects.create(name=f"bench-round-{r}", kind="seed", policy=policy).pk
        for r in range(ROUNDS)
    ]
    per_round = TRAJECTORIES // ROUNDS
    short = (
        "<think>\nThe {word} of the squares:```python\nprint(sum(i * i for i in range(11)))"
        "\n```\n```output\n385\n```\n</think>\n\nThe answer is \\boxed{385}."
    )
    # A rare word per row, for the search: zqaa, zqba, ... (RARE_WORDS of them).
    word = f"mod(g.i, {RARE_WORDS})"
    rare = f"'zq' || chr(97 + mod({word}, 26)) || chr(97 + {word} / 26)"
    text = "replace(%s, '{word}', " + rare + ")"
    tables = ["curation_trajectory", "curation_flag", "curation_problem"]
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT setseed(0.42)")
        # A bulk load: no triggers (the rows are consistent by construction; the counts are
        # rebuilt once at the end) and no secondary indexes (each is built once afterwards).
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = "
            "(quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)",
            [tables],
        )
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        _insert_select(
            cursor,
            Problem,
            {
                "problem_set": ("%s", [problem_set.pk]),
                "external_id": "'p' || g.i",
                "domain": "(ARRAY['math', 'math', 'code', 'science'])[1 + mod(g.i, 4)]",
                "prompt": "'Problem ' || g.i || ': what is the sum of the first ' || g.i "
                "|| ' squares?'",
                "answer": "g.i::text",
            },
            "generate_series(0, %s) AS g(i)",
            [PROBLEMS - 1],
        )
        first_problem = Problem.objects.order_by("pk").values_list("pk", flat=True).first()
        statuses = ["pending"] * 14 + ["approved"] * 4 + ["rejected", "skipped"]
        random_columns = ", ".join(f"random() AS r{k}" for k in range(7))
        _insert_select(
            cursor,
            Trajectory,
            {
                "round": (f"(%s::bigint[])[1 + g.i / {per_round}]", [rounds]),
                "problem": (f"%s + mod(g.i, {PROBLEMS})", [first_problem]),
                "hinted": f"mod(g.i / {PROBLEMS}, 2) = 0",
                "sample_index": f"g.i / {PROBLEMS}",
                "text": (text, [short]),
                "original_text": (text, [short]),
                "finish_reason": "'stop'",
                "num_tokens": "300 + floor(g.r0 * 31700)::int",
                "num_tool_calls": "floor(g.r1 * 7)::int",
                "is_correct": "CASE WHEN g.r2 < 0.5 THEN true WHEN g.r2 < 0.75 THEN false END",
                "flag_count": "(ARRAY[0, 0, 1, 1, 2, 3])[1 + floor(g.r3 * 6)::int]",
                "candidate": (
                    "CASE WHEN g.r4 >= 0.6 THEN '' WHEN g.r5 < 0.5 THEN %s ELSE %s END",
                    [Candidate.SEED, Candidate.START],
                ),
                "review_status": (
                    "CASE WHEN g.r4 >= 0.6 THEN 'pending' "
                    "ELSE (%s::text[])[1 + floor(g.r6 * 20)::int] END",
                    [statuses],
                ),
                "reviewed_by": (
                    "CASE WHEN g.r4 < 0.6 AND g.r6 >= 0.7 THEN (%s::bigint[])[1 + mod(g.i, 5)] END",
                    [others],
                ),
                "created_at": "now()",
                "updated_at": "now()",
            },
            f"(SELECT i, {random_columns} FROM generate_series(0, %s) AS s(i)) AS g",
            [TRAJECTORIES - 1],
        )
        _insert_select(
            cursor,
            Flag,
            {
                "trajectory": "t.id",
                "kind": ("(%s::text[])[1 + mod(t.id * 7 + k, 5)]", [FLAG_KINDS]),
                "message": "'bench'",
                "start": "k",
                "end": "k + 3",
            },
            "curation_trajectory t CROSS JOIN LATERAL generate_series(0, t.flag_count - 1) k",
        )
        for _name, definition in indexes:
            cursor.execute(definition)
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
        cursor.execute("SELECT curation_queue_counts_rebuild()")

    text = long_trajectory_text()
    long = Trajectory.objects.create(
        round_id=rounds[0],
        problem_id=first_problem,
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


# Scrolls the last segment into view until it is laid out there (the page may still be arriving,
# and its own script may move the view); true on the first frame it is.
LAST_SEGMENT_VISIBLE = """(selector) => {
  const last = document.querySelector(selector);
  if (!last) return false;
  last.scrollIntoView({block: "end"});
  const box = last.getBoundingClientRect();
  return box.height > 0 && box.top < innerHeight && box.bottom > 0;
}"""


def _last_segment(html: str) -> str:
    """The selector of the page's last shown segment (blank ones are hidden)."""
    ids = re.findall(r'<div id="(seg-\d+)"[^>]*class="seg ([^"]*)"', html)
    return "#" + [seg for seg, classes in ids if "seg-blank" not in classes][-1]


def _browser_figures(user, page_url: str, last_selector: str) -> dict[str, float]:
    """Cold loads of the trajectory page in Chromium against a live server on the bench data."""
    import os

    from django.test import Client
    from django.test.testcases import LiveServerThread
    from playwright.sync_api import sync_playwright

    from tests.webapp.conftest import CHROMIUM, CHROMIUM_ARGS

    # Requests for static files go through the middleware too (WhiteNoise, then compression),
    # as in production, instead of Django's test-only static handler.
    server = LiveServerThread("127.0.0.1", lambda app: app)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    base = f"http://127.0.0.1:{server.port}"
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop is in this thread
    visible_ms, transfer_kb, nodes = [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(BROWSER_LOADS):
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
                page = context.new_page()
                page.goto(base + page_url, wait_until="commit")
                page.wait_for_function(
                    LAST_SEGMENT_VISIBLE, arg=last_selector, polling="raf", timeout=60_000
                )
                visible_ms.append(page.evaluate("performance.now()"))
                page.wait_for_load_state("load")
                transfer_kb.append(
                    page.evaluate(
                        "performance.getEntriesByType('navigation')"
                        ".concat(performance.getEntriesByType('resource'))"
                        ".reduce((sum, e) => sum + e.transferSize, 0)"
                    )
                    / 1024
                )
                nodes.append(page.evaluate("document.getElementsByTagName('*').length"))
                context.close()
            browser.close()
    finally:
        server.terminate()
    return {
        "ui.browser_full_text_ms": round(statistics.median(visible_ms), 1),
        "ui.trajectory_page_transfer_kb": round(statistics.median(transfer_kb), 1),
        "ui.trajectory_page_dom_nodes": statistics.median(nodes),
    }


def run_bench() -> dict[str, float]:
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client
    from django.urls import reverse

    from curation import selectors

    connection = connections["default"]
    if connection.vendor != "postgresql":
        raise RuntimeError("bench_ui needs Postgres: set DATABASE_URL")
    original = {key: connection.settings_dict[key] for key in ("NAME", "CONN_MAX_AGE")}
    admin = _admin_connection()
    _drop(admin)
    admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    connection.close()
    # Requests reuse their connection, as a deployment should run (CONN_MAX_AGE > 0): with 0
    # each one also pays a new connection and cold catalog caches, tens of ms here.
    connection.settings_dict.update(NAME=BENCH_DB, CONN_MAX_AGE=600)
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
        counts_url = reverse("ui:queue_counts")
        narrow = {"status": "pending", "flag": "placeholder", "sort": "flags"}
        search = {"status": "pending", "search": "zqcf"}  # one of the RARE_WORDS
        if not selectors.queue_count(filters=selectors.QueueFilters(search="zqcf")):
            raise RuntimeError("the search found nothing")
        figures = {
            "ui.trajectory_page": page,
            "ui.queue_page": _timed(lambda: client.get(queue_url)),
            "ui.queue_counts": _timed(lambda: client.get(counts_url, HTTP_HX_REQUEST="true")),
            "ui.queue_filtered": _timed(lambda: client.get(queue_url, narrow)),
            "ui.queue_filtered_counts": _timed(
                lambda: client.get(counts_url, narrow, HTTP_HX_REQUEST="true")
            ),
            "ui.search": _timed(lambda: client.get(queue_url, search)),
            "ui.search_counts": _timed(
                lambda: client.get(counts_url, search, HTTP_HX_REQUEST="true")
            ),
            # A word of every text and every prompt: counted up to the cap, not per filter.
            "ui.search_broad": _timed(
                lambda: client.get(queue_url, {"status": "pending", "search": "squares"})
            ),
        }
        results = {}
        for name, samples in figures.items():
            p50, p95 = _percentiles(samples)
            results[f"{name}_p50_ms"] = round(p50, 1)
            results[f"{name}_p95_ms"] = round(p95, 1)
        results["ui.trajectory_page_first_ms"] = round(first_ms, 1)
        results["ui.trajectory_page_kb"] = round(len(first.content) / 1024, 1)
        results["ui.bench_populate_s"] = round(populate_s, 1)
        last_segment = _last_segment(first.content.decode())
        results.update(_browser_figures(user, page_url, last_segment))
        return results
    finally:
        connection.close()
        connection.settings_dict.update(original)
        _drop(admin)
        admin.close()


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    django.setup()
    print(json.dumps(run_bench(), indent=2))

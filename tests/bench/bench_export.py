"""Export benchmark: streaming a frozen dataset version, against a raw server-side cursor.

Figures (`run_bench()`, or `python -m tests.bench.bench_export` for JSON on stdout):

- `export.rows_per_s`: the `messages` JSONL export of 100k items of 8 KB text through the REST
  endpoint (Django's test client, token auth, the `StreamingHttpResponse` consumed to the end:
  everything but the socket), best of 5;
- `export.raw_cursor_rows_per_s`: psycopg reading the same columns of the same rows over a named
  (server-side) cursor in a transaction, 2000 rows per fetch, doing nothing with them, best of 5;
- `export.over_raw_cursor`: their ratio (goal >= 0.8);
- `export.preference_rows_per_s`: the `preference` JSONL export of the same version through the
  same endpoint, best of 3: every item is a correction pair (its 8 KB text over the short one
  its trajectory was generated with) and REJECTIONS trajectories of the problem that stood
  rejected at the freeze make decision pairs, X-Row-Count's pair count included;
- `export.rss_1m_over_100k`: peak RSS of a `manage.py export_dataset` process exporting 1M rows
  over the same for 100k rows (goal about 1), with both figures in MB and the 1M export's rows/s.

Honest data at a bearable cost. The throughput rows carry 8 KB of md5 hex per item (a pool of
1000 distinct texts, each row storing its own copy: Postgres TOAST neither shares values between
rows nor compresses random hex), so every row really moves 8 KB from disk through psycopg. Ten
times that for the memory runs would be 8 GB to write and read on a 2-core machine, so the 1M and
100k memory runs both use 8 KB texts that TOAST compresses to about a hundred bytes (a repeated
sentence plus the row number, lz4 in this database): the exporter still fetches, decompresses,
encodes and writes 8 KB per row, which is what its memory sees, while the database stays small.
Both memory runs use the same kind of row, so the ratio isolates the row count. Trajectories,
which the export never reads, keep short texts. Set-up skips foreign-key checks (rows are cloned
from existing ids), which costs a minute otherwise and changes nothing measured.

Everything happens in a throwaway database (`start_curation_bench_export` on the server of
DATABASE_URL), created, migrated and dropped here. The work runs in a subprocess pointed at it,
and each memory run in a fresh process reading its own `ru_maxrss`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
BENCH_DB = "start_curation_bench_export"
THROUGHPUT_ROWS = 100_000
REJECTIONS = 10_000
PREFERENCE_RUNS = 3
MEMORY_ROWS = (100_000, 1_000_000)
TEXT_CHARS = 8192
RUNS = 5

RSS_CHILD = """
import resource, sys, time
import django
django.setup()
from django.core.management import call_command
started = time.perf_counter()
call_command("export_dataset", sys.argv[1], "--version", sys.argv[2], "--output", "/dev/null")
elapsed = time.perf_counter() - started
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed)
"""


def _server_url() -> str:
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/start_curation")


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def run_bench() -> dict[str, float]:
    admin_url = _with_database(_server_url(), "postgres")
    bench_url = _with_database(_server_url(), BENCH_DB)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    try:
        env = {**os.environ, "DATABASE_URL": bench_url, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
        proc = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_export", "--inside"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


# --- Inside the bench database -------------------------------------------------------------------


def _clone_sql(model, template_id: int, overrides: dict[str, str], source: str) -> str:
    """INSERT ... SELECT copying a template row once per row of `source` (aliased `s`), with
    some columns replaced by SQL expressions: robust to columns added to the model later."""
    table = model._meta.db_table
    columns = [
        f.column
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "generated", False)  # the database computes those
    ]
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(overrides.get(c, f'tpl."{c}"') for c in columns)
    return (
        f'INSERT INTO "{table}" ({names}) SELECT {values} FROM "{table}" tpl '
        f"CROSS JOIN ({source}) s WHERE tpl.id = {int(template_id)}"
    )


def _populate() -> dict[str, int]:
    """Trajectories and three frozen versions; returns each version's number by name."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from curation import models

    problem_set = models.ProblemSet.objects.create(name="bench")
    problem = models.Problem.objects.create(
        problem_set=problem_set, external_id="p", domain="math", prompt="What is 2 + 2?" * 8
    )
    round_ = models.Round.objects.create(
        name="bench", kind="seed", policy=models.Policy.objects.create(name="p", path="/p")
    )
    template = models.Trajectory.objects.create(
        round=round_,
        problem=problem,
        hinted=True,
        sample_index=0,
        text="short",
        original_text="short",
        finish_reason="stop",
        is_correct=True,
    )
    versions = {}
    for name, size in (("throughput", THROUGHPUT_ROWS), *((f"m{n}", n) for n in MEMORY_ROWS)):
        dataset = models.Dataset.objects.create(name=name, kind="custom")
        versions[name] = models.DatasetVersion.objects.create(
            dataset=dataset, number=1, content_hash=f"{name:0>64}", size=size
        )
    item = models.DatasetItem.objects.create(
        version=versions["throughput"],
        trajectory=template,
        problem=problem,
        prompt=problem.prompt,
        text="x",
        mask_spans=[[120, 410], [2048, 2600]],
        is_correct=True,
    )
    count = max(MEMORY_ROWS)
    with transaction.atomic(), connection.cursor() as cursor:
        # Rows built from existing ids cannot break a foreign key: skipping the per-row checks
        # (which Postgres would run at commit) saves a minute of set-up, and nothing measured.
        cursor.execute("SET LOCAL session_replication_role = replica")
        # lz4 compresses the memory runs' repetitive texts 4x faster than the default pglz;
        # neither compresses the throughput rows' hex, which stay 8 KB on disk.
        cursor.execute("ALTER TABLE curation_datasetitem ALTER COLUMN text SET COMPRESSION lz4")
        cursor.execute(
            _clone_sql(
                models.Trajectory,
                template.pk,
                {"sample_index": "s.g"},
                f"SELECT g FROM generate_series(1, {count}) g",
            )
        )
        cursor.execute(
            "CREATE TEMP TABLE pool AS SELECT k, (SELECT string_agg(md5(k || ':' || i), '') "
            f"FROM generate_series(1, {TEXT_CHARS // 32}) i) AS body "
            "FROM generate_series(0, 999) k"
        )
        sentence = "All work and no play makes Jack a dull boy. "
        compressible = f"repeat('{sentence}', {TEXT_CHARS // len(sentence)}) || s.n"
        for name, size, text in (
            ("throughput", THROUGHPUT_ROWS, "pool.body"),
            *((f"m{n}", n, compressible) for n in MEMORY_ROWS),
        ):
            source = (
                f"SELECT t.id AS tid, t.n, pool.body FROM (SELECT id, row_number() OVER "
                f"(ORDER BY id) AS n FROM curation_trajectory WHERE id <> {template.pk} "
                f"ORDER BY id LIMIT {size}) t JOIN pool ON pool.k = t.n % 1000"
            )
            overrides = {
                "version_id": str(versions[name].pk),
                "trajectory_id": "s.tid",
                "text": text.replace("pool.body", "s.body"),
            }
            cursor.execute(_clone_sql(models.DatasetItem, item.pk, overrides, source))
        cursor.execute("DELETE FROM curation_datasetitem WHERE id = %s", [item.pk])
        # Trajectories after the throughput members, rejected before the freeze: decision pairs.
        rejection = models.Revision.objects.create(
            trajectory=template,
            author=get_user_model().objects.create(username="bench-reviewer"),
            action="decide_rejected",
            reason="Wrong final answer",
            before_text="short",
            after_text="short",
            base_version=1,
        )
        frozen_at = versions["throughput"].created_at - timedelta(hours=1)
        models.Revision.objects.filter(pk=rejection.pk).update(created_at=frozen_at)
        cursor.execute(
            _clone_sql(
                models.Revision,
                rejection.pk,
                {"trajectory_id": "s.id"},
                f"SELECT id FROM curation_trajectory WHERE id <> {template.pk} ORDER BY id "
                f"OFFSET {THROUGHPUT_ROWS} LIMIT {REJECTIONS - 1}",  # the template's is one
            )
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE curation_datasetitem")
        cursor.execute("VACUUM ANALYZE curation_trajectory")
    return {name: version.number for name, version in versions.items()}


def _raw_cursor_rows_per_s(version_id: int) -> float:
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    sql = (
        "SELECT problem_id, trajectory_id, prompt, text, mask_spans::text, is_correct "
        "FROM curation_datasetitem WHERE version_id = %s ORDER BY id"
    )
    with psycopg.connect(**params) as conn, conn.transaction():
        cursor = conn.cursor(name="bench_raw")
        cursor.itersize = 2000
        started = time.perf_counter()
        cursor.execute(sql, [version_id])
        rows = sum(1 for _ in cursor)
        elapsed = time.perf_counter() - started
    assert rows == THROUGHPUT_ROWS, rows
    return rows / elapsed


def _api_rows_per_s(client, url: str) -> float:
    """Drains the response as a server would send it; the rows' content is checked by tests."""
    started = time.perf_counter()
    response = client.get(url, {"format": "messages"})
    assert response.status_code == 200, response.status_code
    size = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    rows = int(response["X-Row-Count"])
    assert rows == THROUGHPUT_ROWS and size > rows * TEXT_CHARS, (rows, size)
    return rows / elapsed


def _preference_rows_per_s(client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url, {"format": "preference"})
    assert response.status_code == 200, response.status_code
    size = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    rows = int(response["X-Row-Count"])
    assert rows == THROUGHPUT_ROWS + REJECTIONS and size > THROUGHPUT_ROWS * TEXT_CHARS, rows
    return rows / elapsed


def _peak_rss(name: str, number: int) -> tuple[float, float]:
    """(peak RSS in MB, rows/s) of a fresh `export_dataset` process."""
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, name, str(number)],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    kib, elapsed = proc.stdout.split()
    return int(kib) / 1024, float(elapsed)


def _inside() -> dict[str, float]:
    import django

    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from curation.models import DatasetVersion
    from curation.roles import CURATOR
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    numbers = _populate()
    populate_s = time.perf_counter() - started
    print(f"bench_export: rows written in {populate_s:.0f} s", file=sys.stderr, flush=True)

    user = UserFactory(username="bench")
    user.groups.add(Group.objects.get(name=CURATOR))
    token = Token.objects.create(user=user).key
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Token {token}")
    url = f"/api/datasets/throughput/versions/{numbers['throughput']}/export"
    version_id = DatasetVersion.objects.get(dataset__name="throughput").pk
    raw, api = [], []
    for _ in range(RUNS):  # alternated, so that both see the same machine
        raw.append(_raw_cursor_rows_per_s(version_id))
        api.append(_api_rows_per_s(client, url))

    preference = [_preference_rows_per_s(client, url) for _ in range(PREFERENCE_RUNS)]

    small_mb, _ = _peak_rss("m100000", numbers["m100000"])
    big_mb, big_s = _peak_rss("m1000000", numbers["m1000000"])
    return {
        "export.rows_per_s": max(api),
        "export.raw_cursor_rows_per_s": max(raw),
        "export.over_raw_cursor": max(api) / max(raw),
        "export.preference_rows_per_s": max(preference),
        "export.rss_100k_mb": small_mb,
        "export.rss_1m_mb": big_mb,
        "export.rss_1m_over_100k": big_mb / small_mb,
        "export.rows_per_s_1m_compressible": 1_000_000 / big_s,
        "export.populate_s": populate_s,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--inside"]:
        print(json.dumps(_inside()))
    else:
        print(json.dumps(run_bench()))

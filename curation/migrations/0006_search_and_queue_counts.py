"""Full-text search and exact queue counts at a million trajectories.

- `search_vector` on problems and trajectories: tsvectors Postgres generates from the prompt and
  the text, with GIN indexes (Postgres only: SQLite has neither tsvector nor GIN; its column is
  NULL and the queue searches with LIKE there).
- `QueueCount`: trajectories per cell of the queue's filters (round, kind of candidate, domain,
  review status, correctness; and per flag kind), maintained by statement-level triggers with
  transition tables, so one statement that writes 100k rows updates the counts once, and every
  write path (services, `QuerySet.update`, `bulk_create`, raw SQL) keeps them exact.
  `curation_queue_counts_rebuild()` recomputes them from scratch (here for existing rows, and
  after a bulk load that ran with the triggers disabled).
"""

import django.contrib.postgres.search
from django.db import migrations, models

import curation.models

# The cell of a trajectory row `t` (its problem `p`): the columns QueueCount is keyed by.
CELL = """t.round_id, t.candidate, p.domain, t.review_status,
    CASE WHEN t.is_correct THEN 'yes' WHEN NOT t.is_correct THEN 'no' ELSE 'unknown' END
    AS correct"""
COLUMNS = "round_id, candidate, domain, review_status, correct, flag_kind"

# Adds the deltas (`deltas`: the cell columns, flag_kind, d) to the counts, in key order so that
# concurrent writers lock the rows they share in one order.
UPSERT = f"""
    INSERT INTO curation_queuecount AS c ({COLUMNS}, n)
    SELECT {COLUMNS}, SUM(d) FROM deltas GROUP BY {COLUMNS} HAVING SUM(d) <> 0 ORDER BY {COLUMNS}
    ON CONFLICT ({COLUMNS}) DO UPDATE SET n = c.n + EXCLUDED.n;
"""

# The cells of some trajectories (`moved`: id, sign, and the old or new row's columns), once with
# flag_kind "" and once per kind of flag they have.
WITH_KINDS = """
    SELECT m.round_id, m.candidate, m.domain, m.review_status, m.correct, '' AS flag_kind, m.d
    FROM moved m
    UNION ALL
    SELECT m.round_id, m.candidate, m.domain, m.review_status, m.correct, k.kind, m.d
    FROM moved m JOIN (SELECT DISTINCT trajectory_id, kind FROM curation_flag
                       WHERE trajectory_id IN (SELECT id FROM moved)) k ON k.trajectory_id = m.id
"""


def _function(name: str, body: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{body}
    RETURN NULL;
END $$;
"""


TRAJECTORY_INSERT = _function(
    "curation_queue_counts_trajectory_insert",
    f"""
    WITH deltas AS (
        SELECT {CELL}, '' AS flag_kind, 1 AS d
        FROM new_rows t JOIN curation_problem p ON p.id = t.problem_id
    )
    {UPSERT}""",
)

TRAJECTORY_DELETE = _function(
    "curation_queue_counts_trajectory_delete",
    f"""
    WITH moved AS (
        SELECT t.id, {CELL}, -1 AS d
        FROM old_rows t JOIN curation_problem p ON p.id = t.problem_id
    ), deltas AS ({WITH_KINDS})
    {UPSERT}""",
)

# Only rows whose cell changed move (a claim, an edit or a score of the same correctness does not
# touch the counts, so it takes no lock on them).
TRAJECTORY_UPDATE = _function(
    "curation_queue_counts_trajectory_update",
    f"""
    WITH changed AS (
        SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.round_id, o.candidate, o.review_status, o.is_correct, o.problem_id)
              IS DISTINCT FROM
              (n.round_id, n.candidate, n.review_status, n.is_correct, n.problem_id)
    ), moved AS (
        SELECT t.id, {CELL}, -1 AS d
        FROM old_rows t JOIN curation_problem p ON p.id = t.problem_id
        WHERE t.id IN (SELECT id FROM changed)
        UNION ALL
        SELECT t.id, {CELL}, 1 AS d
        FROM new_rows t JOIN curation_problem p ON p.id = t.problem_id
        WHERE t.id IN (SELECT id FROM changed)
    ), deltas AS ({WITH_KINDS})
    {UPSERT}""",
)

# A problem whose domain changes moves its trajectories to the new domain's cells.
PROBLEM_UPDATE = _function(
    "curation_queue_counts_problem_update",
    f"""
    WITH moved AS (
        SELECT t.id, {CELL}, -1 AS d
        FROM old_rows p JOIN new_rows n ON n.id = p.id AND n.domain <> p.domain
        JOIN curation_trajectory t ON t.problem_id = p.id
        UNION ALL
        SELECT t.id, {CELL}, 1 AS d
        FROM new_rows p JOIN old_rows o ON o.id = p.id AND o.domain <> p.domain
        JOIN curation_trajectory t ON t.problem_id = p.id
    ), deltas AS ({WITH_KINDS})
    {UPSERT}""",
)

# A trajectory counts once per flag kind: +1 when its first flag of a kind appears, -1 when its
# last one goes. `now` is after the statement; before = now - inserted + deleted.
FLAG_CHANGE = """
    WITH pairs AS (
        SELECT trajectory_id, kind, SUM(added) AS added, SUM(removed) AS removed FROM (
            SELECT trajectory_id, kind, 1 AS added, 0 AS removed FROM {new}
            UNION ALL
            SELECT trajectory_id, kind, 0, 1 FROM {old}
        ) changes GROUP BY trajectory_id, kind
    ), counted AS (
        SELECT pairs.*, (SELECT COUNT(*) FROM curation_flag f
                         WHERE f.trajectory_id = pairs.trajectory_id AND f.kind = pairs.kind) AS now
        FROM pairs
    ), deltas AS (
        SELECT {cell}, c.kind AS flag_kind,
               CASE WHEN c.now > 0 AND c.now - c.added + c.removed = 0 THEN 1
                    WHEN c.now = 0 AND c.now - c.added + c.removed > 0 THEN -1 ELSE 0 END AS d
        FROM counted c JOIN curation_trajectory t ON t.id = c.trajectory_id
        JOIN curation_problem p ON p.id = t.problem_id
    )
    {upsert}"""

EMPTY = "(SELECT NULL::bigint AS trajectory_id, NULL::varchar AS kind WHERE false) AS nothing"


def _flag_function(name: str, new: str, old: str) -> str:
    return _function(name, FLAG_CHANGE.format(new=new, old=old, cell=CELL, upsert=UPSERT))


FLAG_INSERT = _flag_function("curation_queue_counts_flag_insert", "new_rows", EMPTY)
FLAG_DELETE = _flag_function("curation_queue_counts_flag_delete", EMPTY, "old_rows")
FLAG_UPDATE = _flag_function("curation_queue_counts_flag_update", "new_rows", "old_rows")

REBUILD = f"""
CREATE OR REPLACE FUNCTION curation_queue_counts_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM curation_queuecount;
    INSERT INTO curation_queuecount ({COLUMNS}, n)
    SELECT {CELL}, '', COUNT(*) FROM curation_trajectory t
    JOIN curation_problem p ON p.id = t.problem_id GROUP BY 1, 2, 3, 4, 5
    UNION ALL
    SELECT {CELL}, k.kind, COUNT(*)
    FROM (SELECT DISTINCT trajectory_id, kind FROM curation_flag) k
    JOIN curation_trajectory t ON t.id = k.trajectory_id
    JOIN curation_problem p ON p.id = t.problem_id GROUP BY 1, 2, 3, 4, 5, 6;
$$;
"""

TRIGGERS = [
    ("curation_trajectory", "INSERT", "new_rows", "", "trajectory_insert"),
    ("curation_trajectory", "DELETE", "", "old_rows", "trajectory_delete"),
    ("curation_trajectory", "UPDATE", "new_rows", "old_rows", "trajectory_update"),
    ("curation_problem", "UPDATE", "new_rows", "old_rows", "problem_update"),
    ("curation_flag", "INSERT", "new_rows", "", "flag_insert"),
    ("curation_flag", "DELETE", "", "old_rows", "flag_delete"),
    ("curation_flag", "UPDATE", "new_rows", "old_rows", "flag_update"),
]
FUNCTIONS = [
    TRAJECTORY_INSERT,
    TRAJECTORY_DELETE,
    TRAJECTORY_UPDATE,
    PROBLEM_UPDATE,
    FLAG_INSERT,
    FLAG_DELETE,
    FLAG_UPDATE,
]


def _trigger_sql(table: str, event: str, new: str, old: str, name: str) -> str:
    tables = [f"NEW TABLE AS {new}" if new else "", f"OLD TABLE AS {old}" if old else ""]
    referencing = " ".join(part for part in tables if part)
    return (
        f"CREATE TRIGGER curation_queue_counts_{name} AFTER {event} ON {table} "
        f"REFERENCING {referencing} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION curation_queue_counts_{name}();"
    )


def install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in [
        "CREATE INDEX problem_search ON curation_problem USING gin (search_vector);",
        "CREATE INDEX traj_search ON curation_trajectory USING gin (search_vector);",
        *FUNCTIONS,
        REBUILD,
        *(_trigger_sql(*trigger) for trigger in TRIGGERS),
        "SELECT curation_queue_counts_rebuild();",
    ]:
        schema_editor.execute(sql)


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _event, _new, _old, name in TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS curation_queue_counts_{name} ON {table};")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS curation_queue_counts_{name}();")
    schema_editor.execute("DROP FUNCTION IF EXISTS curation_queue_counts_rebuild();")
    schema_editor.execute("DROP INDEX IF EXISTS problem_search;")
    schema_editor.execute("DROP INDEX IF EXISTS traj_search;")


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0005_comments_suggestions_guidelines"),
    ]

    operations = [
        migrations.AddField(
            model_name="problem",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=curation.models.TextSearchVector("prompt", config="english"),
                output_field=django.contrib.postgres.search.SearchVectorField(null=True),
            ),
        ),
        migrations.AddField(
            model_name="trajectory",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=curation.models.TextSearchVector("text", config="english"),
                output_field=django.contrib.postgres.search.SearchVectorField(null=True),
            ),
        ),
        migrations.CreateModel(
            name="QueueCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("round_id", models.BigIntegerField()),
                ("candidate", models.CharField(blank=True, max_length=8)),
                ("domain", models.CharField(max_length=16)),
                ("review_status", models.CharField(max_length=8)),
                ("correct", models.CharField(help_text="yes, no or unknown", max_length=8)),
                ("flag_kind", models.CharField(blank=True, max_length=32)),
                ("n", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=(
                            "round_id",
                            "candidate",
                            "domain",
                            "review_status",
                            "correct",
                            "flag_kind",
                        ),
                        name="queue_count_cell",
                    )
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="trajectory",
            options={
                "ordering": ["id"],
                "permissions": [
                    ("review_trajectory", "Can claim, approve and reject trajectories"),
                    ("take_over_claim", "Can take over another annotator's claim"),
                    (
                        "bulk_review_trajectory",
                        "Can approve, reject, reassign and re-score in bulk",
                    ),
                ],
                "verbose_name_plural": "trajectories",
            },
        ),
        migrations.RunPython(install, uninstall),
    ]

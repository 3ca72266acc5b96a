"""Faults and load: runs the chaos suite (tests/chaos, `pytest -m chaos`) with the 5-minute load
over 100k trajectories, and sums what its tests record.

    python -m tests.bench reliability      # also `make chaos`

- reliability.lost, reliability.duplicated: trajectories planned but never stored, and stored
  twice, summed over the faults (a rollout worker SIGKILLed on Redis and on the filesystem
  broker + SQLite, Redis restarted, Postgres restarted, an engine endpoint killed). Goal 0 and 0.
- load.p95_ms.<action>: 95th percentile of 20 annotators' claim, open, edit, stale_save, rerun
  and approve against gunicorn; load.errors: 5xx, transport errors and unexpected answers.
- reliability.failed_tests: chaos tests that failed (their figures count when they got that far).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOAD = {"LOAD_SECONDS": "300", "LOAD_TRAJECTORIES": "100000"}


def run_bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_reliability_") as tmp:
        figures_path = Path(tmp) / "figures.jsonl"
        env = {**os.environ, **LOAD, "CHAOS_FIGURES": str(figures_path)}
        env.setdefault("TEST_DATABASE_NAME", "test_bench_reliability")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "chaos",
             "tests/chaos", "-rf"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        print(proc.stdout[-4000:], flush=True)
        lines = figures_path.read_text().splitlines() if figures_path.exists() else []
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        for key, value in json.loads(line).items():
            totals[key] += value
    totals["reliability.failed_tests"] = proc.stdout.count("\nFAILED ")
    return dict(totals)


if __name__ == "__main__":
    print(json.dumps(run_bench()))

"""The paper's direction on held-out problems: the cells of tests/test_fidelity.py.

    python -m tests.bench fidelity

Runs that whole-loop test (Postgres, Redis, a Celery worker, vLLM, the sandbox, TRL; the
arithmetic tiny policy, built once and cached) and records what it measured: pass@1 on the
held-out problems of the base, the base with Hint-infer, START-0 and START (no hints unless
named), the share of trajectories with at least one executed tool call, and n.

- fidelity.base, fidelity.base_hinted, fidelity.start0, fidelity.start: pass@1 (0-1)
- fidelity.base_tool_rate, fidelity.start0_tool_rate, fidelity.start_tool_rate
- fidelity.start0_masked, fidelity.start0_masked_tool_rate: START-0 trained with hints masked
- fidelity.n: held-out problems per cell
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_fidelity_") as tmp:
        results = Path(tmp) / "fidelity.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_fidelity.py",
            ],
            cwd=ROOT,
            env={**os.environ, "FIDELITY_RESULTS": str(results)},
        )
        if not results.exists():
            raise RuntimeError(f"tests/test_fidelity.py exited {proc.returncode} without figures")
        return json.loads(results.read_text())


if __name__ == "__main__":
    print(json.dumps(run_bench(), indent=2))

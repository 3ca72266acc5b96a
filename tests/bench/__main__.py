"""`make bench`: run every benchmark in its own process, write .bench/results.json, print a table.

Each module under tests/bench/ exposes `run_bench() -> dict[str, float]` with flat, dotted keys.
A separate process per module keeps their memory (a vLLM engine, a million exported rows) and
their failures apart; a failed benchmark is reported and the others still run.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".bench" / "results.json"
MODULES = [
    "sandbox",
    "scoring",
    "rollout",
    "training",
    "export",
    "ui",
    "fidelity",
    "engines",
    "reliability",
]

RUNNER = """
import json, sys
import django
django.setup()
import importlib
module = importlib.import_module(sys.argv[1])
print("BENCH-RESULT " + json.dumps(module.run_bench()), flush=True)
"""


def run_module(name: str) -> dict[str, float]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, f"tests.bench.bench_{name}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    raise RuntimeError(f"bench_{name} exited {proc.returncode} without results")


def main() -> int:
    only = sys.argv[1:] or MODULES
    results: dict[str, float] = {}
    failed = []
    for name in only:
        started = time.monotonic()
        print(f"== bench_{name}", flush=True)
        try:
            figures = run_module(name)
        except RuntimeError as exc:
            print(f"   FAILED: {exc}", flush=True)
            failed.append(name)
            continue
        results.update(figures)
        print(f"   {len(figures)} figures in {time.monotonic() - started:.0f} s", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and sys.argv[1:] else {}
    RESULTS.write_text(json.dumps({**previous, **results}, indent=2, sort_keys=True) + "\n")
    width = max(map(len, results), default=10)
    print()
    for key, value in sorted(results.items()):
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

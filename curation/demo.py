"""The embedded demo's status while it gets ready: one small JSON file that the demo's first-round
command writes and the web pages read (the path comes from the DEMO_STATUS_FILE setting).

    {"stage": "building", "percent": 40}   building the demo policy… 40 %
    {"stage": "launching"}                  the policy is ready, the first round is being queued
    {"stage": "ready", "round_id": 3}       the first round runs
    {"stage": "failed", "error": "..."}     it did not get there (the log says why)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoStatus:
    stage: str
    percent: int | None = None
    round_id: int | None = None
    error: str = ""

    @property
    def final(self) -> bool:
        return self.stage in ("ready", "failed")

    @property
    def message(self) -> str:
        if self.stage == "building":
            return f"building the demo policy… {self.percent or 0} %"
        if self.stage == "launching":
            return "the demo policy is ready: launching the first round…"
        if self.stage == "ready":
            return "the demo's first round is running: candidates arrive in the queue as it goes"
        return f"the demo could not start its first round: {self.error}"


def demo_status_write(*, path: Path, status: DemoStatus) -> None:
    """Replace the file at once (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fields = {k: v for k, v in status.__dict__.items() if v not in (None, "")}
    partial.write_text(json.dumps(fields), encoding="utf-8")
    os.replace(partial, path)


def demo_status_read(*, path: Path) -> DemoStatus | None:
    """The status, or None when there is no file (not a demo) or it cannot be read."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        return DemoStatus(**fields)
    except (OSError, ValueError, TypeError):
        return None

"""Simulated annotators against gunicorn: claim, open, edit, re-run, a stale save on purpose,
approve, in a loop, over a queue of seeded candidates.

    figures = run_load(base_url, annotators=[(name, password), ...], duration_s=60)

Each annotator logs in and posts what the workbench's htmx posts (`HX-Request`), so a stale
save is answered 409 with the merge panel, as in the browser. Every edit carries a unique
marker, so afterwards `lost_edits` can say whether each save the server accepted is a Revision,
and that no refused (stale) save is one.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.chaos.services import free_port
from tests.conftest import ARTIFACTS, ROOT, wait_until

ACTIONS = ("claim", "open", "edit", "stale_save", "rerun", "approve")
CODE_CELL = 2  # the code segment of tests.training.jobs.TEXT (think, hint, code, output, ...)
VERSION = re.compile(rb'name="base_version" value="(\d+)"')


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)  # 5xx, transport errors, unexpected answers
    accepted: list[str] = field(default_factory=list)  # markers of saves answered 200
    refused: list[str] = field(default_factory=list)  # markers of stale saves answered 409
    claims: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    def p95_ms(self, action: str) -> float:
        values = sorted(self.latencies[action])
        return 1000 * values[min(len(values) - 1, int(0.95 * len(values)))] if values else 0.0


def seed_queue(n: int, *, batch: int = 5000) -> int:
    """`n` pending D_seed candidates of one round (the trajectory the SFT tests use); the id of
    the first."""
    from curation.models import Candidate, Problem, ProblemSet, ReviewStatus, Round, Trajectory
    from tests.factories import PolicyFactory
    from tests.training.jobs import HINT, TEXT

    problem_set = ProblemSet.objects.create(name="load")
    problem = Problem.objects.create(
        problem_set=problem_set, external_id="load-1", prompt="2 + 2?", answer="4", domain="math"
    )
    round_ = Round.objects.create(name="load", kind="seed", policy=PolicyFactory())
    first = None
    for start in range(0, n, batch):
        rows = Trajectory.objects.bulk_create(
            Trajectory(
                round=round_,
                problem=problem,
                hinted=True,
                sample_index=i,
                text=TEXT,
                original_text=TEXT,
                hints=[HINT],
                finish_reason="stop",
                is_correct=True,
                candidate=Candidate.SEED,
                review_status=ReviewStatus.PENDING,
            )
            for i in range(start, min(n, start + batch))
        )
        first = first or rows[0].pk
    return first


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "gunicorn-load.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "-b",
             f"127.0.0.1:{port}", "--workers", "3", "--threads", "4", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/login/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    if not wait_until(answers, timeout=120) or proc.poll() is not None:
        proc.kill()
        raise RuntimeError(f"gunicorn did not start; see {Path(log)}")
    return proc, url


async def _annotator(url: str, name: str, password: str, until: float, out: Outcome) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def call(action: str, method: str, path: str, expect: int, **data) -> httpx.Response:
            headers = {}
            if method == "POST":
                data["csrfmiddlewaretoken"] = client.cookies.get("csrftoken", "")
                headers = {"HX-Request": "true"} if action != "login" else {}
            started = time.monotonic()
            try:
                response = await client.request(method, path, data=data or None, headers=headers)
            except httpx.HTTPError as exc:
                out.errors.append(f"{name} {action} {path}: {exc!r}")
                raise
            out.latencies[action].append(time.monotonic() - started)
            if response.status_code != expect:
                out.errors.append(f"{name} {action} {path}: {response.status_code}")
            return response

        await client.get("/login/")
        await call("login", "POST", "/login/", 302, username=name, password=password)
        n = 0
        while time.monotonic() < until:
            n += 1
            try:
                claimed = await call("claim", "POST", "/next/", 200)
                match = re.search(r"/t/(\d+)/", claimed.headers.get("hx-redirect", ""))
                if match is None:
                    out.errors.append(f"{name} claim: nothing claimed")
                    return
                pk = int(match.group(1))
                out.claims[pk].add(name)
                page = f"/t/{pk}/"
                version = int(VERSION.search((await call("open", "GET", page, 200)).content)[1])
                edit = f"{page}segments/{CODE_CELL}/edit/"
                marker = f"{name}-{n}"
                saved = await call("edit", "POST", edit, 200, code=f"print(2 + 2)  # {marker}",
                                   base_version=version)  # fmt: skip
                if saved.status_code == 200:
                    out.accepted.append(marker)
                stale = await call("stale_save", "POST", edit, 409, base_version=version,
                                   code=f"print(2 + 2)  # stale {marker}")  # fmt: skip
                if stale.status_code == 409:
                    out.refused.append(f"stale {marker}")
                await call("rerun", "POST", f"{page}segments/{CODE_CELL}/run/", 200,
                           base_version=version + 1)  # fmt: skip
                version = int(VERSION.search((await call("open", "GET", page, 200)).content)[1])
                await call("approve", "POST", f"{page}decide/", 200, decision="approved",
                           base_version=version)  # fmt: skip
            except (httpx.HTTPError, TypeError):
                continue  # recorded as an error; the next item


def run_load(url: str, annotators: list[tuple[str, str]], *, duration_s: float) -> Outcome:
    out = Outcome()
    until = time.monotonic() + duration_s

    async def main() -> None:
        await asyncio.gather(*(_annotator(url, n, p, until, out) for n, p in annotators))

    asyncio.run(main())
    return out


def lost_edits(out: Outcome) -> tuple[int, int]:
    """(accepted saves that are no Revision, refused saves that are one)."""
    from curation.models import Revision

    texts = "\n".join(Revision.objects.values_list("after_text", flat=True))
    lost = sum(f"# {marker}\n" not in texts for marker in out.accepted)
    leaked = sum(f"# {marker}\n" in texts for marker in out.refused)
    return lost, leaked


def shared_leases(out: Outcome) -> int:
    return sum(len(holders) > 1 for holders in out.claims.values())

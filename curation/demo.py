"""The embedded demo: the rounds it launches once its policy is built, and its status while it
gets ready: one small JSON file that the demo's first-round command writes and the web pages read
(the path comes from the DEMO_STATUS_FILE setting).

    {"stage": "building", "percent": 40}   building the demo policy… 40 %
    {"stage": "launching"}                  the policy is ready, the rounds are being queued
    {"stage": "ready", "round_id": 3}       the first round runs, the evaluation rounds after it
    {"stage": "failed", "error": "..."}     it did not get there (the log says why)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from curation import services
from curation.models import Policy, ProblemSet, Round, RoundKind

# The demo's evaluation is small, so that its table and test-time scaling chart fill within a
# few minutes of the seed round on two cores: one greedy sample per problem, short completions
# (the tiny policy's trajectories take about 200 tokens), three end-of-thinking hint counts.
DEMO_EVAL_MAX_TOKENS = 512
DEMO_SWEEP_END_REPEATS = (0, 1, 2)


@dataclass(frozen=True)
class DemoRounds:
    seed: Round
    evaluation: Round
    sweep: list[Round]

    @property
    def all(self) -> list[Round]:
        return [self.seed, self.evaluation, *self.sweep]


def demo_rounds_launch(
    *, name: str, policy: Policy, train_set: ProblemSet, eval_set: ProblemSet, user=None
) -> DemoRounds:
    """The demo's rounds, created and launched through the services a curator's actions call:
    a seed round of `policy` on `train_set` (the annotators' candidates); an eval round without
    and with hints (the evaluation table's rows) and an eval sweep over end-of-thinking hint
    counts (the test-time scaling chart), both on the held-out `eval_set` and on `train_set`
    (the tiny policy has learnt those: its line in the chart is not flat at zero). Their chunks
    queue in that order, so the rollout worker serves the queue's candidates first.

    Rounds are named `<name>-seed`, `<name>-eval` and `<name>-tts-end<k>`; a taken name is a
    ConflictError.
    """
    taken = Round.objects.filter(name__in=[f"{name}-seed", f"{name}-eval"]).exists()
    if taken:
        raise services.ConflictError(f"the demo's rounds {name}-* exist already")
    chunk_size = settings.ROLLOUT_CHUNK_SIZE
    seed = services.round_create(
        name=f"{name}-seed", kind=RoundKind.SEED, policy=policy, problem_sets=[train_set], user=user
    )
    seed = services.round_launch(round=seed, chunk_size=chunk_size, user=user)
    evaluation = services.round_create(
        name=f"{name}-eval",
        kind=RoundKind.EVAL,
        policy=policy,
        problem_sets=[eval_set, train_set],
        user=user,
        samples_plain=1,
        samples_hinted=1,
        max_tokens=DEMO_EVAL_MAX_TOKENS,
    )
    evaluation = services.round_launch(round=evaluation, chunk_size=chunk_size, user=user)
    sweep = services.evaluation_sweep_launch(
        name=f"{name}-tts",
        policy=policy,
        problem_sets=[eval_set, train_set],
        end_repeats=DEMO_SWEEP_END_REPEATS,
        user=user,
        max_tokens=DEMO_EVAL_MAX_TOKENS,
    )
    return DemoRounds(seed=seed, evaluation=evaluation, sweep=sweep)


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
            return "the demo policy is ready: launching its rounds…"
        if self.stage == "ready":
            return (
                "the demo's first round is running: candidates arrive in the queue as it goes; "
                "an eval round and an eval sweep follow it and fill the Evaluation page"
            )
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

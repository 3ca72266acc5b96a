"""The whole Hint-RFT loop, driven through the same services a curator uses from the admin.

base ─seed round→ D_seed ─SFT→ START-0 ─RFT round→ D_START ─SFT→ START ─eval rounds→ table

Each policy is evaluated as soon as it exists (while its engine is warm): the base without and
with Hint-infer, START-0 and START without hints. With `ablations`, the paper's controls as well:
START + Hint-infer, and the RFT control without tools (the paper's QwQ-RFT: the base samples the
training problems with no tools and no hints, its correct samples are curated and trained on
like D_START, and the policy it makes is evaluated like START).

Each stage waits for the workers (rollouts on the rollout queue, SFT on the train queue) by
polling the database, exactly as the admin's progress pages do. Approval is the annotators' work:
`approve` decides how it happens (scripted for tests, or waiting for people in the UI).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model

from curation import datasets, services
from curation.models import (
    ACTIVE_STATUSES,
    Dataset,
    DatasetKind,
    DatasetVersion,
    Policy,
    ProblemSet,
    ReviewStatus,
    Round,
    RoundKind,
    RunStatus,
    SFTJob,
    Trajectory,
)
from curation.review import trajectory_decide
from curation.selectors import evaluation_table

Say = Callable[[str], None]
Approve = Callable[[Round, str], None]


class LoopError(RuntimeError):
    """A stage ended without what the next stage needs; the message says which and why."""


@dataclass
class LoopConfig:
    name: str  # prefix of every round, dataset and policy the loop creates
    train_sets: list[ProblemSet]
    eval_sets: list[ProblemSet]
    base: Policy
    rft_samples: int = 4
    # Overrides of the seed round's settings (the paper's: greedy, one hinted and one plain
    # sample per problem), e.g. more hinted samples at a temperature so that more problems
    # find a clean hinted solution.
    seed_options: dict = field(default_factory=dict)
    # Overrides of every eval round's settings (e.g. a tool-call cap).
    eval_options: dict = field(default_factory=dict)
    max_tokens: int = 1024
    sft_config: dict = field(default_factory=lambda: {"num_train_epochs": 3, "learning_rate": 1e-4})
    start_from_base: bool = True  # the paper fine-tunes the base model on D_START
    ablations: bool = False  # START + Hint-infer and the RFT control without tools (QwQ-RFT)
    timeout_s: float = 3600


@dataclass
class LoopResult:
    seed_round: Round
    d_seed: DatasetVersion
    start0: Policy
    rft_round: Round
    d_start: DatasetVersion
    start: Policy
    eval_rounds: list[Round]
    rft_control: Policy | None = None  # with ablations: the RFT control's policy

    def table(self):
        return evaluation_table(rounds=self.eval_rounds)


def _wait(describe: Callable[[], tuple[bool, str]], *, timeout_s: float, say: Say) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        finished, line = describe()
        if line != last:
            say(line)
            last = line
        if finished:
            return
        if time.monotonic() > deadline:
            raise LoopError(f"timed out after {timeout_s:.0f} s: {line}")
        time.sleep(1)


def run_round(
    cfg: LoopConfig, *, kind: str, policy: Policy, sets, say: Say, name: str = "", **options
) -> Round:
    name = name or (
        f"{cfg.name}-{kind}-{policy.name}" + ("-hints" if options.get("samples_hinted") else "")
    )
    options = {"max_tokens": cfg.max_tokens, **options}
    round_ = services.round_create(
        name=name, kind=kind, policy=policy, problem_sets=sets, **options
    )
    services.round_launch(round=round_, chunk_size=settings.ROLLOUT_CHUNK_SIZE)

    def describe() -> tuple[bool, str]:
        services.round_chunks_recover()  # a lost worker's chunk goes back on the queue
        round_.refresh_from_db()
        done = round_.trajectories.count()
        return (
            round_.status not in ACTIVE_STATUSES,
            f"{name}: {round_.status} {done}/{round_.total}",
        )

    _wait(describe, timeout_s=cfg.timeout_s, say=say)
    if round_.status != RunStatus.DONE:
        raise LoopError(f"round {name} ended {round_.status}: {round_.error}")
    return round_


def freeze(
    cfg: LoopConfig, *, kind: str, round_: Round, approve: Approve, say: Say, name: str = ""
) -> DatasetVersion:
    candidates = round_.trajectories.candidates("d_seed" if kind == DatasetKind.SEED else "d_start")
    proposed = candidates.count()
    funnel = ", ".join(f"{s['step']}: {s['count']}" for s in round_.selection.get("funnel", []))
    if not proposed:
        raise LoopError(f"round {round_.name} proposed no candidates ({funnel})")
    say(f"{round_.name} proposed {proposed} candidates ({funnel})")
    approve(round_, kind)
    dataset, _ = Dataset.objects.get_or_create(
        name=name or f"{cfg.name}-{kind}", defaults={"kind": kind}
    )
    version = datasets.dataset_version_freeze(dataset=dataset, rounds=[round_])
    say(f"froze {version}: {version.size} trajectories, hash {version.content_hash[:12]}")
    return version


def train(
    cfg: LoopConfig,
    *,
    version: DatasetVersion,
    base: Policy,
    output: str,
    say: Say,
    config: dict | None = None,
) -> Policy:
    """SFT `base` on `version` into a policy named `output` (`config`: the loop's by default)."""
    job = services.sft_job_launch(
        dataset_version=version,
        base_policy=base,
        output_name=output,
        config=cfg.sft_config if config is None else config,
    )

    def describe() -> tuple[bool, str]:
        job.refresh_from_db()
        loss = job.metrics.get("loss")
        loss_text = f", loss {loss:.3f}" if loss is not None else ""
        line = f"SFT → {output}: {job.status} step {job.step}/{job.total_steps}{loss_text}"
        return job.status not in ACTIVE_STATUSES, line

    _wait(describe, timeout_s=cfg.timeout_s, say=say)
    if job.status != RunStatus.DONE:
        raise LoopError(f"SFT job for {output} ended {job.status}: {job.error}")
    return SFTJob.objects.get(pk=job.pk).output_policy


def evaluate(cfg: LoopConfig, *, policy: Policy, say: Say, hinted: bool = False) -> Round:
    """An eval round of `policy` on the held-out sets, with Hint-infer or without hints."""
    samples = {"samples_hinted": 1, "samples_plain": 0} if hinted else {}
    return run_round(
        cfg,
        kind=RoundKind.EVAL,
        policy=policy,
        sets=cfg.eval_sets,
        say=say,
        **{**cfg.eval_options, **samples},
    )


def run_loop(cfg: LoopConfig, *, approve: Approve, say: Say = print) -> LoopResult:
    seed = run_round(
        cfg, kind=RoundKind.SEED, policy=cfg.base, sets=cfg.train_sets, say=say, **cfg.seed_options
    )
    evals = [
        evaluate(cfg, policy=cfg.base, say=say),
        evaluate(cfg, policy=cfg.base, say=say, hinted=True),
    ]
    d_seed = freeze(cfg, kind=DatasetKind.SEED, round_=seed, approve=approve, say=say)
    start0 = train(cfg, version=d_seed, base=cfg.base, output=f"{cfg.name}-START-0", say=say)

    rft = run_round(
        cfg,
        kind=RoundKind.RFT,
        policy=start0,
        sets=cfg.train_sets,
        say=say,
        samples_plain=cfg.rft_samples,
    )
    evals.append(evaluate(cfg, policy=start0, say=say))
    d_start = freeze(cfg, kind=DatasetKind.START, round_=rft, approve=approve, say=say)
    start_base = cfg.base if cfg.start_from_base else start0
    start = train(cfg, version=d_start, base=start_base, output=f"{cfg.name}-START", say=say)
    evals.append(evaluate(cfg, policy=start, say=say))
    result = LoopResult(seed, d_seed, start0, rft, d_start, start, evals)
    if cfg.ablations:
        evals.append(evaluate(cfg, policy=start, say=say, hinted=True))
        result.rft_control = rft_control(cfg, approve=approve, say=say)
        evals.append(evaluate(cfg, policy=result.rft_control, say=say))
    return result


def rft_control(cfg: LoopConfig, *, approve: Approve, say: Say) -> Policy:
    """The paper's QwQ-RFT: the recipe of START without tools, to tell the tools' gain from the
    extra data's. The base samples the training problems with no hints and no code run."""
    round_ = run_round(
        cfg,
        kind=RoundKind.RFT,
        policy=cfg.base,
        sets=cfg.train_sets,
        say=say,
        name=f"{cfg.name}-rft-control",
        samples_plain=cfg.rft_samples,
        tool_config={"run_code": "none"},
    )
    version = freeze(
        cfg,
        kind=DatasetKind.START,
        round_=round_,
        approve=approve,
        say=say,
        name=f"{cfg.name}-rft-control",
    )
    return train(cfg, version=version, base=cfg.base, output=f"{cfg.name}-RFT", say=say)


SCRIPT_USER = "hint-rft-loop"


def approve_all_scripted(round_: Round, kind: str) -> None:
    """Stand-in for annotators in tests and unattended runs: approve every pending candidate.

    Decisions are revisions like any annotator's, authored by a user that cannot log in.
    """
    user, created = get_user_model().objects.get_or_create(username=SCRIPT_USER)
    if created:
        user.set_unusable_password()
        user.save()
    for trajectory in round_.trajectories.pending_review():
        trajectory_decide(
            trajectory=trajectory,
            decision=ReviewStatus.APPROVED,
            user=user,
            base_version=trajectory.version,
            reason="approved by the scripted loop",
        )


def wait_for_annotators(say: Say, *, url: str) -> Approve:
    """Approval by people: wait until the round's candidates are all reviewed in the UI."""

    def approve(round_: Round, kind: str) -> None:
        def describe() -> tuple[bool, str]:
            pending = round_.trajectories.pending_review().count()
            approved = Trajectory.objects.filter(round=round_).approved().count()
            line = f"{round_.name}: {pending} candidates to review at {url}, {approved} approved"
            return pending == 0, line

        _wait(describe, timeout_s=24 * 3600, say=say)

    return approve

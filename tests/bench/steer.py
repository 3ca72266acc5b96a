"""Steering the tiny policy to the paper's trajectory lengths, inside the engine (benchmarks only).

The tiny policy writes ~120-token trajectories and, past its training length, text without
structure. The long workload needs trajectories of thousands of tokens with a few tool calls and
conjunctions, so a logits processor steers each request along a plan (``Plan``): stretches of
free generation (the model's own tokens; fences, end markers and conjunctions banned so that the
structure stays the plan's) and, between them, short forced token runs (a conjunction, a code
fence, ``</think>``, the end of sequence). The engine still generates every token of the
trajectory, with its usual cost; only which tokens it may pick is steered. Plain generation runs
under the same processor (bans only), so both carry its overhead.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

PLAN, BAN = "steer_plan", "steer_ban"
PROCESSOR = f"{__name__}:SteerProcessor"


class _Steer:
    """One request: ``plan`` is flat, ``[free, k, id_1, ..., id_k, free, k, ...]``: ``free``
    tokens of the model's choice (``ban`` excluded), then ``k`` forced ones; after the plan, bans
    only."""

    def __init__(self, plan: list[int], ban: list[int]) -> None:
        self.forced: dict[int, int] = {}
        position = i = 0
        while i < len(plan):
            free, count = plan[i], plan[i + 1]
            position += free
            for token in plan[i + 2 : i + 2 + count]:
                self.forced[position] = token
                position += 1
            i += 2 + count
        self.ban = torch.tensor(ban, dtype=torch.long)

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        forced = self.forced.get(len(output_ids))
        if forced is not None:
            logits.fill_(float("-inf"))
            logits[forced] = 0.0
        else:
            logits[self.ban] = float("-inf")
        return logits


class SteerProcessor(AdapterLogitsProcessor):
    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: Any) -> _Steer | None:
        args = params.extra_args or {}
        if PLAN not in args:
            return None
        return _Steer(list(args[PLAN]), list(args[BAN]))

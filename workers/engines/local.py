"""vLLM in this process: ``AsyncLLM`` with continuous batching, one request per rollout turn.

vLLM starts its engine core in a child process; scripts that create a LocalEngine must guard
their entry point with ``if __name__ == "__main__":``. Call ``close()`` (or use ``async with``):
AsyncLLM left to the garbage collector prints errors at interpreter exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from workers.engines.base import (
    EngineConfig,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
)

# The CPU attention backend needs KV blocks in multiples of 32 tokens; vLLM's prefix cache reuses
# whole blocks only, so the smallest block keeps the most of a resumed prefix (0.87-0.89 cache
# hit rate measured on resumes, against ~0.70 with the default 128).
CPU_BLOCK_SIZE = 32
# vLLM's token budget per step (max_num_batched_tokens) when chunked prefill is on.
DEFAULT_BATCHED_TOKENS = 2048
# Loaded by the engine core process (by name: it imports vLLM).
HINT_STOPS_PROCESSOR = "workers.engines.processors:HintStopsProcessor"

# vLLM's engine core is a child process that outlives a worker killed with SIGKILL: re-parented to
# init, it keeps the model's memory for good. This watchdog, which the kernel signals when the
# thread that started it dies (PR_SET_PDEATHSIG), kills the engine's processes then. `close()`
# kills the watchdog first (with SIGKILL, which it cannot catch), so it never outlives the engine
# and never signals a recycled pid.
_WATCHDOG = """
import ctypes, os, signal, sys
parent, pids = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
def stop(*_):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != parent:  # the parent died before the signal was armed
    stop()
while True:
    signal.pause()
"""


def _children() -> set[int]:
    import psutil  # vLLM's own dependency

    return {child.pid for child in psutil.Process().children()}


def _die_with_this_process(pids: set[int]) -> subprocess.Popen | None:
    """Start the watchdog over `pids` (the processes vLLM just started)."""
    if not pids:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *map(str, sorted(pids))],
        stdin=subprocess.DEVNULL,
    )


def engine_args(config: EngineConfig, *, logits_processors: Sequence[str] = ()) -> Any:
    """vLLM's AsyncEngineArgs for ``config`` (imports vLLM); ``logits_processors``: more, by
    name, applied before the hint stops' (which must have the last word on a request's end)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform

    cpu = current_platform.is_cpu()
    block_size = config.block_size
    if block_size is None and cpu:
        block_size = CPU_BLOCK_SIZE
    chunked = config.enable_chunked_prefill
    if chunked is None and cpu:
        chunked = False
    kwargs: dict[str, Any] = {
        "model": config.model,
        "tokenizer": config.tokenizer,
        "max_model_len": config.max_model_len,
        "seed": config.seed,
        "block_size": block_size,
        "enable_prefix_caching": config.enable_prefix_caching,
        "enforce_eager": config.enforce_eager,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "disable_log_stats": True,
        "logits_processors": [*logits_processors, HINT_STOPS_PROCESSOR],
    }
    if config.max_num_seqs is not None:
        kwargs["max_num_seqs"] = config.max_num_seqs
    if chunked is not None:
        kwargs["enable_chunked_prefill"] = chunked
        if not chunked:  # every prompt must then fit in one step's token budget
            kwargs["max_num_batched_tokens"] = max(config.max_model_len, DEFAULT_BATCHED_TOKENS)
    return AsyncEngineArgs(**kwargs)


def sampling_params(params: GenerationParams) -> Any:
    """vLLM's SamplingParams for one request (imports vLLM)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=1,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop),
        min_tokens=params.min_tokens,
        ignore_eos=params.ignore_eos,
        include_stop_str_in_output=True,
        output_kind=RequestOutputKind.FINAL_ONLY,
        extra_args={
            **(params.extra_args or {}),
            **(params.hint_stops.to_args() if params.hint_stops else {}),
        }
        or None,
    )


class LocalEngine:
    """An ``Engine`` backed by vLLM's AsyncLLM in this process."""

    hint_stops = True  # the engine runs workers.engines.processors.HintStopsProcessor

    def __init__(self, config: EngineConfig, *, logits_processors: Sequence[str] = ()) -> None:
        if config.kv_cache_gib is not None:
            # Read by the engine core process when it sizes the KV cache on CPU.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
        from vllm.v1.engine.async_llm import AsyncLLM

        self.config = config
        self.name = config.model
        before = _children()
        self._llm = AsyncLLM.from_engine_args(
            engine_args(config, logits_processors=logits_processors)
        )
        self._watchdog = _die_with_this_process(_children() - before)
        self.tokenizer = self._llm.get_tokenizer()
        self.max_model_len: int = self._llm.model_config.max_model_len
        self.block_size: int = self._llm.vllm_config.cache_config.block_size
        self._closed = False

    async def check(self) -> None:
        if self._closed:
            raise EngineUnavailable("the local vLLM engine is closed")
        try:
            await self._llm.check_health()
        except Exception as exc:
            raise EngineUnavailable(f"the local vLLM engine is dead: {exc}") from exc

    async def generate(self, prompt_ids: list[int], params: GenerationParams) -> Generation:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        if self._closed:
            raise EngineUnavailable("the local vLLM engine is closed")
        started = time.perf_counter()
        final = None
        try:
            async for output in self._llm.generate(
                TokensPrompt(prompt_token_ids=list(prompt_ids)),
                sampling_params(params),
                request_id=uuid.uuid4().hex,
            ):
                final = output
        except EngineDeadError as exc:
            raise EngineUnavailable(f"the local vLLM engine died: {exc}") from exc
        except Exception as exc:  # vLLM's errors name no stable base class we could narrow to
            raise EngineError(f"vLLM generate failed: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise EngineError("vLLM returned no output")
        completion = final.outputs[0]
        return Generation(
            text=completion.text,
            token_ids=list(completion.token_ids),
            finish_reason=completion.finish_reason or "abort",
            stop_reason=completion.stop_reason,
            prompt_tokens=len(prompt_ids),
            cached_tokens=final.num_cached_tokens,
            wall_s=time.perf_counter() - started,
        )

    async def reset_prefix_cache(self) -> None:
        """Forget cached prefixes (benchmarks: each run starts cold)."""
        await self._llm.reset_prefix_cache()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._watchdog is not None:
                self._watchdog.kill()
                self._watchdog.wait()
            self._llm.shutdown()
            # Collected now rather than at interpreter exit, where AsyncLLM.__del__ fails noisily.
            del self._llm

    async def __aenter__(self) -> LocalEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

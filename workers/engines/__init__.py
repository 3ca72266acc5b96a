"""Generation engines behind one small async interface (see ``base.Engine``).

- ``vllm-local``: vLLM's AsyncLLM in this process (the embedded default on one machine);
- ``vllm-server``: any OpenAI-compatible completions server, vLLM's in production; several
  addresses make a ``PoolEngine`` (prefix affinity, failover); ``serving`` is the endpoint that
  serves every policy of a host.

vLLM itself is imported only when a local engine starts.
"""

from __future__ import annotations

import dataclasses

from workers.engines.base import (
    Engine,
    EngineConfig,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    Generation,
    GenerationParams,
)

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "Generation",
    "GenerationParams",
    "make_engine",
    "open_engine",
]


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine ``config`` names. A local engine starts here (15-40 s on CPU)."""
    if config.kind == "vllm-local":
        from workers.engines.local import LocalEngine

        return LocalEngine(config)
    from workers.engines.server import ServerEngine

    if len(config.base_urls) == 1:
        return ServerEngine(config)
    from transformers import AutoTokenizer

    from workers.engines.pool import PoolEngine

    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or config.model)
    return PoolEngine(
        [
            ServerEngine(dataclasses.replace(config, base_urls=(url,)), tokenizer=tokenizer)
            for url in config.base_urls
        ]
    )


async def open_engine(config: EngineConfig) -> Engine:
    """``make_engine`` then ``check()``: raises EngineUnavailable at once when a server is down."""
    engine = make_engine(config)
    try:
        await engine.check()
    except BaseException:
        await engine.close()
        raise
    return engine

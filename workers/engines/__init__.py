"""Generation engines behind one small async interface (see ``base.Engine``).

- ``vllm-local``: vLLM's AsyncLLM in this process (the embedded default on one machine);
- ``vllm-server``: any OpenAI-compatible completions server, vLLM's in production.

vLLM itself is imported only when a local engine starts.
"""

from __future__ import annotations

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

    return ServerEngine(config)


async def open_engine(config: EngineConfig) -> Engine:
    """``make_engine`` then ``check()``: raises EngineUnavailable at once when a server is down."""
    engine = make_engine(config)
    try:
        await engine.check()
    except BaseException:
        await engine.close()
        raise
    return engine

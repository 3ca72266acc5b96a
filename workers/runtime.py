"""One asyncio loop per worker process, owning the generation engines.

vLLM's AsyncLLM is bound to the loop it was created on, and starting it costs 15–40 s on CPU, so
a worker keeps one background loop thread and one open engine across tasks; a task thread submits
coroutines to it and consumes their results. An engine for another policy replaces the open one.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from workers.engines import Engine, EngineConfig, open_engine


class EngineHost:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="engines", daemon=True)
        self._thread.start()
        self._engine: Engine | None = None
        self._config: EngineConfig | None = None
        self._lock: asyncio.Lock | None = None

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def engine(self, config: EngineConfig) -> Engine:
        """The open engine for `config`, started (or swapped in) on first use."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._engine is not None and self._config == config:
                return self._engine
            if self._engine is not None:
                await self._engine.close()
                self._engine = None
            self._engine = await open_engine(config)
            self._config = config
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self.submit(self._engine.close()).result(timeout=60)
            self._engine = None
        self.loop.call_soon_threadsafe(self.loop.stop)


_host: EngineHost | None = None
_host_lock = threading.Lock()


def engine_host() -> EngineHost:
    """This process's host, created on first use and shut down explicitly at exit."""
    global _host
    with _host_lock:
        if _host is None:
            _host = EngineHost()
            atexit.register(_host.close)
        return _host

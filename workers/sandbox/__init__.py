"""Run model-written Python safely and fast.

    from workers.sandbox import run, Limits
    result = run("import sympy; sympy.factor(x**2 - 1)", limits=Limits(wall_s=5))
    result.as_output_block_text()  # what goes inside the ```output fence

Every call runs in a fresh process forked from a warm interpreter (numpy, sympy and the standard
library already imported) that lives in a bubblewrap sandbox: no network, no project files, no
secrets, limits on CPU, memory, processes, file size, wall time and output. By default each call
runs alone; calls with the same `session` see each other's variables, as in a notebook (see
`sessions`). The pool of sandboxes follows the cores and is started on first use; settings come
from the environment (`Pool.from_env`).
"""

from __future__ import annotations

import atexit
import os
import threading

from curation.execution import Execution, Limits, format_output
from workers.sandbox.pool import Pool, SandboxUnavailable

__all__ = [
    "Execution",
    "Limits",
    "Pool",
    "SandboxUnavailable",
    "arun",
    "default_pool",
    "end_session",
    "format_output",
    "run",
]

_pool: Pool | None = None
_pool_lock = threading.Lock()


def default_pool() -> Pool:
    """The process's pool, created on first use (again in a forked worker) and closed at exit."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = Pool.from_env()
            atexit.register(_pool.close)
        return _pool


def run(
    code: str, *, stdin: str = "", limits: Limits | None = None, session: str | None = None
) -> Execution:
    """Run `code` with `stdin`; with `session`, after that session's earlier error-free blocks."""
    return default_pool().run(code, stdin=stdin, limits=limits, session=session)


async def arun(
    code: str, *, stdin: str = "", limits: Limits | None = None, session: str | None = None
) -> Execution:
    """`run` for asyncio: waits for a free slot without blocking the event loop."""
    return await default_pool().arun(code, stdin=stdin, limits=limits, session=session)


def end_session(session: str) -> None:
    """Forget a session now (they also expire when idle)."""
    default_pool().end_session(session)

"""Sandbox benchmark: per-call overhead and throughput, for print(1) and for a sympy snippet.

Run with `python -m tests.bench.bench_sandbox` (prints JSON) or through `run_bench()`.
Overhead is a sandboxed `print(1)` minus the same exec in this already-warm interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import statistics
import time

from workers.sandbox import Pool

PRINT = "print(1)"
# Not the zygote's warm-up expressions, whose results sympy has cached.
SYMPY = """import sympy
x = sympy.Symbol('x')
print(sympy.solve(x**2 - 7*x + 12, x), sympy.factor(x**6 - 1))"""
SEQUENTIAL = 400
CONCURRENT = 400
SYMPY_CALLS = 200


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _plain_exec_s(code: str, n: int = 2000) -> float:
    compiled = compile(code, "<cell>", "exec")
    times = []
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(n):
            start = time.perf_counter()
            exec(compiled, {})
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _latencies(pool: Pool, code: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run = pool.run(code)
        times.append(time.perf_counter() - start)
        assert run.ok, run
    return times


def _calls_per_s(pool: Pool, code: str, n: int) -> float:
    async def burst() -> float:
        start = time.perf_counter()
        runs = await asyncio.gather(*(pool.arun(code) for _ in range(n)))
        assert all(r.ok for r in runs)
        return n / (time.perf_counter() - start)

    return asyncio.run(burst())


def run_bench() -> dict[str, float]:
    pool = Pool()
    try:
        pool.warm()
        _latencies(pool, PRINT, 20)  # settle caches before measuring
        plain = _plain_exec_s(PRINT)
        overhead = [t - plain for t in _latencies(pool, PRINT, SEQUENTIAL)]
        p50 = _percentile(overhead, 0.5)
        sympy_times = _latencies(pool, SYMPY, SYMPY_CALLS)
        return {
            "sandbox.overhead_p50_ms": p50 * 1e3,
            "sandbox.overhead_p99_ms": _percentile(overhead, 0.99) * 1e3,
            "sandbox.overhead_ratio": (p50 + plain) / plain,
            "sandbox.calls_per_s": _calls_per_s(pool, PRINT, CONCURRENT),
            "sandbox.sympy_p50_ms": _percentile(sympy_times, 0.5) * 1e3,
            "sandbox.sympy_calls_per_s": _calls_per_s(pool, SYMPY, SYMPY_CALLS),
            "sandbox.pool_size": float(pool.size),
        }
    finally:
        pool.close()


if __name__ == "__main__":
    print(json.dumps(run_bench(), indent=2))

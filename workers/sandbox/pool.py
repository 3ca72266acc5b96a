"""A pool of warm sandboxes: one zygote per slot, one slot per core, a call waits for a free slot.

`run` blocks its thread; `arun` is native asyncio: it waits for a slot on the event loop and
talks to the zygote over the same pipes with the loop's readers and writers, so a call from a
rollout costs no thread hand-off (that hand-off was ~100 ms of latency while vLLM held the
cores). Threads and coroutines wait for slots in one queue, first come first served.

Each slot is a bubblewrap sandbox (see `bwrap`) running the zygote (see `zygote`), started in the
slot's own cgroups (see `cgroups`). A call sends one request to a child the zygote forked ahead
of time and reads one reply; the zygote then kills what is left of the call, empties /tmp, forks
the next child and says "clean", which the slot's next call waits for. Free slots are taken in
turn, so that clean-up overlaps another slot's call. A zygote that dies, stops answering or cannot
clean up is killed with everything in its cgroups and started again by the next call.

Where bubblewrap cannot build the sandbox, or nothing caps the process count, the pool refuses to
run code unless `allow_unisolated` (or SANDBOX_ALLOW_UNISOLATED=1) opts in to a zygote without
namespaces: rlimits, a private working directory and a cleared environment only, which is not
safe for hostile code (Execution.isolated is then False).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from curation import execution as ex
from curation.execution import Execution, Limits
from workers.sandbox import bwrap, cgroups, zygote
from workers.sandbox.sessions import Block, SessionStore

log = logging.getLogger(__name__)

PACKAGES = ("numpy", "sympy", "mpmath")
# Run once in each zygote so that what model code commonly uses is imported and initialised
# before the fork (sympy imports much lazily: a first `expand` or `solve` costs tens of ms).
WARMUP = """
import bisect, collections, decimal, fractions, functools, heapq, itertools, math, re, statistics
import numpy as np
import sympy as sp
x, y = sp.symbols("x y")
str(sp.solve(x**2 - 5*x + 6, x)), str(sp.factor(x**4 - 1)), str(sp.expand((x + y) ** 3))
str(sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2)), str(sp.integrate(x * sp.exp(x), x))
str(sp.limit(sp.sin(x) / x, x, 0)), str(sp.diff(sp.sqrt(x), x)), sp.latex(x**2 / 3)
str(sp.Matrix([[1, 2], [3, 4]]).inv()), str(sp.N(sp.pi, 30)), sp.isprime(97), sp.factorint(360)
str(sp.nsimplify(0.5)), str(sp.Rational(1, 3) + sp.Rational(1, 6)), str(sp.summation(x, (x, 1, 9)))
str(np.linalg.solve(np.eye(2), np.ones(2))), str(np.arange(6).reshape(2, 3))
"""
BOOT = "import sys;exec(compile(sys.argv[1],'<sandbox>','exec'))"
START_TIMEOUT_S = 120.0
REPLY_GRACE_S = 3.0  # the zygote's own drain after the wall clock
SETTLE_TIMEOUT_S = 10.0  # its clean-up after a call (killing, emptying /tmp, forking the next)
MAX_REPLY_BYTES = 256 << 20
# Processes of a slot besides the call's own: the outer bwrap, its init, the zygote.
SLOT_PROCESSES = 3
_SOURCE = Path(zygote.__file__).read_text()


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot isolate code on this machine (and the weaker mode was not allowed)."""


class _SlotFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def default_size() -> int:
    return len(os.sched_getaffinity(0)) or 1


def _ready(fd: int, event: int, deadline: float) -> bool:
    """Wait until `fd` is ready for `event` (poll, not select: fds may be above 1024)."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))


async def _aready(fd: int, *, writable: bool, deadline: float) -> bool:
    """Wait on the running loop until `fd` is ready (False at the deadline)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (
        (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    )
    add(fd, lambda: ready.done() or ready.set_result(True))
    try:
        return await asyncio.wait_for(ready, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return False
    finally:
        remove(fd)


def _frame_size(head: bytes) -> int:
    (size,) = zygote.FRAME.unpack(head)
    if size > MAX_REPLY_BYTES:
        raise _SlotFailed(ex.KILLED, "the sandbox sent a malformed reply")
    return size


def _reply(body: bytes) -> dict:
    try:
        return json.loads(body)
    except ValueError:
        raise _SlotFailed(ex.KILLED, "the sandbox sent a malformed reply") from None


class _Slot:
    def __init__(self, pool: Pool, index: int) -> None:
        self.pool = pool
        self.cgroup = cgroups.SlotCgroup(f"{cgroups.PREFIX}-{os.getpid()}-{id(pool):x}-{index}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None
        self.baseline_bytes = 0
        self.unsettled = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        pool = self.pool
        config = {
            "isolated": pool.isolated,
            "preload": list(pool.packages),
            "warmup": WARMUP if {"numpy", "sympy"} <= set(pool.packages) else "",
            "debug": _env_flag("SANDBOX_DEBUG"),
            "cgroup_procs": None,
        }
        python = pool.interpreter.executable
        if pool.isolated:
            config |= {"site": [bwrap.SITE], "scratch": list(bwrap.SCRATCH)}
            config["workdir"] = bwrap.WORKDIR
            env: dict[str, str] = {}
            prefix = pool.bwrap_prefix
        else:
            self.workdir = tempfile.mkdtemp(prefix="sandbox-")
            sites = sorted({str(Path(src).parent) for src, _ in pool.package_dirs})
            config |= {"site": sites, "scratch": [self.workdir], "workdir": self.workdir}
            config["cgroup_procs"] = next(iter(self.cgroup.procs_files()), None)
            env = {**bwrap.ENV, "HOME": self.workdir, "TMPDIR": self.workdir}
            prefix = []
        argv = [*prefix, python, "-S", "-s", "-B", "-c", BOOT, _SOURCE, json.dumps(config)]
        procs = self.cgroup.procs_files()
        if procs:
            # Join the slot's cgroups before exec, so every process of the sandbox is counted.
            script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 97; '
            script += 'shift; n=$((n-1)); done; exec "$@"'
            argv = ["/bin/sh", "-c", script, "sh", str(len(procs)), *procs, *argv]
        self.cgroup.set_limits(processes=SLOT_PROCESSES + 16, memory_bytes=-1)
        # bwrap --die-with-parent watches the *thread* that forked it: fork from one that lives
        # as long as the pool, not from whichever caller's thread happens to start the slot.
        self.proc = pool.spawner.submit(
            subprocess.Popen,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.workdir or "/",
            start_new_session=True,
        ).result()
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)  # for arun's loop readers
        try:
            ready = self._read(time.monotonic() + START_TIMEOUT_S)
        except _SlotFailed as e:
            self.stop()
            raise SandboxUnavailable(f"the sandbox did not start: {e}") from None
        pool.starts += 1
        if ready.get("failed"):
            log.warning("sandbox could not preload %s", "; ".join(ready["failed"]))
        self.baseline_bytes = self.cgroup.memory_usage()

    def stop(self) -> None:
        self.unsettled = False
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.cgroup.kill_all()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def close(self) -> None:
        self.stop()
        self.cgroup.remove()

    def settle(self) -> None:
        """Wait for the zygote to finish cleaning up after the previous call."""
        if self.unsettled:
            self.unsettled = False
            self._read(time.monotonic() + SETTLE_TIMEOUT_S)

    async def asettle(self) -> None:
        if self.unsettled:
            self.unsettled = False
            await self._aread(time.monotonic() + SETTLE_TIMEOUT_S)

    def call(self, request: dict, limits: Limits, deadline: float) -> dict:
        """Send one request and return the zygote's reply, with the cgroup counters' deltas."""
        before = self._before_call(limits)
        self._write(zygote.encode_frame(request), deadline)
        return self._after_call(self._read(deadline), before)

    async def acall(self, request: dict, limits: Limits, deadline: float) -> dict:
        before = self._before_call(limits)
        await self._awrite(zygote.encode_frame(request), deadline)
        return self._after_call(await self._aread(deadline), before)

    def _before_call(self, limits: Limits) -> tuple[int, int]:
        self.cgroup.set_limits(
            processes=SLOT_PROCESSES + limits.processes,
            memory_bytes=self.baseline_bytes + limits.total_memory_bytes,
        )
        return self.cgroup.counters()

    def _after_call(self, reply: dict, before: tuple[int, int]) -> dict:
        self.unsettled = True
        after = self.cgroup.counters()
        reply["pids_hit"] = after[0] > before[0]
        reply["oom_killed"] = after[1] > before[1]
        return reply

    def _write(self, data: bytes, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            if not _ready(fd, select.POLLOUT, deadline):
                raise _SlotFailed(ex.TIMEOUT, "the sandbox did not take the request in time")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except OSError as e:
                raise _SlotFailed(ex.KILLED, f"the sandbox is gone ({e})") from None

    async def _awrite(self, data: bytes, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                if not await _aready(fd, writable=True, deadline=deadline):
                    raise _SlotFailed(
                        ex.TIMEOUT, "the sandbox did not take the request in time"
                    ) from None
            except OSError as e:
                raise _SlotFailed(ex.KILLED, f"the sandbox is gone ({e})") from None

    def _read(self, deadline: float) -> dict:
        fd = self._stdout()
        size = _frame_size(self._read_exact(fd, zygote.FRAME.size, deadline))
        return _reply(self._read_exact(fd, size, deadline))

    async def _aread(self, deadline: float) -> dict:
        fd = self._stdout()
        size = _frame_size(await self._aread_exact(fd, zygote.FRAME.size, deadline))
        return _reply(await self._aread_exact(fd, size, deadline))

    def _stdout(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def _read_exact(self, fd: int, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            if not _ready(fd, select.POLLIN, deadline):
                raise _SlotFailed(ex.TIMEOUT, "the sandbox did not answer in time")
            try:
                chunk = os.read(fd, min(n, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise _SlotFailed(ex.KILLED, self._exit_message())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    async def _aread_exact(self, fd: int, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            try:
                chunk = os.read(fd, min(n, 1 << 20))
            except BlockingIOError:
                if not await _aready(fd, writable=False, deadline=deadline):
                    raise _SlotFailed(ex.TIMEOUT, "the sandbox did not answer in time") from None
                continue
            if not chunk:
                raise _SlotFailed(ex.KILLED, self._exit_message())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _exit_message(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "the sandbox closed its pipe"
        os.set_blocking(self.proc.stderr.fileno(), False)
        detail = (self.proc.stderr.read() or b"").decode(errors="replace").strip()
        return f"the sandbox exited ({self.proc.returncode}){': ' + detail if detail else ''}"


class Pool:
    """Warm sandboxes. `run` blocks for a free slot; `arun` awaits one without blocking the loop."""

    def __init__(
        self,
        size: int | None = None,
        *,
        bwrap_path: str | None = None,
        allow_unisolated: bool | None = None,
        tmp_bytes: int = 64 << 20,
        packages: tuple[str, ...] = PACKAGES,
        session_ttl_s: float = 1800.0,
        max_sessions: int = 1024,
    ) -> None:
        self.size = size or default_size()
        self.pid = os.getpid()
        self.bwrap_path = bwrap_path or shutil.which("bwrap") or "bwrap"
        if allow_unisolated is None:
            allow_unisolated = _env_flag("SANDBOX_ALLOW_UNISOLATED")
        self.allow_unisolated = allow_unisolated
        self.tmp_bytes = tmp_bytes
        self.packages = packages
        self.sessions = SessionStore(ttl_s=session_ttl_s, max_sessions=max_sessions)
        self.interpreter = bwrap.Interpreter.current()
        self.package_dirs = bwrap.package_dirs(packages)
        self.bwrap_prefix = bwrap.command(
            bwrap=self.bwrap_path,
            interpreter=self.interpreter,
            packages=self.package_dirs,
            tmp_bytes=tmp_bytes,
            argv=[],
        )
        self.isolated = True
        self.starts = 0  # sandboxes started, restarts included: a health figure
        self._checked = False
        self._lock = threading.Lock()
        self._slots = [_Slot(self, i) for i in range(self.size)]
        # FIFO: a slot that just served a call gets time to clean up before its next one.
        self._free: collections.deque[_Slot] = collections.deque(self._slots)
        # Callers waiting for a slot, first come first served: a thread's _ThreadWaiter or a
        # coroutine's future (with its loop).
        self._waiters: collections.deque[_ThreadWaiter | _LoopWaiter] = collections.deque()
        self._slots_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="sandbox")
        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")
        self._closed = False

    @classmethod
    def from_env(cls) -> Pool:
        """SANDBOX_POOL_SIZE (default: the cores), SANDBOX_BWRAP, SANDBOX_ALLOW_UNISOLATED,
        SANDBOX_TMP_BYTES, SANDBOX_PACKAGES (comma-separated, default numpy,sympy,mpmath)."""
        env = os.environ
        packages = tuple(p.strip() for p in env.get("SANDBOX_PACKAGES", "").split(",") if p.strip())
        return cls(
            int(env.get("SANDBOX_POOL_SIZE", "0")) or None,
            bwrap_path=env.get("SANDBOX_BWRAP"),
            tmp_bytes=int(env.get("SANDBOX_TMP_BYTES", str(64 << 20))),
            packages=packages or PACKAGES,
        )

    def check(self) -> None:
        """Decide once whether this machine can isolate; raise SandboxUnavailable if not allowed."""
        with self._lock:
            if self._checked:
                return
            problem = bwrap.probe(self.bwrap_prefix, self.interpreter.executable)
            if problem is None and os.geteuid() == 0 and self._slots[0].cgroup.pids is None:
                problem = (
                    "the host uid is root and no writable cgroup pids controller caps processes"
                )
            if problem is not None:
                message = f"bubblewrap cannot isolate code here: {problem}"
                if not self.allow_unisolated:
                    raise SandboxUnavailable(
                        f"{message}. Refusing to run untrusted code; set "
                        "SANDBOX_ALLOW_UNISOLATED=1 for the weaker rlimit-only mode."
                    )
                log.warning("%s; running WITHOUT isolation (rlimits only)", message)
                self.isolated = False
            self._checked = True

    def warm(self) -> None:
        """Start every slot now (in parallel) instead of on first use."""
        self.check()
        slots = [self._acquire() for _ in range(self.size)]
        try:
            list(self._executor.map(lambda s: s.alive or s.start(), slots))
        finally:
            for slot in slots:
                self._release(slot)

    # -- slots: one queue of waiters for threads and coroutines ---------------------------------
    def _acquire(self) -> _Slot:
        with self._slots_lock:
            if self._free and not self._waiters:
                return self._free.popleft()
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        waiter.event.wait()
        assert waiter.slot is not None
        return waiter.slot

    async def _aacquire(self) -> _Slot:
        loop = asyncio.get_running_loop()
        with self._slots_lock:
            if self._free and not self._waiters:
                return self._free.popleft()
            waiter = _LoopWaiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            with self._slots_lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter.future.result())  # handed over just as it was cancelled
            raise

    def _release(self, slot: _Slot) -> None:
        with self._slots_lock:
            if not self._waiters:
                self._free.append(slot)
                return
            waiter = self._waiters.popleft()
        if isinstance(waiter, _ThreadWaiter):
            waiter.slot = slot
            waiter.event.set()
        else:
            waiter.loop.call_soon_threadsafe(self._hand_over, waiter.future, slot)

    def _hand_over(self, future: asyncio.Future, slot: _Slot) -> None:
        if future.done():  # cancelled after it was picked: the slot goes to the next caller
            self._release(slot)
        else:
            future.set_result(slot)

    def run(
        self,
        code: str,
        *,
        stdin: str = "",
        limits: Limits | None = None,
        session: str | None = None,
    ) -> Execution:
        """Run `code` in a fresh sandboxed process (see the package docstring)."""
        request, limits = self._request(code, stdin, limits, session)
        slot = self._acquire()
        try:
            run, record = self._call(slot, request, limits)
        finally:
            self._release(slot)
        return self._done(run, record, code, stdin, session)

    async def arun(
        self,
        code: str,
        *,
        stdin: str = "",
        limits: Limits | None = None,
        session: str | None = None,
    ) -> Execution:
        """`run` on the event loop: no thread per call (a slot's first start excepted)."""
        request, limits = self._request(code, stdin, limits, session)
        slot = await self._aacquire()
        try:
            run, record = await self._acall(slot, request, limits)
        finally:
            self._release(slot)
        return self._done(run, record, code, stdin, session)

    def end_session(self, session: str) -> None:
        self.sessions.end(session)

    def _request(
        self, code: str, stdin: str, limits: Limits | None, session: str | None
    ) -> tuple[dict, Limits]:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        if self.pid != os.getpid():
            raise RuntimeError("a sandbox pool cannot be used across fork(); make one per process")
        self.check()
        limits = limits or Limits()
        history: list[Block] = []
        seed = None
        if session is not None:
            state = self.sessions.get(session)
            history, seed = list(state.blocks), state.seed
        replay_s = sum(b.exec_s for b in history) * 2 + 0.05 * len(history)
        replay_cpu = sum(b.cpu_s for b in history) * 2
        request = {
            "code": code,
            "stdin": stdin,
            "limits": asdict(limits),
            "wall_s": limits.wall_s + replay_s,
            "cpu_s": limits.cpu_s + replay_cpu,
            "history": [[b.code, b.stdin] for b in history],
            "seed": seed,
            "session": session is not None,
        }
        return request, limits

    def _done(
        self, run: Execution, record: dict | None, code: str, stdin: str, session: str | None
    ) -> Execution:
        if session is not None and run.ok and record is not None:
            block = Block(code, stdin, record.get("exec_s", 0.0), record.get("cpu_s", 0.0))
            self.sessions.append(session, block)
        return run

    def _call(self, slot: _Slot, request: dict, limits: Limits) -> tuple[Execution, dict | None]:
        try:
            if slot.alive:
                slot.settle()
        except _SlotFailed:
            slot.stop()  # it could not clean up after the previous call
        if not slot.alive:
            slot.stop()
            slot.start()
        deadline = time.monotonic() + request["wall_s"] + REPLY_GRACE_S
        started = time.monotonic()
        try:
            reply = slot.call(request, limits, deadline)
        except _SlotFailed as e:
            return self._failed(slot, e, started), None
        return _execution(reply, request, self.isolated), reply["record"]

    async def _acall(
        self, slot: _Slot, request: dict, limits: Limits
    ) -> tuple[Execution, dict | None]:
        try:
            return await self._acall_on(slot, request, limits)
        except asyncio.CancelledError:
            # The caller gave up (its trajectory was cancelled) while this slot was talking to its
            # sandbox: a reply (to the call, or to the settling after the last one) may still
            # come, and the next call on the slot would read it as its own. It starts afresh.
            slot.stop()
            raise

    async def _acall_on(
        self, slot: _Slot, request: dict, limits: Limits
    ) -> tuple[Execution, dict | None]:
        try:
            if slot.alive:
                await slot.asettle()
        except _SlotFailed:
            slot.stop()  # it could not clean up after the previous call
        if not slot.alive:
            slot.stop()
            # Starting a sandbox blocks for a while (first use, or after a crash): a thread.
            await asyncio.get_running_loop().run_in_executor(self._executor, slot.start)
        deadline = time.monotonic() + request["wall_s"] + REPLY_GRACE_S
        started = time.monotonic()
        try:
            reply = await slot.acall(request, limits, deadline)
        except _SlotFailed as e:
            return self._failed(slot, e, started), None
        return _execution(reply, request, self.isolated), reply["record"]

    def _failed(self, slot: _Slot, error: _SlotFailed, started: float) -> Execution:
        slot.stop()  # started again by the next call that takes this slot
        return Execution(
            stdout="",
            stderr=f"{error}\n",
            exit_code=-signal.SIGKILL,
            reason=error.reason,
            wall_s=time.monotonic() - started,
            cpu_s=0.0,
            isolated=self.isolated,
        )

    def close(self) -> None:
        if self.pid != os.getpid():
            return  # a forked copy: the sandboxes belong to the parent
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        for slot in self._slots:
            slot.close()
        self.spawner.shutdown(wait=False)


@dataclass
class _ThreadWaiter:
    event: threading.Event = field(default_factory=threading.Event)
    slot: _Slot | None = None


@dataclass
class _LoopWaiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


_ERROR_REASONS = {
    "syntax error": ex.SYNTAX_ERROR,
    "file size": ex.FILE_SIZE,
    "disk full": ex.DISK_FULL,
}


def _execution(reply: dict, request: dict, isolated: bool) -> Execution:
    record = reply["record"] or {}
    error = record.get("error")
    exit_code = reply["exit_code"]
    finished = exit_code == 0 and error is None and not reply["output_killed"]
    return Execution(
        stdout=reply["stdout"],
        stderr=reply["stderr"],
        exit_code=exit_code,
        reason=None if finished and not reply["cut"] else _reason(reply, request, error),
        wall_s=reply["wall_s"],
        cpu_s=reply["cpu_s"],
        value=record.get("value"),
        error=error["text"] if error else None,
        isolated=isolated,
    )


def _reason(reply: dict, request: dict, error: dict | None) -> str:
    """The most telling reason a call did not finish cleanly."""
    exit_code = reply["exit_code"]
    if exit_code == 0 and error is None and not reply["output_killed"]:
        return ex.OUTPUT_TRUNCATED
    ours = reply["timed_out"] or reply["output_killed"]
    if reply["oom_killed"] or (error and error["kind"] == "memory"):
        return ex.MEMORY
    if reply["pids_hit"]:
        return ex.PROCESSES
    if reply["timed_out"]:
        return ex.TIMEOUT
    if exit_code == -signal.SIGXCPU or (
        exit_code == -signal.SIGKILL and not ours and reply["cpu_s"] >= request["cpu_s"] - 0.05
    ):
        return ex.CPU_TIME
    if reply["output_killed"]:
        return ex.OUTPUT_TRUNCATED
    if error is not None:
        return _ERROR_REASONS.get(error["kind"], ex.EXCEPTION)
    if exit_code < 0:
        return ex.KILLED
    return ex.NONZERO_EXIT

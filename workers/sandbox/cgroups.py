"""Per-slot cgroups (v1 `pids` and `memory`): the process cap and the memory cap of one sandbox.

RLIMIT_NPROC does not hold when the host uid is root, so a sandbox's process count is capped by
`pids.max` of a cgroup its bubblewrap is started in; `memory` caps the sum of all its processes and
its tmpfs. Both live under the worker's own cgroup and are removed when the slot closes. Where the
hierarchy is not writable (or is cgroup v2 only) a controller is simply absent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PREFIX = "start-sandbox"


def _v1_mounts() -> dict[str, Path]:
    """Controller name -> mount point of the cgroup v1 hierarchies."""
    mounts: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) >= 3 and fields[0] == "cgroup":
            for option in fields[2].split(","):
                mounts.setdefault(option, Path(left.split()[4]))
    return mounts


def _own_paths() -> dict[str, str]:
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _read_counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


class SlotCgroup:
    """The cgroups of one sandbox slot; each controller may be missing (None)."""

    def __init__(self, name: str) -> None:
        mounts, own = _v1_mounts(), _own_paths()
        self.pids = self._make(mounts, own, "pids", name)
        self.memory = self._make(mounts, own, "memory", name)
        self._memory_limit = 0
        self._pids_limit = 0

    @staticmethod
    def _make(mounts: dict[str, Path], own: dict[str, str], controller: str, name: str):
        if controller not in mounts or controller not in own:
            return None
        parent = mounts[controller] / own[controller].lstrip("/")
        _remove_stale(parent)
        path = parent / name
        try:
            path.mkdir(exist_ok=True)
            (path / "cgroup.procs").stat()
        except OSError:
            return None
        return path

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in (self.pids, self.memory) if p is not None]

    def set_limits(self, *, processes: int, memory_bytes: int) -> None:
        if self.pids is not None and processes != self._pids_limit:
            (self.pids / "pids.max").write_text(str(processes))
            self._pids_limit = processes
        if self.memory is not None and memory_bytes != self._memory_limit:
            try:
                (self.memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                self._memory_limit = memory_bytes
            except OSError:
                pass  # below current usage: keep the old limit for this call

    def counters(self) -> tuple[int, int]:
        """(times the pids limit was hit, processes the OOM killer took)."""
        pids_hit = _read_counter(self.pids / "pids.events", "max") if self.pids else 0
        oom = _read_counter(self.memory / "memory.oom_control", "oom_kill") if self.memory else 0
        return pids_hit, oom

    def memory_usage(self) -> int:
        if self.memory is None:
            return 0
        try:
            return int((self.memory / "memory.usage_in_bytes").read_text())
        except (OSError, ValueError):
            return 0

    def kill_all(self) -> None:
        for path in (self.pids, self.memory):
            if path is not None:
                _kill_members(path)

    def remove(self) -> None:
        self.kill_all()
        for path in (self.pids, self.memory):
            if path is not None:
                _rmdir(path)


def _members(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_members(path: Path) -> None:
    for _ in range(200):
        members = _members(path)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _rmdir(path: Path) -> None:
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # the killed processes are still being torn down


def _remove_stale(parent: Path) -> None:
    """Remove slot cgroups left by worker processes that died without closing their pool."""
    try:
        entries = list(parent.glob(f"{PREFIX}-*"))
    except OSError:
        return
    for path in entries:
        owner = path.name.split("-")[2] if path.name.count("-") >= 3 else ""
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _kill_members(path)
            _rmdir(path)

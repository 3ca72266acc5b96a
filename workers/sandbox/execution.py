"""What a call asks for (`Limits`) and what it gets back (`Execution`)."""

from __future__ import annotations

from dataclasses import dataclass

# The short reasons an `Execution` can carry; None means the code ran to the end without error.
TIMEOUT = "timeout"
CPU_TIME = "cpu time"
MEMORY = "memory"
PROCESSES = "processes"
OUTPUT_TRUNCATED = "output truncated"
FILE_SIZE = "file size"
DISK_FULL = "disk full"
KILLED = "killed"
SYNTAX_ERROR = "syntax error"
EXCEPTION = "exception"
NONZERO_EXIT = "nonzero exit"


@dataclass(frozen=True)
class Limits:
    """Per-call limits.

    `memory_bytes` is address space per process on top of the preloaded interpreter (about
    0.2 GB); `total_memory_bytes` caps all the call's processes and its files in /tmp together
    (where the memory cgroup is available). `processes` counts threads too (the kernel's pids
    limit does). `output_bytes` is what an Execution keeps of each stream (head and tail, the cut
    marked); a program that writes more than `output_read_bytes` in all is stopped.
    """

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_bytes: int = 1 << 30
    total_memory_bytes: int = 2 << 30
    file_size_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 32
    output_bytes: int = 64 << 10
    output_read_bytes: int = 8 << 20

    @classmethod
    def from_tool_config(cls, options: dict) -> Limits:
        """A round's `tool_config` (timeout_s, memory_mb): rollouts and re-runs use the same."""
        timeout = float(options.get("timeout_s", cls.wall_s))
        memory = int(options.get("memory_mb", cls.memory_bytes >> 20)) << 20
        return cls(wall_s=timeout, cpu_s=timeout, memory_bytes=memory)


@dataclass(frozen=True)
class Execution:
    """The result of one call.

    `exit_code` is the process status, negative for a signal (as in `subprocess`). `value` is the
    repr of the final expression, as a notebook shows it; `error` an uncaught exception's type
    and message ("ZeroDivisionError: division by zero"), also set for a syntax error. `wall_s`
    and `cpu_s` include the replay of a session's earlier blocks. `isolated` is False only in
    the opt-in rlimit-only mode.
    """

    stdout: str
    stderr: str
    exit_code: int
    reason: str | None
    wall_s: float
    cpu_s: float
    value: str | None = None
    error: str | None = None
    isolated: bool = True

    @property
    def ok(self) -> bool:
        """True when the code ran to the end without an error (its output may have been cut)."""
        return self.exit_code == 0 and self.error is None

    def as_output_block_text(self, max_chars: int | None = None) -> str:
        """What goes inside the ```output fence for the model."""
        from workers.sandbox.formatting import OUTPUT_BLOCK_CHARS, format_output

        return format_output(self, max_chars=OUTPUT_BLOCK_CHARS if max_chars is None else max_chars)

"""Running model-written code, as the domain needs it: the contract a sandbox implements.

`curation/` states *what* it needs — a `CodeRunner` that takes code and `Limits` and returns an
`Execution`, the reasons an execution can carry, and how an execution reads inside an
```output block — and `workers.sandbox` supplies *how* (bubblewrap, warm interpreters). The
runner is bound by name (`CODE_RUNNER`, as Django binds `EMAIL_BACKEND`), so nothing here
imports the workers. No Django either: the rollout, scoring and training use this module too.
"""

from __future__ import annotations

import importlib
import re
import signal
from dataclasses import dataclass
from typing import Protocol

# The runner the project ships; settings.CODE_RUNNER names another (tests, a remote sandbox).
DEFAULT_CODE_RUNNER = "workers.sandbox.run"

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
        return format_output(self, max_chars=OUTPUT_BLOCK_CHARS if max_chars is None else max_chars)


# --- The text of an ```output block: what the model would see from a notebook cell ---------

OUTPUT_BLOCK_CHARS = 2000
_TRACEBACK_HEADER = "Traceback (most recent call last):"


# What the formatter below writes, for the checks that read output blocks back.
CUT_MARKER = re.compile(r"\[\.\.\. \d+ characters cut \.\.\.\]")
LIMIT_NOTE = re.compile(
    r"^(?:TimeoutError: the code was stopped after|MemoryError: the code used too much memory"
    r"|BlockingIOError: too many processes|The code printed too much output|Killed \()",
    re.MULTILINE,
)


def head_tail(text: str, max_chars: int) -> str:
    """`text` cut to about `max_chars`, keeping its head and tail and marking the cut."""
    if len(text) <= max_chars:
        return text
    half = max(max_chars // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"


def short_traceback(stderr: str) -> str:
    """stderr with its tracebacks cut to the last one's innermost cell frame and the error.

    Earlier output (warnings) stays; chained tracebacks and library frames go, as the model needs
    where its own code failed and why.
    """
    first, last = stderr.find(_TRACEBACK_HEADER), stderr.rfind(_TRACEBACK_HEADER)
    if first < 0:
        return stderr
    lines = stderr[last + len(_TRACEBACK_HEADER) :].strip("\n").splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if frames:
        error_at = next(
            (i for i in range(frames[-1] + 1, len(lines)) if not lines[i].startswith(" ")),
            len(lines),
        )
        cells = [i for i in frames if lines[i].startswith('  File "<cell')]
        pick = cells[-1] if cells else frames[-1]
        frame_end = next((i for i in frames if i > pick), error_at)
        lines = lines[pick:frame_end] + lines[error_at:]
    before = stderr[:first].rstrip("\n")
    return "\n".join([*([before] if before else []), _TRACEBACK_HEADER, *lines])


def _limit_note(run: Execution) -> str:
    """A line for limits the program's own output does not show."""
    if run.reason == TIMEOUT:
        return f"TimeoutError: the code was stopped after {run.wall_s:.0f} s"
    if run.reason == CPU_TIME:
        return f"TimeoutError: the code was stopped after {run.cpu_s:.0f} s of CPU time"
    if run.reason == MEMORY and "MemoryError" not in run.stderr:
        return "MemoryError: the code used too much memory and was stopped"
    if run.reason == PROCESSES:
        return "BlockingIOError: too many processes or threads; the code was stopped"
    if run.reason == OUTPUT_TRUNCATED and run.exit_code != 0:
        return "The code printed too much output and was stopped."
    if run.reason == KILLED:
        try:
            name = signal.Signals(-run.exit_code).name
        except ValueError:
            name = "a signal"
        return f"Killed ({name})"
    return ""


def format_output(run: Execution, *, max_chars: int = OUTPUT_BLOCK_CHARS) -> str:
    """What a notebook cell shows, in this order: printed output, the final expression's value
    (both, when a cell prints and ends with an expression), stderr with any traceback cut to
    where the model's code failed, and a line for a limit that stopped the code. Cut to
    `max_chars`, head and tail kept. Empty when the cell showed nothing."""
    stderr = short_traceback(run.stderr) if run.error else run.stderr
    parts = [run.stdout, run.value or "", stderr, _limit_note(run)]
    text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip("\n"))
    return head_tail(text, max_chars)


class CodeRunner(Protocol):
    """Runs `code` with `stdin` under `limits`; with `session`, after that session's earlier
    error-free cells (a notebook). Never raises for the code's own failures: they are in the
    `Execution`. Raises only when the runner itself cannot run anything."""

    def __call__(
        self,
        code: str,
        *,
        stdin: str = "",
        limits: Limits | None = None,
        session: str | None = None,
    ) -> Execution: ...


def load_runner(path: str = DEFAULT_CODE_RUNNER) -> CodeRunner:
    """The runner a dotted path names ("package.module.function"), imported when first needed."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"CODE_RUNNER must be a dotted path to a function, got {path!r}")
    runner = getattr(importlib.import_module(module), name, None)
    if not callable(runner):
        raise ValueError(f"CODE_RUNNER {path!r} does not name a function")
    return runner

"""The text of a ```output block: what the model would see from a notebook cell."""

from __future__ import annotations

import signal

from workers.sandbox import execution as ex

OUTPUT_BLOCK_CHARS = 2000
_TRACEBACK_HEADER = "Traceback (most recent call last):"


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


def _limit_note(run: ex.Execution) -> str:
    """A line for limits the program's own output does not show."""
    if run.reason == ex.TIMEOUT:
        return f"TimeoutError: the code was stopped after {run.wall_s:.0f} s"
    if run.reason == ex.CPU_TIME:
        return f"TimeoutError: the code was stopped after {run.cpu_s:.0f} s of CPU time"
    if run.reason == ex.MEMORY and "MemoryError" not in run.stderr:
        return "MemoryError: the code used too much memory and was stopped"
    if run.reason == ex.PROCESSES:
        return "BlockingIOError: too many processes or threads; the code was stopped"
    if run.reason == ex.OUTPUT_TRUNCATED and run.exit_code != 0:
        return "The code printed too much output and was stopped."
    if run.reason == ex.KILLED:
        try:
            name = signal.Signals(-run.exit_code).name
        except ValueError:
            name = "a signal"
        return f"Killed ({name})"
    return ""


def format_output(run: ex.Execution, *, max_chars: int = OUTPUT_BLOCK_CHARS) -> str:
    """What a notebook cell shows, in this order: printed output, the final expression's value
    (both, when a cell prints and ends with an expression), stderr with any traceback cut to
    where the model's code failed, and a line for a limit that stopped the code. Cut to
    `max_chars`, head and tail kept. Empty when the cell showed nothing."""
    stderr = short_traceback(run.stderr) if run.error else run.stderr
    parts = [run.stdout, run.value or "", stderr, _limit_note(run)]
    text = "\n".join(p.rstrip("\n") for p in parts if p and p.strip("\n"))
    return head_tail(text, max_chars)

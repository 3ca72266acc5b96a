"""The trajectory text format: parse a completion into segments and render it back, byte for byte.

A trajectory is the assistant completion string; segments are its parse and partition it exactly:

- ``think``: the model's reasoning before the end-of-thinking marker;
- ``hint``: text the rollout inserted from the hint library (the hint's own trailing
  ```` ```python ```` fence belongs to the code segment that follows it);
- ``code``: a ```` ```python ```` block, fences and the newline after the closing fence included; a
  block the model never closed runs to the end of the text;
- ``output``: a ```` ```output ```` block, written by the system (``output_block``), fences and its
  trailing newline included; a model-written one parses the same way (checks flag it);
- ``answer``: prose from the ``</think>`` marker (included) on. Code and output blocks after the
  marker are still ``code``/``output`` segments, so executed output there is masked from the loss
  too; ``answer_start`` tells where the answer part begins.

Nothing here imports Django: workers and training use it as well.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

THINK_START = "<think>"
THINK_END = "</think>"
CODE_FENCE = "```python"
OUTPUT_FENCE = "```output"
CLOSE_FENCE = "```"
# A placeholder in hint texts filled per problem (the code debug hint's test cases).
TESTCASE_SLOT = "{testcase}"

KINDS = ("think", "hint", "code", "output", "answer")
PROSE_KINDS = ("think", "answer")

# An opening fence ends its line (trailing blanks allowed); it may follow text on the same line.
_OPEN_RE = {
    "code": re.compile(r"```python[ \t]*(?:\n|\Z)"),
    "output": re.compile(r"```output[ \t]*(?:\n|\Z)"),
}
# A closing fence is a line that is exactly ```; the newline after it belongs to the block.
_CLOSE_RE = re.compile(r"\n```(?:\n|\Z)")


@dataclass(frozen=True)
class Segment:
    kind: str
    text: str

    @property
    def body(self) -> str:
        """The code or output without its fences; the whole text for other kinds."""
        if self.kind not in ("code", "output"):
            return self.text
        return _split_block(self.text)[1]

    @property
    def closed(self) -> bool:
        """Whether a code/output block has its closing fence (always True for prose and hints)."""
        if self.kind not in ("code", "output"):
            return True
        return _split_block(self.text)[2] != ""


class CodeCell(NamedTuple):
    index: int  # position in the segment list
    body: str
    in_answer: bool  # after the end-of-thinking marker (a final solution, not a debug cell)


def _split_block(text: str) -> tuple[str, str, str]:
    """Split a fenced block into (opening line with its newline, body, closing fence part)."""
    newline = text.find("\n")
    if newline < 0:
        return text, "", ""
    # The closing fence search starts at the opening line's newline ("```python\n```": empty body).
    close = _CLOSE_RE.search(text, newline)
    if close is None or close.end() != len(text):
        return text[: newline + 1], text[newline + 1 :], ""
    return text[: newline + 1], text[newline + 1 : close.start()], text[close.start() :]


def hint_pattern(hint: str) -> str | None:
    """A regex for a hint as inserted: without its trailing code fence, {testcase} a wildcard."""
    prefix = hint.removesuffix(CODE_FENCE)
    if not prefix:
        return None
    parts = [re.escape(part) for part in prefix.split(TESTCASE_SLOT)]
    return r"(?:.|\n)*?".join(parts)


@functools.lru_cache(maxsize=64)
def _scanner(hints: tuple[str, ...]) -> re.Pattern[str]:
    # Longer hints first so that a hint that extends another one wins at the same position.
    patterns = [
        p for p in (hint_pattern(h) for h in sorted(set(hints), key=len, reverse=True)) if p
    ]
    alternatives = [
        f"(?P<code>{_OPEN_RE['code'].pattern})",
        f"(?P<output>{_OPEN_RE['output'].pattern})",
        f"(?P<think_end>{re.escape(THINK_END)})",
    ]
    if patterns:
        alternatives.append("(?P<hint>" + "|".join(patterns) + ")")
    return re.compile("|".join(alternatives))


def parse(text: str, *, hints: Iterable[str] = ()) -> list[Segment]:
    """Split a completion into segments that partition it exactly.

    ``hints`` are the hint texts to recognise: the ones the trajectory's rollout inserted (its
    round's snapshot of the hint library), never a library guessed here, so that every reader
    (workbench, API, export) sees the same segments. A text may hold ``{testcase}``, matched as
    a wildcard. Hints are only recognised before ``</think>``.
    """
    return _scan(text, _scanner(tuple(hints)), prose_kind="think", pos=0)


def _scan(text: str, scanner: re.Pattern[str], *, prose_kind: str, pos: int) -> list[Segment]:
    """``parse``'s loop: prose starts at 0 as ``prose_kind``; no event starts before ``pos``."""
    segments: list[Segment] = []
    prose_start = 0

    def flush_prose(end: int) -> None:
        if end > prose_start:
            segments.append(Segment(prose_kind, text[prose_start:end]))

    while pos < len(text):
        match = scanner.search(text, pos)
        if match is None:
            break
        event, start = match.lastgroup, match.start()
        if event == "think_end":
            if prose_kind == "think":
                flush_prose(start)
                prose_kind, prose_start = "answer", start
            pos = match.end()
        elif event == "hint":
            if prose_kind == "answer":
                pos = start + 1
                continue
            flush_prose(start)
            segments.append(Segment("hint", match.group()))
            prose_start = pos = match.end()
        else:
            assert event in ("code", "output")
            flush_prose(start)
            open_end = match.end()
            # The closing fence's search includes the opening line's newline (empty bodies).
            close = (
                _CLOSE_RE.search(text, open_end - 1)
                if text[open_end - 1 : open_end] == "\n"
                else None
            )
            end = close.end() if close else len(text)
            segments.append(Segment(event, text[start:end]))
            prose_start = pos = end
    flush_prose(len(text))
    return segments


# The longest event marker without its optional blanks: a marker a prose segment's end cut in two
# starts at most this many characters before the end.
_LONGEST_MARKER = max(len(CODE_FENCE), len(OUTPUT_FENCE), len(THINK_END))


class SegmentBuilder:
    """``parse(text)`` (no hints) kept up to date as text is appended.

    Only the last segment can change when text is appended (and an open block that turns out to
    be prose joins the prose before it): that is scanned again with what was appended, prose
    only from where a marker cut by its end could start (a whole marker inside it would have
    ended it). The rollout keeps its segments this way instead of parsing the whole completion
    at every stop, which made a trajectory's parsing cost grow with the square of its length.
    """

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._scanner = _scanner(())
        # Whether a segment before the last one holds the end-of-thinking marker: prose after it
        # is "answer".
        self._answer_before_last = False

    @property
    def last(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def append(self, text: str) -> None:
        if not text:
            return
        head, kind, prose = "", ("answer" if self._answer_before_last else "think"), 0
        last = self.segments.pop() if self.segments else None
        if last is not None and last.kind not in PROSE_KINDS:
            # An open block can turn out to be prose ("```python" then "ic"): it then joins the
            # prose before it, so that is scanned again too.
            if self.segments and self.segments[-1].kind in PROSE_KINDS:
                previous = self.segments.pop()
                head, kind, prose = previous.text, previous.kind, len(previous.text)
            head += last.text
        elif last is not None:
            head, kind, prose = last.text, last.kind, len(last.text)
        pos = max(0, prose - _LONGEST_MARKER + 1)
        new = _scan(head + text, self._scanner, prose_kind=kind, pos=pos)
        for segment in new[:-1]:
            self._answer_before_last = self._answer_before_last or segment.kind == "answer"
        self.segments.extend(new)


def render(segments: Iterable[Segment]) -> str:
    return "".join(segment.text for segment in segments)


def segment_spans(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """Absolute (start, end) character offsets of each segment in the rendered text."""
    spans = []
    offset = 0
    for segment in segments:
        spans.append((offset, offset + len(segment.text)))
        offset += len(segment.text)
    return spans


def loss_mask_spans(segments: Sequence[Segment]) -> list[list[int]]:
    """Spans that carry no loss (hints and system-written output blocks), adjacent ones merged."""
    spans: list[list[int]] = []
    for segment, (start, end) in zip(segments, segment_spans(segments), strict=True):
        if segment.kind not in ("hint", "output") or start == end:
            continue
        if spans and spans[-1][1] == start:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return spans


def answer_start(segments: Sequence[Segment]) -> int | None:
    """Index of the ``answer`` segment that holds the end-of-thinking marker, if any."""
    return next((i for i, s in enumerate(segments) if s.kind == "answer"), None)


def code_cells(segments: Sequence[Segment]) -> list[CodeCell]:
    """Every code segment with its index, body, and whether it lies in the answer part."""
    first_answer = answer_start(segments)
    return [
        CodeCell(i, s.body, first_answer is not None and i > first_answer)
        for i, s in enumerate(segments)
        if s.kind == "code"
    ]


def replace_segment(segments: Sequence[Segment], index: int, new_text: str) -> list[Segment]:
    """A copy of ``segments`` with segment ``index``'s body replaced (code/output keep fences).

    For prose and hints ``new_text`` is the whole text. Raises ValueError if a new code/output body
    holds a closing-fence line, which would change how the trajectory parses.
    """
    if not 0 <= index < len(segments):
        raise IndexError(f"segment index {index} out of range (0..{len(segments) - 1})")
    old = segments[index]
    if old.kind in ("code", "output"):
        if _CLOSE_RE.search("\n" + new_text):
            raise ValueError("a code or output body cannot contain a line that is exactly ```")
        opening, _, closing = _split_block(old.text)
        if not opening.endswith("\n"):
            opening += "\n"
        text = opening + new_text + closing
    else:
        text = new_text
    return [*segments[:index], Segment(old.kind, text), *segments[index + 1 :]]


def output_block(text: str) -> str:
    """The fenced block the system appends after running a code cell.

    Trailing newlines are dropped (the fence supplies one); a line that is exactly ``` inside the
    output is indented by one space so that it cannot close the block early.
    """
    body = "\n".join(
        " ```" if line == CLOSE_FENCE else line for line in text.rstrip("\n").split("\n")
    )
    return f"{OUTPUT_FENCE}\n{body}\n{CLOSE_FENCE}\n"

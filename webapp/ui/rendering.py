"""What the trajectory page shows: segments as view objects, flags placed at their spans.

Model text stays plain text here: prose, hints and outputs become `Piece`s that the templates
escape. The only markup built in Python is highlighted code (`highlight_python`), which escapes
every character of the code it wraps in Pygments' token classes.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.utils.safestring import SafeString, mark_safe
from pygments.lexers import PythonLexer
from pygments.styles import get_style_by_name
from pygments.token import STANDARD_TYPES

from curation import trajectory as fmt
from curation.review import FIXABLE_KINDS
from curation.selectors import INFO_FLAG_KINDS

# Prose longer than this is shown as its head and tail, the middle one click away: a 32k-token
# trajectory then renders a few kilobytes of prose per reasoning run instead of all of it.
COLLAPSE_CHARS = 1800
HEAD_CHARS = 700
TAIL_CHARS = 350
INFO_KINDS = frozenset(INFO_FLAG_KINDS)
RENAME_KINDS = frozenset({"identifier_twin", "harness_name", "undefined_name"})
_QUOTED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_.]*)'")


@dataclass(frozen=True)
class FlagView:
    kind: str
    message: str
    start: int  # absolute offsets in the text
    end: int
    segment_index: int | None
    anchor: str  # the id of its highlight on the page
    excerpt: str
    hidden: bool = False  # inside a collapsed stretch: the page must expand it first

    @property
    def level(self) -> str:
        return "info" if self.kind in INFO_KINDS else "warning"

    @property
    def label(self) -> str:
        return self.kind.replace("_", " ")

    @property
    def fixable(self) -> bool:
        return self.kind in FIXABLE_KINDS

    @property
    def rename(self) -> tuple[str, str] | None:
        """A suggested (old, new) rename: the flagged name and the last other name quoted."""
        if self.kind not in RENAME_KINDS:
            return None
        old = self.excerpt.strip()
        others = [n.rsplit(".", 1)[-1] for n in _QUOTED_NAME.findall(self.message)]
        others = [n for n in others if n != old and n.isidentifier()]
        if not old.isidentifier() or not others:
            return None
        return old, others[-1]


@dataclass(frozen=True)
class Mark:
    kind: str
    message: str
    start: int  # offsets in the displayed text
    end: int
    anchor: str


@dataclass(frozen=True)
class Piece:
    text: str
    mark: Mark | None = None
    first: bool = True  # the first piece of its mark carries the anchor id


@dataclass
class SegmentView:
    index: int
    kind: str
    text: str  # the segment's whole text (editors start from it)
    label: str
    cell_number: int | None = None
    pieces: list[Piece] = field(default_factory=list)
    tail: list[Piece] = field(default_factory=list)
    hidden_chars: int = 0  # > 0: collapsed, `pieces` is the head
    code_html: SafeString | None = None
    gutter: str = ""
    flags: list[FlagView] = field(default_factory=list)  # all flags of the segment
    notes: list[FlagView] = field(default_factory=list)  # those not highlighted inline
    has_output: bool = False
    in_answer: bool = False

    @property
    def ref(self) -> str:
        """The index as text, for ids and URLs: Django localizes every int it renders, which
        was a tenth of a long trajectory's render time."""
        return str(self.index)

    @property
    def blank(self) -> bool:
        return self.kind == "think" and not self.text.strip()

    @property
    def editable_as_text(self) -> bool:
        return self.kind in ("think", "hint", "answer")


# --- Flags ------------------------------------------------------------------------------------


def segment_of(spans: Sequence[tuple[int, int]], offset: int) -> int | None:
    for index, (start, end) in enumerate(spans):
        if start <= offset < end:
            return index
    return len(spans) - 1 if spans and offset == spans[-1][1] else None


def flag_views(
    text: str,
    segments: Sequence[fmt.Segment],
    flags: Iterable,
    *,
    expand: Iterable[int] = (),
) -> list[FlagView]:
    """Flags (model rows or check results) in text order, with their segment and page anchor."""
    spans = fmt.segment_spans(segments)
    expand = set(expand)
    per_segment: dict[int | None, int] = {}
    views = []
    for flag in sorted(flags, key=lambda f: (f.start, f.end, f.kind)):
        index = segment_of(spans, flag.start)
        number = per_segment.get(index, 0)
        per_segment[index] = number + 1
        hidden = False
        if index is not None and index not in expand:
            visible = _visible_ranges(segments[index])
            if visible is not None:
                s0 = spans[index][0]
                hidden = not any(a <= flag.start - s0 < b for a, b in visible)
        views.append(
            FlagView(
                kind=flag.kind,
                message=flag.message,
                start=flag.start,
                end=flag.end,
                segment_index=index,
                anchor=f"flag-{index}-{number}",
                excerpt=text[flag.start : min(flag.end, flag.start + 80)],
                hidden=hidden,
            )
        )
    return views


def _visible_ranges(segment: fmt.Segment) -> list[tuple[int, int]] | None:
    """The (head, tail) ranges of a collapsed prose segment, in segment offsets; None: all shown."""
    if segment.kind not in ("think", "answer") or len(segment.text) <= COLLAPSE_CHARS:
        return None
    text = segment.text
    head = _cut_before(text, HEAD_CHARS)
    tail = _cut_after(text, len(text) - TAIL_CHARS)
    return [(0, head), (tail, len(text))]


def _cut_before(text: str, limit: int) -> int:
    """A cut near `limit` at a line or word end, so the head does not stop mid-word."""
    for separator in ("\n", " "):
        at = text.rfind(separator, limit - 300, limit)
        if at > 0:
            return at + 1
    return limit


def _cut_after(text: str, limit: int) -> int:
    for separator in ("\n", " "):
        at = text.find(separator, limit, limit + 300)
        if at > 0:
            return at + 1
    return limit


# --- Segments ---------------------------------------------------------------------------------


def display_prefix(segment: fmt.Segment) -> str:
    """The marker a prose segment starts with (``<think>``, ``</think>`` and the blank lines
    after it): shown as a label, kept out of the editor, put back on save."""
    text = segment.text
    if segment.kind == "think" and text.startswith(fmt.THINK_START):
        newline = text[len(fmt.THINK_START) :].startswith("\n")
        return text[: len(fmt.THINK_START) + newline]
    if segment.kind == "answer" and text.startswith(fmt.THINK_END):
        rest = text[len(fmt.THINK_END) :]
        return text[: len(text) - len(rest.lstrip("\n"))]
    return ""


def _marks(flags: Sequence[FlagView], base: int, length: int) -> list[Mark]:
    """The flags of one displayed text (starting at absolute `base`), clipped to it."""
    marks = []
    for flag in flags:
        start, end = max(flag.start - base, 0), min(flag.end - base, length)
        if start < end:
            marks.append(Mark(flag.kind, flag.message, start, end, flag.anchor))
    return marks


def pieces(text: str, marks: Sequence[Mark], lo: int = 0, hi: int | None = None) -> list[Piece]:
    """Split text[lo:hi] at the marks' boundaries; overlapping marks: the earlier one wins."""
    hi = len(text) if hi is None else hi
    result: list[Piece] = []
    position = lo
    for mark in sorted(marks, key=lambda m: (m.start, -m.end)):
        start, end = max(mark.start, position), min(mark.end, hi)
        if start >= end:
            continue
        if start > position:
            result.append(Piece(text[position:start]))
        result.append(Piece(text[start:end], mark, first=start == mark.start))
        position = end
    if position < hi:
        result.append(Piece(text[position:hi]))
    return result


def segment_keys(segments: Sequence[fmt.Segment], flags: Sequence[FlagView]) -> list[tuple]:
    """What each segment's rendering depends on: equal keys, equal HTML (no need to swap)."""
    by_segment: dict[int | None, list[tuple]] = {}
    spans = fmt.segment_spans(segments)
    for flag in flags:
        if flag.segment_index is not None:
            base = spans[flag.segment_index][0]
            by_segment.setdefault(flag.segment_index, []).append(
                (flag.kind, flag.message, flag.start - base, flag.end - base, flag.anchor)
            )
    numbers = _cell_numbers(segments)
    return [
        (
            s.kind,
            s.text,
            tuple(by_segment.get(i, ())),
            numbers.get(i),
            numbers.get(i - 1),
            i + 1 < len(segments) and segments[i + 1].kind == "output",
        )
        for i, s in enumerate(segments)
    ]


def _cell_numbers(segments: Sequence[fmt.Segment]) -> dict[int, int]:
    numbers = {}
    for index, segment in enumerate(segments):
        if segment.kind == "code":
            numbers[index] = len(numbers) + 1
    return numbers


def segment_views(
    segments: Sequence[fmt.Segment],
    flags: Sequence[FlagView],
    *,
    only: Iterable[int] | None = None,
    expand: Iterable[int] = (),
) -> list[SegmentView]:
    """View objects for the segments (all, or the indices `only`), flags placed inline."""
    spans = fmt.segment_spans(segments)
    numbers = _cell_numbers(segments)
    answer_at = fmt.answer_start(segments)
    expand = set(expand)
    by_segment: dict[int, list[FlagView]] = {}
    for flag in flags:
        if flag.segment_index is not None:
            by_segment.setdefault(flag.segment_index, []).append(flag)
    wanted = range(len(segments)) if only is None else sorted(set(only))
    views = []
    for index in wanted:
        segment = segments[index]
        view = SegmentView(index=index, kind=segment.kind, text=segment.text, label="")
        view.in_answer = answer_at is not None and index > answer_at
        view.has_output = index + 1 < len(segments) and segments[index + 1].kind == "output"
        view.flags = by_segment.get(index, [])
        _fill(view, segment, spans[index][0], by_segment.get(index, []), numbers, index in expand)
        views.append(view)
    return views


def _fill(
    view: SegmentView,
    segment: fmt.Segment,
    base: int,
    flags: list[FlagView],
    numbers: dict[int, int],
    expanded: bool,
) -> None:
    text = segment.text
    if segment.kind == "code":
        view.cell_number = numbers[view.index]
        view.label = f"Cell {view.cell_number}"
        opening = text.find("\n") + 1 if "\n" in text else len(text)
        body = segment.body
        marks = _marks(flags, base + opening, len(body))
        view.code_html = highlight_python(body, tuple(marks))
        view.gutter = "\n".join(str(n) for n in range(1, body.count("\n") + 2))
        inline = {m.anchor for m in marks}
        view.notes = [f for f in flags if f.anchor not in inline]
        return
    if segment.kind == "output":
        cell = numbers.get(view.index - 1)
        view.label = f"Output of cell {cell}" if cell else "Output (no cell before it)"
        opening = text.find("\n") + 1 if "\n" in text else len(text)
        body = segment.body
        view.pieces = pieces(body, _marks(flags, base + opening, len(body)))
        inline = {m.anchor for m in _marks(flags, base + opening, len(body))}
        view.notes = [f for f in flags if f.anchor not in inline]
        return
    # Prose and hints: the think/answer markers are shown as labels, not as text.
    prefix = len(display_prefix(segment))
    view.label = {"think": "Reasoning", "hint": "Hint", "answer": "Answer"}[segment.kind]
    shown = text[prefix:]
    marks = _marks(flags, base + prefix, len(shown))
    visible = None if expanded else _visible_ranges(segment)
    if visible is None:
        view.pieces = pieces(shown, marks)
    else:
        (_, head_end), (tail_start, _) = visible
        head_end, tail_start = max(head_end - prefix, 0), max(tail_start - prefix, 0)
        view.pieces = pieces(shown, marks, 0, head_end)
        view.tail = pieces(shown, marks, tail_start, len(shown))
        view.hidden_chars = tail_start - head_end
    inline = {m.anchor for m in marks}
    view.notes = [f for f in flags if f.anchor not in inline]


# --- Code -------------------------------------------------------------------------------------


# The token classes that static/ui/pygments.css (Pygments' "default" style) colours. Names and
# punctuation, most of a cell's tokens, have no style there: they stay unwrapped text.
_STYLE = get_style_by_name("default")
STYLED_CLASSES = frozenset(
    css
    for ttype, css in STANDARD_TYPES.items()
    if css and any(_STYLE.style_for_token(ttype).values())
)


def _token_class(ttype) -> str:
    """The token's CSS class, "" when the stylesheet gives it no style."""
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    css = STANDARD_TYPES[ttype]
    return css if css in STYLED_CLASSES else ""


@functools.lru_cache(maxsize=1024)
def highlight_python(code: str, marks: tuple[Mark, ...] = ()) -> SafeString:
    """Python code as HTML: Pygments' tokens in its CSS classes, flags as <mark>, all escaped.

    Built from the lexer's tokens (not HtmlFormatter) so that flag highlights can cut through
    tokens at exact character offsets. Cached: a page shows the same cells again and again.
    """
    boundaries = sorted({0, len(code), *(b for m in marks for b in (m.start, m.end))})
    out: list[str] = []
    open_mark: Mark | None = None
    for position, css, value in _runs(code):
        end = position + len(value)
        cuts = [b for b in boundaries if position < b < end]
        for lo, hi in zip([position, *cuts], [*cuts, end], strict=True):
            mark = next((m for m in marks if m.start <= lo < m.end), None)
            if mark is not open_mark:
                if open_mark is not None:
                    out.append("</mark>")
                if mark is not None:
                    out.append(_open_mark(mark, first=lo == mark.start))
                open_mark = mark
            chunk = html.escape(code[lo:hi], quote=False)
            out.append(f'<span class="{css}">{chunk}</span>' if css else chunk)
    if open_mark is not None:
        out.append("</mark>")
    # Safe: every character of `code` went through html.escape above.
    return mark_safe("".join(out))


def _runs(code: str) -> list[tuple[int, str, str]]:
    """(offset, css class, text) of the code's tokens; neighbours of one class are merged, and
    whitespace and unstyled tokens are left unwrapped, which keeps a long trajectory's page
    lean."""
    runs: list[tuple[int, str, str]] = []
    for position, ttype, value in PythonLexer(stripnl=False, ensurenl=False).get_tokens_unprocessed(
        code
    ):
        css = "" if value.isspace() else _token_class(ttype)
        if runs and runs[-1][1] == css:
            start, _, text = runs[-1]
            runs[-1] = (start, css, text + value)
        else:
            runs.append((position, css, value))
    return runs


def _open_mark(mark: Mark, *, first: bool) -> str:
    anchor = f' id="{html.escape(mark.anchor)}"' if first else ""
    return (
        f'<mark class="flag flag-{html.escape(mark.kind)}"{anchor}'
        f' title="{html.escape(mark.message)}">'
    )

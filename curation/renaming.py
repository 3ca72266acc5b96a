"""Renaming an identifier across a trajectory's code cells: the plan an annotator previews.

Pure (no Django): Python's own tokenizer finds identifier tokens, so strings and comments are
left alone unless asked, and f-string replacement fields, which are code, are renamed.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field

from curation import trajectory as fmt

_FSTRING_PREFIX = re.compile(r"^([rRbBuUfF]*)('''|\"\"\"|'|\")")


@dataclass(frozen=True)
class LineChange:
    line: int  # 1-based, in the cell
    before: str
    after: str
    before_columns: tuple[tuple[int, int], ...]  # the old name's spans in `before`
    columns: tuple[tuple[int, int], ...]  # the new name's spans in `after`


@dataclass
class CellRename:
    segment_index: int
    cell_number: int  # 1-based, as the page numbers cells
    body: str
    spans: list[tuple[int, int]] = field(default_factory=list)  # in the body
    text_mentions: list[tuple[int, int]] = field(default_factory=list)  # strings, comments
    error: str = ""


@dataclass
class RenamePlan:
    """Where `old` becomes `new`: identifier tokens in every code cell.

    Strings and comments are left alone unless `in_text` (then whole-word mentions there change
    too); f-string replacement fields are code, so names in them are renamed.
    """

    old: str
    new: str
    in_text: bool
    cells: list[CellRename]
    new_name_in_use: list[int]  # cells where `new` is already an identifier: the names merge

    @property
    def count(self) -> int:
        return sum(len(self._spans(c)) for c in self.cells)

    @property
    def skipped_mentions(self) -> int:
        return 0 if self.in_text else sum(len(c.text_mentions) for c in self.cells)

    def _spans(self, cell: CellRename) -> list[tuple[int, int]]:
        return sorted(cell.spans + (cell.text_mentions if self.in_text else []))

    def renamed_body(self, cell: CellRename) -> str:
        body = cell.body
        for start, end in reversed(self._spans(cell)):
            body = body[:start] + self.new + body[end:]
        return body

    def line_changes(self, cell: CellRename) -> list[LineChange]:
        """Each changed line of the cell, before and after, with the renamed columns."""
        spans = self._spans(cell)
        changes = []
        offset = 0
        for number, line in enumerate(cell.body.split("\n"), start=1):
            line_end = offset + len(line)
            here = [(s - offset, e - offset) for s, e in spans if offset <= s < line_end]
            if here:
                after, columns, shift = line, [], 0
                for s, e in here:
                    after = after[: s + shift] + self.new + after[e + shift :]
                    columns.append((s + shift, s + shift + len(self.new)))
                    shift += len(self.new) - (e - s)
                changes.append(LineChange(number, line, after, tuple(here), tuple(columns)))
            offset = line_end + 1
        return changes

    def apply(self, segments: Sequence[fmt.Segment]) -> list[fmt.Segment]:
        result = list(segments)
        for cell in self.cells:
            if self._spans(cell):
                result = fmt.replace_segment(result, cell.segment_index, self.renamed_body(cell))
        return result


def _word_spans(text: str, name: str, base: int) -> list[tuple[int, int]]:
    pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
    return [(base + m.start(), base + m.end()) for m in pattern.finditer(text)]


def _fstring_fields(token: str) -> list[tuple[int, str]]:
    """(offset, expression) of each replacement field of an f-string token, nested ones too."""
    match = _FSTRING_PREFIX.match(token)
    if not match or "f" not in match.group(1).lower():
        return []
    body_start = match.end()
    body_end = len(token) - len(match.group(2))
    fields: list[tuple[int, str]] = []
    i = body_start
    while i < body_end:
        if token.startswith("{{", i):
            i += 2
            continue
        if token[i] != "{":
            i += 1
            continue
        depth, j, quote = 1, i + 1, ""
        expression_end = None
        while j < body_end and depth:
            char = token[j]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
            elif (
                char in "!:"
                and depth == 1
                and expression_end is None
                and not token.startswith("!=", j)
            ):
                expression_end = j
            j += 1
        close = j - 1
        expression_end = close if expression_end is None else expression_end
        fields.append((i + 1, token[i + 1 : expression_end]))
        # A format spec may hold nested fields ("{x:{width}}").
        spec = token[expression_end:close]
        fields += [
            (expression_end + 1 + k.start(1), k.group(1))
            for k in re.finditer(r"\{([^{}]*)\}", spec[1:])
        ]
        i = j
    return fields


def _name_spans(code: str, name: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]], str]:
    """(identifier spans, whole-word mentions in strings and comments, tokenizer error)."""
    line_starts = [0]
    for m in re.finditer("\n", code):
        line_starts.append(m.end())

    def offset(position: tuple[int, int]) -> int:
        return line_starts[position[0] - 1] + position[1]

    names: list[tuple[int, int]] = []
    mentions: list[tuple[int, int]] = []
    error = ""
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            start = offset(token.start) if token.start[0] <= len(line_starts) else len(code)
            if token.type == tokenize.NAME and token.string == name:
                names.append((start, start + len(name)))
            elif token.type == tokenize.STRING:
                fields = _fstring_fields(token.string)
                covered = []
                for field_offset, expression in fields:
                    inner, _, _ = _name_spans(expression, name)
                    at = start + field_offset
                    names += [(at + s, at + e) for s, e in inner]
                    covered.append((field_offset, field_offset + len(expression)))
                for s, e in _word_spans(token.string, name, 0):
                    if not any(a <= s < b for a, b in covered):
                        mentions.append((start + s, start + e))
            elif token.type == tokenize.COMMENT:
                mentions += _word_spans(token.string, name, start)
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        error = f"could not read all of it ({type(exc).__name__}): the rest is unchanged"
    return names, mentions, error


def _check_identifier(name: str, what: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{what} {name!r} is not a Python identifier")


def rename_plan(
    *, segments: Sequence[fmt.Segment], old: str, new: str, in_text: bool = False
) -> RenamePlan:
    """The preview of renaming `old` to `new` in every code cell (pure: nothing is saved)."""
    old, new = old.strip(), new.strip()
    _check_identifier(old, "the old name")
    _check_identifier(new, "the new name")
    if old == new:
        raise ValueError("the old and the new name are the same")
    cells = []
    in_use: list[int] = []
    number = 0
    for index, segment in enumerate(segments):
        if segment.kind != "code":
            continue
        number += 1
        names, mentions, error = _name_spans(segment.body, old)
        cells.append(CellRename(index, number, segment.body, names, mentions, error))
        if _name_spans(segment.body, new)[0]:
            in_use.append(number)
    touched = [c for c in cells if c.spans or c.text_mentions or c.error]
    plan = RenamePlan(old, new, in_text, touched, in_use)
    if not plan.count:
        raise ValueError(f"{old!r} does not occur as an identifier in any code cell")
    return plan

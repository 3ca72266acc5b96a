"""Checks that flag what an annotator should look at in a trajectory.

``find_flags(text, problem=None) -> list[Flag]``; every flag points at a segment and an absolute
character span of ``text`` so the UI can highlight it. Kinds (short, stable strings):

- ``placeholder``: ``...`` as a statement or value, ``pass``-only bodies, ``raise
  NotImplementedError``, ``# your code here`` / ``TODO`` comments, ``<placeholder>`` names,
  template names copied from the debug hint (``test_input_1``, ``method_name``);
- ``syntax_error``: a code cell that does not parse;
- ``undefined_name``: a name a cell uses but never defines (pyflakes; cells run alone by default);
- ``identifier_twin``: one identifier spelled two ways in the trajectory (``total_sum`` /
  ``totl_sum`` / ``totalSum``);
- ``harness_name``: the class or function the problem's harness calls is missing or misnamed;
- ``code_error``: an output block that shows a traceback or an error;
- ``output_truncated``: an output block that was clipped, never closed, or hit a limit (timeout,
  memory);
- ``fake_output``: an output block that does not follow a code block (the model wrote it);
- ``stale_output`` (level ``error``): an output block whose code changed since it ran (checked when
  the caller passes the digests of the outputs known to be true, see ``output_sources``);
- ``unclosed_code``: a code block that never closed;
- ``repetition``: a run of repeated text (looping n-grams, copied paragraphs, a stuttered unit);
- ``hint`` (level ``info``): where a hint was inserted and how many there are.

No Django here; pyflakes does the name analysis.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import re
import tokenize
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pyflakes import checker as pyflakes_checker
from pyflakes import messages as pyflakes_messages

from curation import trajectory as fmt
from curation.execution import CUT_MARKER, LIMIT_NOTE
from curation.hints import HINTS, Hint

KINDS = (
    "placeholder",
    "syntax_error",
    "undefined_name",
    "identifier_twin",
    "harness_name",
    "code_error",
    "output_truncated",
    "fake_output",
    "stale_output",
    "unclosed_code",
    "repetition",
    "hint",
)


@dataclass(frozen=True)
class Flag:
    kind: str
    message: str
    segment_index: int | None
    start: int
    end: int
    level: str = "warning"  # "info" | "warning" | "error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Problem(Protocol):
    domain: str
    entry_point: str
    starter_code: str
    tests: Sequence[Mapping[str, Any]]


@dataclass
class _Cell:
    """A code segment with what the checks need to point into the text."""

    index: int  # segment index
    body: str
    body_start: int  # absolute offset of the body in the text
    line_starts: list[int]  # offsets of each body line, relative to body_start
    tree: ast.Module | None
    syntax_error: str | None = None
    error_line: int = 1

    def offset(self, lineno: int, col: int = 0) -> int:
        """Absolute offset of an ast/pyflakes position (1-based line, UTF-8 byte column)."""
        if not 1 <= lineno <= len(self.line_starts):
            return self.body_start
        start = self.line_starts[lineno - 1]
        line = self.body[start:].split("\n", 1)[0]
        chars = len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))
        return self.body_start + start + chars

    def node_span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)
        end_line = getattr(node, "end_lineno", None) or node.lineno
        end_col = getattr(node, "end_col_offset", None)
        end = self.offset(end_line, end_col) if end_col is not None else start + 1
        return start, max(end, start + 1)


def _cells(segments: Sequence[fmt.Segment]) -> list[_Cell]:
    cells = []
    for index, (segment, (start, _)) in enumerate(
        zip(segments, fmt.segment_spans(segments), strict=True)
    ):
        if segment.kind != "code":
            continue
        body = segment.body
        opening = segment.text.find("\n") + 1 if "\n" in segment.text else len(segment.text)
        line_starts = [0] + [m.end() for m in re.finditer("\n", body)]
        cell = _Cell(index, body, start + opening, line_starts, None)
        try:
            cell.tree = ast.parse(body)
        except SyntaxError as exc:
            cell.syntax_error, cell.error_line = exc.msg, exc.lineno or 1
        except ValueError as exc:  # e.g. a NUL byte in the source
            cell.syntax_error = str(exc)
        cells.append(cell)
    return cells


# ---------------------------------------------------------------------------------------------
# Placeholders

_PLACEHOLDER_COMMENT = re.compile(
    r"\b(your (code|solution|logic|implementation) (goes )?here|todo|fixme|to be implemented"
    r"|implement (this|me|here|the (logic|solution))|fill (in|this)|rest of (the )?(code|logic)"
    r"|placeholder|add (your )?(code|logic) here|\.\.\. ?rest)\b",
    re.IGNORECASE,
)
_PLACEHOLDER_NAME = re.compile(
    r"^(your_\w+|\w*placeholder\w*|\w+_here|test_input_\d\w*|expected_output_\d\w*|method_name)$",
    re.IGNORECASE,
)
# "<number of cases>" where an operand belongs: a syntax error in Python, a placeholder in practice.
_ANGLE_PLACEHOLDER = re.compile(r"(?:^|[=(,\[{:]|\breturn)\s*(<[A-Za-z_][\w .\-]{0,40}>)", re.M)
_ANGLE_STRING = re.compile(r"^\s*<[^<>\n]{1,40}>\s*$")


# Blocks whose `pass`-only body is a placeholder (not `except: pass` or a marker class).
_PASS_BODIES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.While, ast.If)


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _placeholder_nodes(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """(node, message) for each placeholder the syntax tree shows."""
    # numpy's arr[..., 0] and tuple[int, ...] are real uses of Ellipsis; an `...` statement is
    # reported once, through its Expr.
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            skip.update(id(n) for n in ast.walk(node.slice))
        elif isinstance(node, ast.Expr):
            skip.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and _is_ellipsis(node.value):
            yield node, "`...` as a statement: code left out"
        elif _is_ellipsis(node) and id(node) not in skip:
            yield node, "`...` used as a value: a placeholder, not data"
        elif isinstance(node, _PASS_BODIES) and not (isinstance(node, ast.If) and node.orelse):
            body = [s for s in node.body if not _is_docstring(s)]
            if body and all(isinstance(s, ast.Pass) for s in body):
                what = f"function {node.name!r}" if hasattr(node, "name") else "block"
                yield body[0], f"{what} has only `pass` as its body"
        elif isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                yield node, "raises NotImplementedError: left unimplemented"
        elif isinstance(node, ast.Name) and _PLACEHOLDER_NAME.match(node.id):
            yield node, f"placeholder name {node.id!r}"
        elif isinstance(node, ast.Attribute) and _PLACEHOLDER_NAME.match(node.attr):
            yield node, f"placeholder name {node.attr!r}"
        elif isinstance(node, ast.FunctionDef) and _PLACEHOLDER_NAME.match(node.name):
            yield node, f"placeholder name {node.name!r}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (_ANGLE_STRING.match(node.value) or node.value.strip() in ("...", "…"))
        ):
            yield node, f"placeholder string {node.value.strip()!r}"


def _is_ellipsis(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _comments(body: str) -> Iterator[tuple[int, int, str]]:
    """(line, column, text) of each comment; a line scan when tokenize gives up."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(body).readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.start[1], token.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        for lineno, line in enumerate(body.split("\n"), start=1):
            hash_at = line.find("#")
            if hash_at >= 0:
                yield lineno, hash_at, line[hash_at:]


def _placeholder_flags(cell: _Cell) -> Iterator[Flag]:
    seen: set[tuple[int, int]] = set()

    def flag(start: int, end: int, message: str) -> Iterator[Flag]:
        if (start, end) not in seen:
            seen.add((start, end))
            yield Flag("placeholder", message, cell.index, start, end)

    if cell.tree is not None:
        for node, message in _placeholder_nodes(cell.tree):
            yield from flag(*cell.node_span(node), message)
    for lineno, col, comment in _comments(cell.body):
        if _PLACEHOLDER_COMMENT.search(comment):
            start = cell.body_start + cell.line_starts[lineno - 1] + col
            yield from flag(start, start + len(comment), f"placeholder comment {comment.strip()!r}")
    for match in _ANGLE_PLACEHOLDER.finditer(cell.body):
        start = cell.body_start + match.start(1)
        yield from flag(start, start + len(match.group(1)), f"placeholder {match.group(1)!r}")


# ---------------------------------------------------------------------------------------------
# Identifiers


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _name_nodes(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Each identifier occurrence (names, definitions, arguments, ``self.`` attributes)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id, node
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            yield f"self.{node.attr}", node
        elif isinstance(node, ast.arg):
            yield node.arg, node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, node


def _def_name_span(cell: _Cell, node: ast.AST, name: str) -> tuple[int, int]:
    """The span of a name; for a def/class, of its name rather than the whole statement."""
    start, end = cell.node_span(node)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        line_end = cell.offset(node.lineno + 1) if node.lineno < len(cell.line_starts) else end
        at = cell.body.find(name, start - cell.body_start, line_end - cell.body_start)
        if at >= 0:
            return cell.body_start + at, cell.body_start + at + len(name)
    return start, end


def _style_key(name: str) -> str:
    return name.replace("_", "").lower()


def _one_edit_apart(a: str, b: str) -> bool:
    """One character dropped or added, or two neighbours swapped: the usual typing slips.

    A substituted letter is left out on purpose: ``count_ways``/``count_days`` are two words.
    """
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) == 1:
        return any(b[:i] + b[i + 1 :] == a for i in range(len(b)))
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    return False


def _are_twins(a: str, b: str) -> bool:
    """Two identifiers that look like one spelled two ways (style or a slip), not two variables."""
    if a == b or min(len(a), len(b)) < 4:
        return False
    # solution = Solution(), tuple/Tuple: a class and its instance, by convention.
    if a[1:] == b[1:] and a[0].lower() == b[0].lower():
        return False
    if _style_key(a) == _style_key(b):
        return True
    # x1/x2 and item/items are different variables on purpose.
    if re.sub(r"\d", "", a) == re.sub(r"\d", "", b) or a.rstrip("s") == b.rstrip("s"):
        return False
    return min(len(a), len(b)) >= 5 and _one_edit_apart(a, b)


def _identifier_flags(cells: Sequence[_Cell], *, shared_state: bool) -> Iterator[Flag]:
    parsed = [c for c in cells if c.tree is not None]
    defined_by_cell = {c.index: _defined_names(c.tree) for c in parsed}  # type: ignore[arg-type]
    all_defined = set().union(*defined_by_cell.values()) if defined_by_cell else set()
    earlier: set[str] = set()
    undefined: set[str] = set()
    for cell in parsed:
        assert cell.tree is not None
        for message in pyflakes_checker.Checker(cell.tree, filename="<cell>").messages:
            if not isinstance(
                message, pyflakes_messages.UndefinedName | pyflakes_messages.UndefinedLocal
            ):
                continue
            name = message.message_args[0]
            undefined.add(name)
            # A template name copied from a hint is reported once, as a placeholder.
            if (shared_state and name in earlier) or _PLACEHOLDER_NAME.match(name):
                continue
            start = cell.offset(message.lineno, message.col)
            text = f"undefined name {name!r}"
            similar = difflib.get_close_matches(name, sorted(all_defined - {name}), n=1, cutoff=0.8)
            if name in earlier:
                text += " (an earlier cell defines it, but each cell runs alone)"
            elif similar:
                text += f" (did you mean {similar[0]!r}?)"
            yield Flag("undefined_name", text, cell.index, start, start + len(name), "error")
        earlier |= defined_by_cell[cell.index]

    occurrences: dict[str, list[tuple[int, _Cell, ast.AST]]] = defaultdict(list)
    for cell in parsed:
        for name, node in _name_nodes(cell.tree):  # type: ignore[arg-type]
            occurrences[name].append((cell.node_span(node)[0], cell, node))
    for found in occurrences.values():
        found.sort(key=lambda occurrence: occurrence[0])
    # The spelling used more, or first, is the established one; the other is flagged.
    names = sorted(occurrences, key=lambda n: (-len(occurrences[n]), occurrences[n][0][0]))
    reported: set[frozenset[str]] = set()
    for i, common in enumerate(names):
        for rare in names[i + 1 :]:
            pair = frozenset((common, rare))
            # An undefined twin is already an undefined_name flag that suggests the other.
            if pair in reported or rare in undefined or not _are_twins(common, rare):
                continue
            reported.add(pair)
            _, cell, node = occurrences[rare][0]
            start, end = _def_name_span(cell, node, rare)
            yield Flag(
                "identifier_twin",
                f"{rare!r} looks like {common!r} spelled another way: one identifier, one spelling",
                cell.index,
                start,
                end,
            )


# ---------------------------------------------------------------------------------------------
# Harness names


def _close_names(a: str, b: str) -> bool:
    return _style_key(a) == _style_key(b) or (
        difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio() >= 0.6
    )


def _public_functions(body: Iterable[ast.stmt]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [
        n
        for n in body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")
    ]


def _harness_flags(cells: Sequence[_Cell], problem: Problem) -> Iterator[Flag]:
    """Definitions that should carry the name the problem's harness calls, and do not."""
    entry = (problem.entry_point or "").strip()
    parsed = [c for c in cells if c.tree is not None]
    if problem.domain != "code" or not entry or not parsed:
        return
    cls, _, func = entry.rpartition(".")

    def flag(cell: _Cell, node: ast.AST, wanted: str) -> Flag:
        name = node.name  # type: ignore[attr-defined]
        start, end = _def_name_span(cell, node, name)
        message = f"{name!r} but the harness calls {wanted!r} ({entry})"
        return Flag("harness_name", message, cell.index, start, end, "error")

    flags: list[Flag] = []
    found = False
    if cls:
        classes = [(c, n) for c in parsed for n in ast.walk(c.tree) if isinstance(n, ast.ClassDef)]
        named = [(c, n) for c, n in classes if n.name == cls]
        misnamed = [(c, n) for c, n in classes if n.name != cls and _close_names(n.name, cls)]
        if not named and not misnamed and len({n.name for _, n in classes}) == 1:
            misnamed = classes  # the one class there is stands for the harness's class
        flags += [flag(c, n, cls) for c, n in misnamed]
        for cell, node in named + misnamed:
            methods = _public_functions(node.body)
            if any(m.name == func for m in methods):
                found = found or node.name == cls
                continue
            wrong = [m for m in methods if _close_names(m.name, func)] or methods[:1]
            flags += [flag(cell, m, func) for m in wrong]
    else:
        functions = [(c, n) for c in parsed for n in _public_functions(c.tree.body)]  # type: ignore[union-attr]
        found = any(n.name == func for _, n in functions)
        if not found:
            flags += [flag(c, n, func) for c, n in functions if _close_names(n.name, func)]
    yield from flags
    if not found and not flags:
        last = parsed[-1]
        yield Flag(
            "harness_name",
            f"no cell defines {entry!r}, which the harness calls",
            last.index,
            last.body_start,
            last.body_start + len(last.body),
            "error",
        )


# ---------------------------------------------------------------------------------------------
# Tool-call health

_ERROR_LINE = re.compile(
    r"^(?:Traceback \(most recent call last\):|\w*(?:Error|Exception)\b(?::.*)?)$", re.MULTILINE
)
# Other runners' wordings for a cut or a limit (outputs pasted from elsewhere, older data); the
# project's own are curation.execution's CUT_MARKER and LIMIT_NOTE.
_OTHER_TRUNCATED = re.compile(
    r"\[\.\.\. ?\d+ \w+ cut \.\.\.\]|\[?(?:output )?(?:truncated|clipped)\b"
    r"|\(\d+ more (?:chars|characters|bytes|lines)\)",
    re.IGNORECASE,
)
_OTHER_LIMIT = re.compile(
    r"timed? ?out|time limit|TimeoutError|MemoryError|memory limit|\bKilled\b|CPU time"
    r"|too many processes|too much output",
    re.IGNORECASE,
)


def _limit(text: str) -> re.Match[str] | None:
    return LIMIT_NOTE.search(text) or _OTHER_LIMIT.search(text)


def _truncated(text: str) -> re.Match[str] | None:
    return CUT_MARKER.search(text) or _OTHER_TRUNCATED.search(text)


def _answered_cell(segments: Sequence[fmt.Segment], index: int) -> int | None:
    """The code cell the output block at ``index`` answers (blank prose may sit between)."""
    previous = index - 1
    while (
        previous >= 0 and segments[previous].kind == "think" and not segments[previous].text.strip()
    ):
        previous -= 1
    return previous if previous >= 0 and segments[previous].kind == "code" else None


def _follows_code(segments: Sequence[fmt.Segment], index: int) -> bool:
    """Whether the output block at ``index`` answers a code block (blank prose may sit between)."""
    return _answered_cell(segments, index) is not None


def _error_lines(body: str) -> list[re.Match[str]]:
    # A limit is reported as output_truncated, not as an error of the code.
    return [m for m in _ERROR_LINE.finditer(body) if not _limit(m.group())]


def _tool_flags(
    segments: Sequence[fmt.Segment], spans: Sequence[tuple[int, int]]
) -> Iterator[Flag]:
    for i, segment in enumerate(segments):
        start, end = spans[i]
        if segment.kind == "code" and not segment.closed:
            yield Flag("unclosed_code", "code block never closed", i, start, end, "error")
        if segment.kind != "output":
            continue
        body_start = start + segment.text.find("\n") + 1
        if not _follows_code(segments, i):
            yield Flag(
                "fake_output",
                "output block that follows no code block: the model wrote it, not the interpreter",
                i,
                start,
                end,
                "error",
            )
        body = segment.body
        errors = _error_lines(body)
        if errors:
            last = errors[-1]  # the exception line; a traceback header comes first
            yield Flag(
                "code_error",
                f"the code raised: {last.group().strip()[:200]}",
                i,
                body_start + last.start(),
                body_start + last.end(),
            )
        limit = _limit(body)
        truncated = _truncated(body)
        if not segment.closed or truncated or limit:
            match = limit or truncated
            what = "never closed" if not segment.closed else "hit a limit" if limit else "clipped"
            yield Flag(
                "output_truncated",
                f"output {what}" + (f": {match.group()!r}" if match else ""),
                i,
                body_start + match.start() if match else start,
                body_start + match.end() if match else end,
            )


# ---------------------------------------------------------------------------------------------
# Stale outputs

STALE_OUTPUT = "output is stale: re-run the cell"


@dataclass(frozen=True)
class OutputSource:
    """An output block, the code cell it answers, and the digest of the run that printed it."""

    cell: int  # segment index of the code cell
    output: int  # segment index of the output block
    digest: str


def output_sources(
    segments: Sequence[fmt.Segment], *, shared_state: bool = False
) -> list[OutputSource]:
    """Every output block that answers a code cell, with the digest of its cell's code (with
    ``shared_state``, of every earlier executed cell's code too, as a notebook session replays
    them) and of the output itself.

    An output is true when its digest is one that really ran: the generated text's, or one a
    re-run recorded. Changing the code changes the digest, so its old output no longer matches.
    """
    sources = []
    executed: list[str] = []
    for index, segment in enumerate(segments):
        cell = _answered_cell(segments, index) if segment.kind == "output" else None
        if cell is None:
            continue
        executed.append(segments[cell].body)
        code = executed if shared_state else executed[-1:]
        payload = json.dumps([code, segment.body]).encode()
        sources.append(OutputSource(cell, index, hashlib.sha256(payload).hexdigest()))
    return sources


def stale_outputs(
    segments: Sequence[fmt.Segment], *, true_outputs: Collection[str], shared_state: bool = False
) -> list[OutputSource]:
    """The output blocks whose digest is not among ``true_outputs``."""
    return [
        source
        for source in output_sources(segments, shared_state=shared_state)
        if source.digest not in true_outputs
    ]


# ---------------------------------------------------------------------------------------------
# Repetition

NGRAM = 8
MIN_RUN_WORDS = 24  # a repeated stretch at least this long is a loop, not a turn of phrase
_STUTTER = re.compile(r"(.{1,30}?)\1{9,}", re.DOTALL)
MIN_STUTTER_CHARS = 200


def _prose_words(
    segments: Sequence[fmt.Segment], spans: Sequence[tuple[int, int]]
) -> list[tuple[str, int, int]]:
    words = []
    for segment, (start, _) in zip(segments, spans, strict=True):
        if segment.kind in fmt.PROSE_KINDS:
            words += [
                (m.group().lower(), start + m.start(), start + m.end())
                for m in re.finditer(r"\S+", segment.text)
            ]
    return words


def _repeated_runs(words: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Word index ranges [first, last) covered by n-grams seen earlier, long runs only."""
    seen: set[tuple[str, ...]] = set()
    repeated = [False] * len(words)
    for i in range(len(words) - NGRAM + 1):
        gram = tuple(w for w, _, _ in words[i : i + NGRAM])
        if gram in seen:
            for j in range(i, i + NGRAM):
                repeated[j] = True
        seen.add(gram)
    runs = []
    i = 0
    while i < len(words):
        if not repeated[i]:
            i += 1
            continue
        j = i
        while j < len(words) and repeated[j]:
            j += 1
        if j - i >= MIN_RUN_WORDS:
            runs.append((i, j))
        i = j
    return runs


def _stutters(
    segments: Sequence[fmt.Segment], spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    found = []
    for segment, (start, _) in zip(segments, spans, strict=True):
        if segment.kind in fmt.PROSE_KINDS:
            for match in _STUTTER.finditer(segment.text):
                if len(match.group()) >= MIN_STUTTER_CHARS and match.group(1).strip():
                    found.append((start + match.start(), start + match.end()))
    return found


def repetition_score(text: str, *, segments: Sequence[fmt.Segment] | None = None) -> float:
    """The fraction of the prose (words) inside repeated runs or stutters: 0 clean, 1 a loop."""
    segments = fmt.parse(text) if segments is None else segments  # no hints: they are prose
    spans = fmt.segment_spans(segments)
    words = _prose_words(segments, spans)
    if not words:
        return 0.0
    covered = set()
    for first, last in _repeated_runs(words):
        covered.update(range(first, last))
    for s, e in _stutters(segments, spans):
        covered.update(i for i, (_, ws, we) in enumerate(words) if ws < e and we > s)
    return len(covered) / len(words)


def _repetition_flags(
    segments: Sequence[fmt.Segment], spans: Sequence[tuple[int, int]]
) -> Iterator[Flag]:
    words = _prose_words(segments, spans)
    regions = [(words[a][1], words[b - 1][2], b - a) for a, b in _repeated_runs(words)]
    regions += [(s, e, None) for s, e in _stutters(segments, spans)]
    for start, end, count in sorted(regions):
        index = next(i for i, (s, e) in enumerate(spans) if s <= start < e)
        what = f"{count} words repeat earlier text" if count else "the same few characters repeat"
        yield Flag("repetition", f"repetition: {what}", index, start, end)


# ---------------------------------------------------------------------------------------------
# Hints


def _hint_name(text: str, library: Iterable[Hint]) -> str:
    for hint in library:
        pattern = fmt.hint_pattern(hint.text)
        if pattern and re.fullmatch(pattern, text):
            return hint.name
    return "hint"


def _hint_flags(
    segments: Sequence[fmt.Segment], spans: Sequence[tuple[int, int]], library: Iterable[Hint]
) -> Iterator[Flag]:
    positions = [i for i, s in enumerate(segments) if s.kind == "hint"]
    for number, i in enumerate(positions, start=1):
        name = _hint_name(segments[i].text, library)
        yield Flag("hint", f"hint {number} of {len(positions)}: {name}", i, *spans[i], "info")


# ---------------------------------------------------------------------------------------------


def find_flags(
    text: str,
    problem: Problem | None = None,
    *,
    hints: Iterable[str] = (),
    library: Iterable[Hint] = HINTS,
    shared_state: bool = False,
    true_outputs: Collection[str] | None = None,
) -> list[Flag]:
    """All flags for one trajectory, in text order.

    ``hints`` as for ``trajectory.parse``. ``shared_state``: cells see earlier cells' names (a
    notebook-like sandbox session); by default each cell runs alone, as the rollout runs them.
    ``true_outputs``: the digests of the outputs known to be true (``output_sources``); every
    other output block is stale. None: staleness is not checked.
    """
    segments = fmt.parse(text, hints=hints)
    spans = fmt.segment_spans(segments)
    cells = _cells(segments)
    flags: list[Flag] = []
    for cell in cells:
        if cell.syntax_error and cell.body.strip():
            flags.append(_syntax_flag(cell))
        flags += _placeholder_flags(cell)
    flags += _identifier_flags(cells, shared_state=shared_state)
    if problem is not None:
        flags += _harness_flags(cells, problem)
    flags += _tool_flags(segments, spans)
    if true_outputs is not None:
        flags += [
            Flag("stale_output", STALE_OUTPUT, s.output, *spans[s.output], "error")
            for s in stale_outputs(segments, true_outputs=true_outputs, shared_state=shared_state)
        ]
    flags += _repetition_flags(segments, spans)
    flags += _hint_flags(segments, spans, library)
    return sorted(flags, key=lambda f: (f.start, f.end, f.kind))


def _syntax_flag(cell: _Cell) -> Flag:
    start = cell.offset(cell.error_line)
    line_end = cell.body.find("\n", start - cell.body_start)
    end = cell.body_start + (line_end if line_end >= 0 else len(cell.body))
    message = f"does not parse: {cell.syntax_error}"
    return Flag("syntax_error", message, cell.index, start, max(end, start + 1), "error")


def flag_counts(flags: Iterable[Flag]) -> dict[str, int]:
    """Flags per kind, for filters and selection rules."""
    return dict(Counter(f.kind for f in flags))


@dataclass(frozen=True)
class ToolCalls:
    total: int  # code blocks the interpreter answered
    clean: int  # of which ran without an error, a limit or a cut
    failed: int


def tool_calls(text: str, *, hints: Iterable[str] = ()) -> ToolCalls:
    """Code calls and how they went, for rules like D_seed's "one call ran without error"."""
    segments = fmt.parse(text, hints=hints)
    total = clean = 0
    for i, segment in enumerate(segments):
        if segment.kind != "output" or not _follows_code(segments, i):
            continue
        total += 1
        body = segment.body
        limited = _limit(body) or _truncated(body)
        if segment.closed and not limited and not _error_lines(body):
            clean += 1
    return ToolCalls(total, clean, total - clean)

"""Problems as plain data, and the mapping from the JSONL formats found in the wild to one shape.

``normalize_record`` turns one decoded JSON line into a ``ProblemSpec`` or raises a
``ProblemFormatError`` naming the field at fault. Formats handled (see shared/data/README.md):
``problem`` or ``question`` or ``prompt`` as the statement; answers as numbers (27.0 -> "27"), LaTeX
strings (``$10-4 n$`` -> ``10-4 n``), GSM8K worked solutions ending in ``#### N``; multiple choice
with ``choices`` and an index answer (-> a letter); code problems with ``tests``, ``entry_point``,
``starter_code`` (LiveCodeBench-style ``testtype``/JSON-string tests too). Fields not consumed are
kept in ``metadata``. No Django here: the ``import_problems`` command calls this per line.
"""

from __future__ import annotations

import ast
import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DOMAINS = ("math", "code", "science")
LETTERS = string.ascii_uppercase[:10]  # "A".."J"

_PROMPT_KEYS = ("problem", "question", "prompt", "question_content")
_ID_KEYS = ("id", "idx", "question_number", "task_id", "question_id", "external_id")
_CONSUMED = {
    *_PROMPT_KEYS,
    *_ID_KEYS,
    "answer",
    "choices",
    "tests",
    "entry_point",
    "starter_code",
    "domain",
}
_GSM8K_MARKER = "####"
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


class ProblemFormatError(ValueError):
    """A record that cannot become a problem; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class ProblemSpec:
    """The attributes scoring, checks and the rollout read (the Problem model has the same)."""

    domain: str
    prompt: str
    answer: str = ""
    choices: list[str] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    entry_point: str = ""
    starter_code: str = ""
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def normalize_record(
    record: Mapping[str, Any], *, default_domain: str | None = None
) -> ProblemSpec:
    """Map one problem record to a ``ProblemSpec``; raise ``ProblemFormatError`` on bad input.

    The domain is the record's ``domain``, else ``default_domain``, else inferred: tests -> code,
    choices -> science, otherwise math.
    """
    if not isinstance(record, Mapping):
        raise ProblemFormatError("record", f"expected a JSON object, got {type(record).__name__}")
    prompt = _prompt(record)
    domain = _domain(record, default_domain)
    metadata = {k: v for k, v in record.items() if k not in _CONSUMED}
    spec = ProblemSpec(domain=domain, prompt=prompt, external_id=_external_id(record))

    if record.get("choices") not in (None, [], ""):
        spec.choices = _choices(record["choices"])
        spec.answer = _choice_answer(record.get("answer"), spec.choices)
    elif domain == "code":
        spec.starter_code = _string_field(record, "starter_code")
        spec.tests = _tests(record.get("tests"))
        spec.entry_point = _entry_point(record, spec.starter_code, spec.tests)
        if record.get("answer") not in (None, ""):
            metadata["answer"] = record["answer"]
    else:
        spec.answer, solution = _math_answer(record.get("answer"))
        if solution is not None:
            metadata["solution"] = solution
    spec.metadata = metadata
    return spec


def _string_field(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProblemFormatError(key, f"expected a string, got {type(value).__name__}")
    return value


def _prompt(record: Mapping[str, Any]) -> str:
    for key in _PROMPT_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ProblemFormatError(key, "the problem statement must be a non-empty string")
        return value
    raise ProblemFormatError("problem", f"no statement: expected one of {list(_PROMPT_KEYS)}")


def _external_id(record: Mapping[str, Any]) -> str:
    for key in _ID_KEYS:
        value = record.get(key)
        if value is not None and value != "":
            if isinstance(value, bool | dict | list):
                raise ProblemFormatError(key, "an id must be a string or a number")
            return str(value)
    return ""


def _domain(record: Mapping[str, Any], default: str | None) -> str:
    domain = record.get("domain") or default
    if domain is None:
        if record.get("tests"):
            domain = "code"
        elif record.get("choices"):
            domain = "science"
        else:
            domain = "math"
    if domain not in DOMAINS:
        raise ProblemFormatError("domain", f"{domain!r} is not one of {list(DOMAINS)}")
    return domain


def _choices(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str | int | float) for c in value):
        raise ProblemFormatError("choices", "expected a list of strings")
    if not 2 <= len(value) <= len(LETTERS):
        raise ProblemFormatError(
            "choices", f"expected 2 to {len(LETTERS)} choices, got {len(value)}"
        )
    return [str(c) for c in value]


def _choice_answer(value: Any, choices: list[str]) -> str:
    """The answer as a letter: from an index (int or digit string), a letter, or a choice's text."""
    letters = LETTERS[: len(choices)]
    if isinstance(value, bool) or value is None:
        raise ProblemFormatError("answer", "a multiple-choice answer is required")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    elif isinstance(value, str):
        letter = value.strip().strip("()").upper()
        if letter in letters and len(letter) == 1:
            return letter
        if value in choices:
            return letters[choices.index(value)]
        raise ProblemFormatError(
            "answer", f"{value!r} is neither an index, a letter in {letters}, nor a choice's text"
        )
    else:
        raise ProblemFormatError("answer", f"expected an index or a letter, got {value!r}")
    if not 0 <= index < len(choices):
        raise ProblemFormatError("answer", f"index {index} out of range for {len(choices)} choices")
    return letters[index]


def _math_answer(value: Any) -> tuple[str, str | None]:
    """The reference answer, and the worked solution when the answer field held one (GSM8K)."""
    if isinstance(value, bool) or value is None:
        raise ProblemFormatError("answer", "a reference answer is required")
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProblemFormatError("answer", f"{value!r} is not a finite number")
        return (str(int(value)) if value.is_integer() else repr(value)), None
    if not isinstance(value, str):
        raise ProblemFormatError("answer", f"expected a string or a number, got {value!r}")
    solution = None
    if _GSM8K_MARKER in value:
        solution = value
        value = value.rsplit(_GSM8K_MARKER, 1)[1]
    answer = _strip_math_delimiters(value.strip())
    if _THOUSANDS.fullmatch(answer):
        answer = answer.replace(",", "")
    if not answer:
        raise ProblemFormatError("answer", "the reference answer is empty")
    return answer, solution


def _strip_math_delimiters(answer: str) -> str:
    """``$x$`` / ``\\(x\\)`` -> ``x`` when the delimiters wrap the whole answer, once."""
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left + right):
            inner = answer[len(left) : -len(right)]
            if "$" not in inner:
                return inner.strip()
    return answer


def _tests(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ProblemFormatError("tests", f"not valid JSON: {exc}") from None
    if not isinstance(value, list) or not value:
        raise ProblemFormatError("tests", "a code problem needs a non-empty list of tests")
    return [_test(test, i) for i, test in enumerate(value)]


def _test(test: Any, index: int) -> dict[str, Any]:
    where = f"tests[{index}]"
    if not isinstance(test, Mapping):
        raise ProblemFormatError(where, "expected an object")
    kind = test.get("type") or {"functional": "call"}.get(test.get("testtype", ""))
    if kind is None:
        kind = "call" if "args" in test else "stdin"
    if kind == "stdin":
        if not isinstance(test.get("input", ""), str) or not isinstance(test.get("output"), str):
            raise ProblemFormatError(where, "a stdin test needs string 'input' and 'output'")
        return {"type": "stdin", "input": test.get("input", ""), "output": test["output"]}
    if kind != "call":
        raise ProblemFormatError(where, f"unknown test type {kind!r} (expected stdin or call)")
    if "args" in test:
        args, expected = test["args"], test.get("expected")
        if "expected" not in test:
            raise ProblemFormatError(where, "a call test needs 'expected'")
    else:
        # LiveCodeBench functional tests: one JSON value per input line, JSON output.
        try:
            args = [json.loads(line) for line in str(test.get("input", "")).splitlines() if line]
            expected = json.loads(str(test.get("output", "")))
        except json.JSONDecodeError as exc:
            raise ProblemFormatError(where, f"functional test is not JSON: {exc}") from None
    if not isinstance(args, list):
        raise ProblemFormatError(where, "'args' must be a list")
    return {"type": "call", "args": args, "expected": expected}


def _entry_point(record: Mapping[str, Any], starter_code: str, tests: list[dict[str, Any]]) -> str:
    entry_point = _string_field(record, "entry_point").strip()
    if not entry_point and starter_code:
        entry_point = _entry_point_from_starter(starter_code)
    if entry_point and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", entry_point):
        raise ProblemFormatError("entry_point", f"{entry_point!r} is not a name or Class.method")
    if not entry_point and any(t["type"] == "call" for t in tests):
        raise ProblemFormatError(
            "entry_point", "call tests need the function or Class.method to call"
        )
    return entry_point


def _entry_point_from_starter(starter_code: str) -> str:
    """``class Solution: def f`` -> ``Solution.f``; a lone ``def f`` -> ``f``."""
    try:
        # Starter code often ends with an empty body; give it one so that it parses.
        tree = ast.parse(starter_code.rstrip() + "\n        pass\n")
    except SyntaxError:
        try:
            tree = ast.parse(starter_code)
        except SyntaxError:
            raise ProblemFormatError("starter_code", "does not parse as Python") from None
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = [
                n.name
                for n in node.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                and not n.name.startswith("_")
            ]
            if methods:
                return f"{node.name}.{methods[0]}"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node.name
    return ""

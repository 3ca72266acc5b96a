"""Problems as plain data, and the mapping from published benchmark formats to one shape.

A file's columns pick its format (``detect_format``; ``FORMATS`` lists them): the paper's
benchmarks as published (MATH-500, AIME, AMC, GPQA-Diamond, LiveCodeBench, HumanEval, MBPP) and
the generic layout, which also reads the Qwen2.5-Math evaluation files (shared/data/README.md).
Columns that match no format are refused with the columns found and the formats known; columns a
format does not know are kept verbatim in ``metadata`` and reported, never interpreted.

``map_record`` turns one record into a ``ProblemSpec`` or raises a ``ProblemFormatError`` naming
the field at fault. The generic layout (``normalize_record``): ``problem`` or ``question`` or
``prompt`` as the statement; answers as numbers (27.0 -> "27"), LaTeX strings (``$10-4 n$`` ->
``10-4 n``), GSM8K worked solutions ending in ``#### N``; multiple choice with ``choices`` and an
index answer (-> a letter, the choices listed under the question); code problems with ``tests``,
``entry_point``, ``starter_code``. No Django here: the importer calls this per record.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import io
import json
import math
import pickle
import random
import re
import string
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DOMAINS = ("math", "code", "science")
LETTERS = string.ascii_uppercase[:10]  # "A".."J"

_PROMPT_KEYS = ("problem", "question", "prompt", "question_content")
_ID_KEYS = (
    "id",
    "idx",
    "question_number",
    "task_id",
    "question_id",
    "external_id",
    "unique_id",
    "problem_idx",
)
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
        spec.prompt = choice_prompt(prompt, spec.choices)
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


def choice_prompt(question: str, choices: list[str]) -> str:
    """The question with its lettered choices under it (as GPQA and MMLU present them), unless
    the question already lists every choice."""
    if all(choice in question for choice in choices):
        return question
    lines = "\n".join(
        f"{letter}) {choice}" for letter, choice in zip(LETTERS, choices, strict=False)
    )
    return f"{question.rstrip()}\n\n{lines}"


# ---------------------------------------------------------------------------------------------
# Published formats

Mapper = Callable[[Mapping[str, Any], str | None], ProblemSpec]


class UnknownFormatError(ValueError):
    """A file whose columns match no known format: says the columns found and the formats known."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = sorted(columns)
        known = "; ".join(f.describe() for f in FORMATS)
        super().__init__(f"columns {self.columns} match no known format. Known formats: {known}")


@dataclass(frozen=True)
class BenchmarkFormat:
    """A published layout: the columns that identify it, those it knows, how a row maps."""

    name: str
    published: str  # where it is published
    required: frozenset[str]
    optional: frozenset[str]
    mapper: Mapper
    any_of: frozenset[str] = frozenset()  # at least one of these too (the generic statement)
    known_pattern: str = ""  # further known columns, by name (GPQA's validation columns)

    def matches(self, columns: Iterable[str]) -> bool:
        present = set(columns)
        return self.required <= present and (not self.any_of or bool(self.any_of & present))

    def unknown(self, columns: Iterable[str]) -> list[str]:
        known = self.required | self.optional | self.any_of
        return sorted(
            c
            for c in columns
            if c not in known and not (self.known_pattern and re.fullmatch(self.known_pattern, c))
        )

    def describe(self) -> str:
        needs = sorted(self.required)
        if self.any_of:
            needs.append(" or ".join(sorted(self.any_of)))
        return f"{self.name} ({self.published}) needs {needs}"


def detect_format(columns: Iterable[str]) -> BenchmarkFormat:
    """The format a file's columns fit: of those whose required columns are all present, the
    one leaving the fewest columns unknown, then the most specific. UnknownFormatError if none."""
    columns = set(columns)
    fitting = [f for f in FORMATS if f.matches(columns)]
    if not fitting:
        raise UnknownFormatError(columns)
    return min(fitting, key=lambda f: (len(f.unknown(columns)), -len(f.required)))


def format_named(name: str) -> BenchmarkFormat:
    for candidate in FORMATS:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown format {name!r}; known: {[f.name for f in FORMATS]}")


def map_record(
    record: Mapping[str, Any], *, format: BenchmarkFormat, default_domain: str | None = None
) -> ProblemSpec:
    """One record of `format` as a ProblemSpec; columns the format does not know go into the
    metadata as they are. ProblemFormatError names a missing or bad field."""
    if not isinstance(record, Mapping):
        raise ProblemFormatError("record", f"expected a JSON object, got {type(record).__name__}")
    missing = sorted(format.required - set(record))
    if missing:
        raise ProblemFormatError(missing[0], f"missing: the {format.name} format needs it")
    spec = format.mapper(record, default_domain)
    for column in format.unknown(record):
        spec.metadata.setdefault(column, record[column])
    spec.metadata = {key: _storable(key, value) for key, value in spec.metadata.items()}
    return spec


def _storable(column: str, value: Any) -> Any:
    """A metadata value as JSON stores it: dates and times (a Parquet timestamp column, such as
    LiveCodeBench's contest_date) as ISO text; a value JSON cannot hold is an error naming it."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProblemFormatError(column, f"cannot be stored as JSON: {exc}") from None
    return value


def _text(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProblemFormatError(key, "expected a non-empty string")
    return value


def _number_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else repr(value)
    return value


def _kept(record: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: record[key] for key in keys if key in record and record[key] is not None}


# --- Math -------------------------------------------------------------------------------------


def _generic(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    return normalize_record(record, default_domain=default_domain)


def _aime_capitalised(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    """Maxwell-Jia/AIME_2024: ID, Problem, Solution, Answer (an integer)."""
    answer, _ = _math_answer(record.get("Answer"))
    return ProblemSpec(
        domain="math",
        prompt=_text(record, "Problem"),
        answer=answer,
        external_id=str(record["ID"]),
        metadata=_kept(record, ["Solution"]),
    )


# --- GPQA -------------------------------------------------------------------------------------

# One seed for every import: the same question gets the same order on every machine and run.
GPQA_SHUFFLE_SEED = 0
_GPQA_OPTIONS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def gpqa_order(question: str, *, seed: int = GPQA_SHUFFLE_SEED) -> list[int]:
    """The positions the four options take (0 is the correct one), fixed by the seed and the
    question's text, so re-imports and other files of the same question agree."""
    digest = hashlib.sha256(f"{seed}\n{question}".encode()).digest()
    order = [0, 1, 2, 3]
    random.Random(digest).shuffle(order)
    return order


def _gpqa(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    """Idavidrein/gpqa (gpqa_diamond): the correct answer and three incorrect ones, shuffled with
    a fixed seed into choices A-D; the question lists them."""
    question = _text(record, "Question").strip()
    # A CSV reader may type a column of numeric answers as numbers: an answer is its text.
    options = [_text({k: _number_text(record.get(k))}, k).strip() for k in _GPQA_OPTIONS]
    order = gpqa_order(question)
    choices = [options[i] for i in order]
    kept = [k for k in record if k not in (*_GPQA_OPTIONS, "Question")]
    return ProblemSpec(
        domain="science",
        prompt=choice_prompt(question, choices),
        answer=LETTERS[order.index(0)],
        choices=choices,
        external_id=str(record.get("Record ID") or ""),
        metadata=_kept(record, kept),
    )


# --- LiveCodeBench ----------------------------------------------------------------------------

# LiveCodeBench's hidden tests are base64 of zlib of a pickled JSON string. Decompressed they
# can be large, but not without bound.
MAX_PRIVATE_TESTS_BYTES = 256 << 20


class _StringsOnly(pickle.Unpickler):
    """Unpickles plain data only: a pickle that names any class or function is refused, so a
    hostile file cannot run code on import."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: the pickle names {module}.{name}")


def decode_private_tests(value: Any) -> list[Any]:
    """LiveCodeBench's `private_test_cases`: a JSON list, or its compressed encoding."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ProblemFormatError("private_test_cases", "expected a string")
    if value.lstrip().startswith("["):
        text = value
    else:
        try:
            packed = base64.b64decode(value.encode(), validate=True)
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, MAX_PRIVATE_TESTS_BYTES)
            if inflater.unconsumed_tail:
                raise ProblemFormatError(
                    "private_test_cases",
                    f"decompresses past {MAX_PRIVATE_TESTS_BYTES >> 20} MB",
                )
            text = _StringsOnly(io.BytesIO(raw)).load()
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as exc:
            if isinstance(exc, ProblemFormatError):
                raise
            raise ProblemFormatError(
                "private_test_cases", f"not JSON nor base64-zlib-pickle: {exc}"
            ) from None
    try:
        tests = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise ProblemFormatError("private_test_cases", f"not valid JSON: {exc}") from None
    if not isinstance(tests, list):
        raise ProblemFormatError("private_test_cases", "expected a list of tests")
    return tests


_LCB_STARTER = (
    "You will use the following starter code to write the solution to the problem and "
    "enclose your code within delimiters."
)
_LCB_STDIN = (
    "Read the inputs from stdin, solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters."
)


def _livecodebench(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    """livecodebench/code_generation_lite: public tests (JSON) and private ones (encoded),
    functional (a LeetCode method named by metadata's func_name) or stdin (AtCoder,
    Codeforces); the prompt as LiveCodeBench frames it."""
    statement = _text(record, "question_content")
    starter = _string_field(record, "starter_code")
    public = _tests(record.get("public_test_cases"))
    private = [
        _test(t, i) for i, t in enumerate(decode_private_tests(record["private_test_cases"]))
    ]
    try:
        extra = json.loads(record.get("metadata") or "{}")
    except json.JSONDecodeError as exc:
        raise ProblemFormatError("metadata", f"not valid JSON: {exc}") from None
    func_name = extra.get("func_name", "") if isinstance(extra, dict) else ""
    entry_point = ""
    if func_name:
        owner = _entry_point_from_starter(starter).split(".")[0] if starter else ""
        entry_point = f"{owner}.{func_name}" if owner and owner != func_name else func_name
    tests = public + private
    if any(t["type"] == "call" for t in tests) and not entry_point:
        raise ProblemFormatError("metadata", "functional tests need metadata's func_name")
    if starter:
        prompt = f"{statement.rstrip()}\n\n{_LCB_STARTER}\n```python\n{starter}\n```"
    else:
        prompt = f"{statement.rstrip()}\n\n{_LCB_STDIN}"
    metadata = _kept(
        record,
        ["question_title", "platform", "contest_id", "contest_date", "difficulty"],
    )
    metadata.update(func_name=func_name, public_tests=len(public), private_tests=len(private))
    return ProblemSpec(
        domain="code",
        prompt=prompt,
        tests=tests,
        entry_point=entry_point,
        starter_code=starter,
        external_id=str(record["question_id"]),
        metadata=metadata,
    )


# --- HumanEval and MBPP: assertion tests as a program that calls check(candidate) ----------


def check_test(program: str) -> dict[str, Any]:
    """A test that runs `program` after the solution: it must call ``check(candidate)``, whose
    assertions decide (a program that never calls it scores "no test ran")."""
    return {"type": "check", "program": program}


def _humaneval(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    """openai_humaneval: the function's signature and docstring to complete, its test program
    (which defines check), called on the entry point."""
    signature = _text(record, "prompt")
    entry_point = _text(record, "entry_point").strip()
    test = _text(record, "test")
    return ProblemSpec(
        domain="code",
        prompt=(
            "Complete the following Python function; give the whole function in your answer."
            f"\n\n```python\n{signature.rstrip()}\n```"
        ),
        tests=[check_test(f"{test.rstrip()}\n\n\ncheck({entry_point})\n")],
        entry_point=entry_point,
        starter_code=signature,
        external_id=str(record["task_id"]),
        metadata=_kept(record, ["canonical_solution"]),
    )


class _ToCandidate(ast.NodeTransformer):
    def __init__(self, name: str) -> None:
        self.name = name

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return (
            ast.copy_location(ast.Name("candidate", node.ctx), node)
            if node.id == self.name
            else node
        )


def _mbpp_program(setup: str, asserts: list[str], entry_point: str) -> str:
    """The assertions as ``check(candidate)``, the function they test renamed `candidate`."""
    body = []
    for line in asserts:
        tree = _ToCandidate(entry_point).visit(ast.parse(line))
        body.append("    " + ast.unparse(tree).replace("\n", "\n    "))
    check = "def check(candidate):\n" + "\n".join(body)
    return f"{setup.strip()}\n\n\n{check}\n\n\ncheck({entry_point})\n".lstrip()


def _mbpp_entry_point(code: str, asserts: list[str]) -> str:
    """The function the assertions call that the reference code defines."""
    defined: list[str] = []
    try:
        defined = [node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)]
    except SyntaxError:
        raise ProblemFormatError("code", "the reference solution does not parse") from None
    for line in asserts:
        for node in ast.walk(ast.parse(line)):
            called = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if called and node.func.id in defined:
                return node.func.id
    raise ProblemFormatError("test_list", "no assertion calls a function the reference defines")


def _mbpp(record: Mapping[str, Any], default_domain: str | None) -> ProblemSpec:
    """mbpp (full: text, test_setup_code, challenge_test_list) and mbpp sanitized (prompt,
    test_imports): the task, then the tests it must pass, as the MBPP paper prompts."""
    task = _text(record, "text" if "text" in record else "prompt")
    asserts = record.get("test_list")
    if not isinstance(asserts, list) or not asserts or not all(isinstance(a, str) for a in asserts):
        raise ProblemFormatError("test_list", "expected a non-empty list of assert statements")
    try:
        for line in asserts:
            ast.parse(line)
    except SyntaxError as exc:
        raise ProblemFormatError("test_list", f"an assertion does not parse: {exc.msg}") from None
    code = _text(record, "code")
    entry_point = _mbpp_entry_point(code, asserts)
    setup = record.get("test_setup_code") or "\n".join(record.get("test_imports") or [])
    listed = "\n".join(asserts)
    return ProblemSpec(
        domain="code",
        prompt=f"{task.strip()}\nYour code should pass these tests:\n\n{listed}",
        tests=[check_test(_mbpp_program(str(setup), asserts, entry_point))],
        entry_point=entry_point,
        external_id=str(record["task_id"]),
        metadata=_kept(record, ["code", "challenge_test_list", "source_file"]),
    )


_COMPETITION_MATH_EXTRAS = frozenset(
    # Columns of the Qwen2.5-Math evaluation files and the Hub's AIME/AMC copies, kept as is.
    {"solution", "url", "year", "subject", "level", "type", "data_source", "data_topic", "license"}
)

FORMATS: tuple[BenchmarkFormat, ...] = (
    BenchmarkFormat(
        "math500",
        "HuggingFaceH4/MATH-500",
        frozenset({"problem", "solution", "answer", "subject", "level", "unique_id"}),
        frozenset(),
        _generic,
    ),
    BenchmarkFormat(
        "aime-capitalised",
        "Maxwell-Jia/AIME_2024",
        frozenset({"ID", "Problem", "Solution", "Answer"}),
        frozenset(),
        _aime_capitalised,
    ),
    BenchmarkFormat(
        "gpqa",
        "Idavidrein/gpqa (gpqa_diamond)",
        frozenset({"Question", *_GPQA_OPTIONS}),
        frozenset(
            {
                "Record ID",
                "Explanation",
                "Subdomain",
                "High-level domain",
                "Writer's Difficulty Estimate",
                "Question Writer",
                "Canary String",
                "Non-Expert Validator Accuracy",
                "Majority Non-Expert Vals Incorrect",
                "Expert Validator Accuracy",
                "Self-reported question-writing time (minutes)",
            }
        ),
        _gpqa,
        known_pattern=r"Pre-Revision .+|.+_(EV|NEV)_\d+",
    ),
    BenchmarkFormat(
        "livecodebench",
        "livecodebench/code_generation_lite",
        frozenset(
            {
                "question_content",
                "question_id",
                "platform",
                "public_test_cases",
                "private_test_cases",
            }
        ),
        frozenset(
            {
                "question_title",
                "contest_id",
                "contest_date",
                "starter_code",
                "difficulty",
                "metadata",
            }
        ),
        _livecodebench,
    ),
    BenchmarkFormat(
        "humaneval",
        "openai/openai_humaneval",
        frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}),
        frozenset(),
        _humaneval,
    ),
    BenchmarkFormat(
        "mbpp",
        "google-research-datasets/mbpp (full)",
        frozenset({"task_id", "text", "code", "test_list"}),
        frozenset({"test_setup_code", "challenge_test_list"}),
        _mbpp,
    ),
    BenchmarkFormat(
        "mbpp-sanitized",
        "google-research-datasets/mbpp (sanitized)",
        frozenset({"task_id", "prompt", "code", "test_list"}),
        frozenset({"test_imports", "source_file"}),
        _mbpp,
    ),
    BenchmarkFormat(
        "generic",
        "this project's JSONL; the Qwen2.5-Math evaluation files (AIME24, AMC23, GSM8K, "
        "college math, MMLU-STEM); HuggingFaceH4/aime_2024, opencompass/AIME2025, math-ai/aime25, "
        "MathArena",
        frozenset(),
        frozenset(_CONSUMED | _COMPETITION_MATH_EXTRAS),
        _generic,
        any_of=frozenset(_PROMPT_KEYS),
    ),
)

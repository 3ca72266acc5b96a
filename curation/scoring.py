"""Score a trajectory against its problem: math answers, multiple choice, code tests.

``score(problem, text) -> Score`` never raises for bad input (an unparseable reference, malformed
tests, no final answer, a crashing or endless program): the Score says why, and ``correct`` is
``None`` when the trajectory cannot be judged at all (the problem is at fault, not the policy).

- math: the last ``\\boxed{}`` of the final answer, else the last answer phrase ("the answer is
  ..."), compared with the reference by HF's math-verify.
- multiple choice (``problem.choices`` non-empty): the chosen letter.
- code: the final solution program runs through a ``CodeRunner`` (``curation.execution``; the
  caller's, else the project's sandbox, bound by name) against every test; pass only if all
  pass. Call tests go through one harness run that imports nothing from the project; a check
  test (HumanEval, MBPP) runs its program after the solution, and passes only if that program
  called ``check`` and finished: one that never calls it scores "no test ran", not correct.

No Django here, and no import of the workers: the runner is passed in or loaded by name.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from curation import trajectory as fmt
from curation.execution import (
    CPU_TIME,
    OUTPUT_TRUNCATED,
    TIMEOUT,
    CodeRunner,
    Execution,
    Limits,
    load_runner,
)

# How much program output a Score keeps per test (the sandbox clips too; this keeps rows small).
DETAIL_CHARS = 1000
# Per call-test limit inside the harness; the sandbox's own wall-clock limit bounds the whole run.
CALL_TEST_TIMEOUT_S = 6.0


@dataclass
class Score:
    correct: bool | None
    answer: str | None
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Problem(Protocol):
    domain: str
    answer: str
    choices: Sequence[str]
    tests: Sequence[Mapping[str, Any]]
    entry_point: str


_TIME_LIMITS = (TIMEOUT, CPU_TIME)
# The reason of a score whose runner failed: the trajectory is not at fault, score it again later.
RUNNER_ERROR = "runner error"


# ---------------------------------------------------------------------------------------------
# Answer extraction


def final_answer_text(text: str) -> str:
    """The prose that holds the final answer: after ``</think>`` if present, else the whole text;
    code and output blocks left out (a printed ``\\boxed{}`` is not an answer)."""
    segments = fmt.parse(text, hints=())
    start = fmt.answer_start(segments)
    chosen = segments if start is None else segments[start:]
    answer = "".join(s.text for s in chosen if s.kind in fmt.PROSE_KINDS)
    return answer.removeprefix(fmt.THINK_END) if start is not None else answer


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces balanced), or None."""
    result = None
    for match in _BOXED_RE.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            result = text[match.end() : i - 1].strip()
    return result


_PHRASE_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(?P<rest>[^\n]+)", re.IGNORECASE
)


def answer_phrase(text: str) -> str | None:
    """The value after the last "the answer is" / "final answer:" phrase, up to the sentence end."""
    matches = list(_PHRASE_RE.finditer(text))
    if not matches:
        return None
    rest = matches[-1].group("rest").strip()
    # "Final Answer: The final answer is $x$": the innermost phrase holds the value.
    while inner := _PHRASE_RE.search(rest):
        rest = inner.group("rest").strip()
    inline = re.match(r"\$+([^$]+)\$+", rest)
    if inline:
        return inline.group(1).strip()
    value = re.split(r"\.\s|\.$|;|,\s(?:so|and|which)\b", rest, maxsplit=1)[0]
    value = value.strip().strip("$").strip()
    return value.removesuffix(".") or None


def extract_math_answer(text: str) -> str | None:
    answer_text = final_answer_text(text)
    return last_boxed(answer_text) or answer_phrase(answer_text)


# ---------------------------------------------------------------------------------------------
# Math


def _math_verify_timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def _parse_math(expression: str) -> tuple[Any, ...]:
    from math_verify import parse

    content = expression.strip().strip("$").strip()
    if not content:
        return ()
    return tuple(parse(f"\\boxed{{{content}}}", parsing_timeout=_math_verify_timeout()))


def _parsed(expression: str) -> list[Any]:
    return list(_parse_math(expression))


def _is_parsed(values: Sequence[Any]) -> bool:
    """math-verify returns [sympy value, string] when it understood, [string] when it did not."""
    return any(not isinstance(v, str) for v in values)


def _normal_text(value: str) -> str:
    return " ".join(value.replace("$", "").split()).lower().rstrip(".")


def math_equal(pred: str, ref: str) -> bool:
    """Whether two answers are mathematically equal according to math-verify.

    A reference math-verify cannot parse only matches the same text (spacing and case aside).
    """
    return _compare_math(pred, ref)[0] is True


def _compare_math(pred: str, ref: str) -> tuple[bool | None, str]:
    from math_verify import verify

    try:
        gold = _parsed(ref)
        if not _is_parsed(gold):
            if _normal_text(pred) == _normal_text(ref):
                return True, "correct"
            return None, "unparseable reference"
        target = _parsed(pred)
        if not target:
            return False, "unparseable answer"
        equal = verify(gold, target, timeout_seconds=_math_verify_timeout())
    except Exception as exc:  # math-verify and sympy raise many kinds; a score must not
        return None, f"math-verify error: {type(exc).__name__}: {exc}"[:300]
    return bool(equal), "correct" if equal else "wrong"


def score_math(problem: Problem, text: str) -> Score:
    answer = extract_math_answer(text)
    if answer is None:
        return Score(False, None, "no answer")
    correct, reason = _compare_math(answer, problem.answer)
    return Score(correct, answer, reason, {"reference": problem.answer})


# ---------------------------------------------------------------------------------------------
# Multiple choice

# Letters are matched case-sensitively: "the answer is a bit off" chooses nothing.
_CHOICE_PATTERNS = (
    re.compile(r"(?i:answer)\s*(?i:is|:)?\s*:?\s*(?i:option\s*)?\(?\**([A-J])\b\)?"),
    re.compile(r"(?i:option|choice)\s*\(?([A-J])\)?\s*(?i:is\s*(?:the\s*)?correct)"),
    re.compile(r"^\s*\(?([A-J])\)?[.:]?\s*$", re.MULTILINE),
)


def extract_choice(text: str, choices: Sequence[str]) -> str | None:
    """The chosen letter: from ``\\boxed{B}`` (or a boxed choice text), else "answer is (B)"..."""
    letters = "ABCDEFGHIJ"[: len(choices)]
    answer_text = final_answer_text(text)
    boxed = last_boxed(answer_text)
    if boxed is not None:
        content = re.sub(r"\\text\w*\s*\{([^{}]*)\}", r"\1", boxed).strip().strip("()").strip()
        if len(content) == 1 and content.upper() in letters:
            return content.upper()
        lead = re.match(r"\(?([A-J])\)?[.:)\s]", content + " ")
        if lead and lead.group(1) in letters:
            return lead.group(1)
        for letter, choice in zip(letters, choices, strict=False):
            if _normal_text(content) == _normal_text(choice):
                return letter
    for pattern in _CHOICE_PATTERNS:
        found = [m.group(1) for m in pattern.finditer(answer_text)]
        found = [letter for letter in found if letter in letters]
        if found:
            return found[-1]
    return None


def score_choice(problem: Problem, text: str) -> Score:
    letter = extract_choice(text, problem.choices)
    if letter is None:
        return Score(False, None, "no answer")
    reference = problem.answer.strip().upper()
    correct = letter == reference
    return Score(correct, letter, "correct" if correct else "wrong", {"reference": reference})


# ---------------------------------------------------------------------------------------------
# Code


def _defined_names(code: str) -> set[str]:
    """Top-level function and class names a cell defines (empty if it does not parse)."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _rebinds_stdin(code: str) -> bool:
    # Debug cells from the stdin hint feed samples through io.StringIO; they are not the solution.
    return bool(re.search(r"sys\.stdin\s*=|StringIO\(", code))


def final_program(problem: Problem, text: str) -> str | None:
    """The solution program: the last code block of the answer part if any, else the last code
    cell that defines the entry point (for stdin problems: that is not a debug harness)."""
    cells = fmt.code_cells(fmt.parse(text, hints=()))
    answer_cells = [c for c in cells if c.in_answer and c.body.strip()]
    if answer_cells:
        return answer_cells[-1].body
    if problem.entry_point:
        needed = problem.entry_point.split(".", 1)[0]
        for cell in reversed(cells):
            if needed in _defined_names(cell.body):
                return cell.body
        return None
    for cell in reversed(cells):
        if cell.body.strip() and not _rebinds_stdin(cell.body):
            return cell.body
    return None


_RESULT_MARKER = "__START_HARNESS_RESULT__"
# What LiveCodeBench's and HumanEval's harnesses give a solution: annotations such as
# `List[int]` in their starter code need no import of its own.
HARNESS_PRELUDE = "from typing import *\n"
_HARNESS = """

def __start_harness():
    import json as _json
    import signal as _signal

    def _timeout(signum, frame):
        raise TimeoutError("test exceeded {timeout} s")

    def _plain(value):
        if isinstance(value, (set, frozenset)):
            return sorted(value, key=repr)
        return repr(value)

    _target = {target}
    _signal.signal(_signal.SIGALRM, _timeout)
    _results = []
    for _args in _json.loads({cases!r}):
        try:
            _signal.setitimer(_signal.ITIMER_REAL, {timeout})
            _value = _target(*_args)
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _value = _json.loads(_json.dumps(_value, default=_plain))
            _results.append({{"ok": True, "value": _value}})
        except BaseException as _exc:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _results.append({{"ok": False, "error": type(_exc).__name__ + ": " + str(_exc)[:300]}})
    # A leading newline: the solution's last print may not have ended its line.
    print("\\n" + {marker!r} + _json.dumps(_results))


__start_harness()
"""


def call_harness(program: str, entry_point: str, cases: Sequence[Sequence[Any]]) -> str:
    """The program followed by a harness that calls ``entry_point`` on each argument list and
    prints the JSON results on a marked line. It imports nothing from this project."""
    if "." in entry_point:
        cls, method = entry_point.split(".", 1)
        target = f"getattr({cls}(), {method!r})"
    else:
        target = entry_point
    return (
        HARNESS_PRELUDE
        + program
        + _HARNESS.format(
            target=target,
            cases=json.dumps([list(args) for args in cases]),
            timeout=CALL_TEST_TIMEOUT_S,
            marker=_RESULT_MARKER,
        )
    )


_CHECK_MARKER = "__START_CHECK_CALLS__"
_CHECK_FILE = "<check>"
NO_TEST_RAN = "no test ran"
_CHECK_HARNESS = """

def __start_check_harness():
    import sys as _sys

    _calls = []

    def _watch(frame, event, arg):
        # The first call of the test program's `check` is all that is counted; then unwatched.
        code = frame.f_code
        if event == "call" and code.co_name == "check" and code.co_filename == {file!r}:
            _calls.append(1)
            _sys.setprofile(None)

    _sys.setprofile(_watch)
    try:
        exec(compile({test!r}, {file!r}, "exec"), globals())
    finally:
        _sys.setprofile(None)
    print("\\n" + {marker!r} + str(len(_calls)))


__start_check_harness()
"""


def check_harness(program: str, test_program: str) -> str:
    """The solution, then the test program run in its namespace (as if appended to it), under
    a watch that counts whether the test program's ``check`` was called; the count is printed
    on a marked line once the test program finished. Imports nothing from this project."""
    return (
        HARNESS_PRELUDE
        + program
        + _CHECK_HARNESS.format(test=test_program, file=_CHECK_FILE, marker=_CHECK_MARKER)
    )


def _same_value(got: Any, expected: Any) -> bool:
    if isinstance(got, bool) or isinstance(expected, bool):
        return got == expected and type(got) is type(expected)
    if isinstance(got, int | float) and isinstance(expected, int | float):
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(map(_same_value, got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_same_value(got[k], expected[k]) for k in got)
    return got == expected


def _lines(output: str) -> list[str]:
    return [line.rstrip() for line in output.strip().splitlines()]


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…[clipped]"


def _execution_error(execution: Execution) -> str | None:
    """Why a run failed, or None. Clipped output of a program that finished is not a failure
    here: the comparison of its output decides."""
    error = getattr(execution, "error", None)  # the sandbox's last traceback line
    if error:
        return str(error)
    if execution.exit_code not in (0, None):
        last = execution.stderr.strip().splitlines()[-1:]
        return execution.reason or (last[0] if last else f"exit code {execution.exit_code}")
    if execution.reason and execution.reason != OUTPUT_TRUNCATED:
        return execution.reason
    return None


def _run_stdin_tests(
    program: str, tests: Sequence[Mapping[str, Any]], run: CodeRunner, limits: Limits | None
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for test in tests:
        if results and results[-1].get("error") in _TIME_LIMITS:
            # A program that ran out of time once would on every test: keep the round moving.
            results.append({"type": "stdin", "passed": False, "error": "skipped after a timeout"})
            continue
        execution = run(program, stdin=test["input"], limits=limits)
        error = _execution_error(execution)
        passed = error is None and _lines(execution.stdout) == _lines(test["output"])
        result: dict[str, Any] = {"type": "stdin", "passed": passed, "wall_s": execution.wall_s}
        if not passed:
            result.update(
                error=error, stdout=_clip(execution.stdout), stderr=_clip(execution.stderr)
            )
        results.append(result)
    return results


def _run_call_tests(
    program: str,
    entry_point: str,
    tests: Sequence[Mapping[str, Any]],
    run: CodeRunner,
    limits: Limits | None,
) -> list[dict[str, Any]]:
    execution = run(call_harness(program, entry_point, [t["args"] for t in tests]), limits=limits)
    marked = [line for line in execution.stdout.splitlines() if line.startswith(_RESULT_MARKER)]
    outcomes: list[dict[str, Any]] | None = None
    if marked:
        try:
            outcomes = json.loads(marked[-1].removeprefix(_RESULT_MARKER))
        except json.JSONDecodeError:
            outcomes = None
    if outcomes is None or len(outcomes) != len(tests):
        # The program died before the harness reported (a crash at import, a limit, no entry point).
        error = _execution_error(execution) or "the harness printed no results"
        return [
            {"type": "call", "passed": False, "error": error, "stderr": _clip(execution.stderr)}
            for _ in tests
        ]
    results = []
    for test, outcome in zip(tests, outcomes, strict=True):
        passed = outcome["ok"] and _same_value(outcome["value"], test["expected"])
        result: dict[str, Any] = {"type": "call", "passed": passed}
        if not passed:
            result.update(
                error=outcome.get("error"),
                got=_clip(json.dumps(outcome.get("value"))),
                expected=_clip(json.dumps(test["expected"])),
            )
        results.append(result)
    return results


def _run_check_tests(
    program: str, tests: Sequence[Mapping[str, Any]], run: CodeRunner, limits: Limits | None
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for test in tests:
        execution = run(check_harness(program, test["program"]), limits=limits)
        marked = [line for line in execution.stdout.splitlines() if line.startswith(_CHECK_MARKER)]
        error = _execution_error(execution)
        calls = int(marked[-1].removeprefix(_CHECK_MARKER)) if marked and not error else 0
        result: dict[str, Any] = {"type": "check", "passed": calls > 0, "wall_s": execution.wall_s}
        if error:
            result.update(error=error, stderr=_clip(execution.stderr))
        elif not marked:
            result.update(
                error="the test program printed no result", stdout=_clip(execution.stdout)
            )
        elif not calls:
            result.update(error=NO_TEST_RAN, no_test=True)
        results.append(result)
    return results


def _malformed_tests(problem: Problem) -> str | None:
    if not problem.tests:
        return "no tests"
    for i, test in enumerate(problem.tests):
        kind = test.get("type") if isinstance(test, Mapping) else None
        if kind == "stdin":
            if not isinstance(test.get("input"), str) or not isinstance(test.get("output"), str):
                return f"malformed tests: tests[{i}] needs string input and output"
        elif kind == "call":
            if not isinstance(test.get("args"), list) or "expected" not in test:
                return f"malformed tests: tests[{i}] needs args (a list) and expected"
            if not problem.entry_point:
                return "malformed tests: call tests without an entry_point"
        elif kind == "check":
            if not isinstance(test.get("program"), str) or not test["program"].strip():
                return f"malformed tests: tests[{i}] needs a program that calls check"
        else:
            return f"malformed tests: tests[{i}] has no type stdin, call or check"
    return None


def score_code(
    problem: Problem, text: str, *, run: CodeRunner | None = None, limits: Limits | None = None
) -> Score:
    problem_error = _malformed_tests(problem)
    if problem_error:
        return Score(None, None, problem_error)
    program = final_program(problem, text)
    if program is None:
        return Score(False, None, "no answer")
    run = run or load_runner()
    stdin_tests = [t for t in problem.tests if t["type"] == "stdin"]
    call_tests = [t for t in problem.tests if t["type"] == "call"]
    check_tests = [t for t in problem.tests if t["type"] == "check"]
    try:
        results = _run_stdin_tests(program, stdin_tests, run, limits) if stdin_tests else []
        if call_tests:
            results += _run_call_tests(program, problem.entry_point, call_tests, run, limits)
        if check_tests:
            results += _run_check_tests(program, check_tests, run, limits)
    except Exception as exc:  # the sandbox failing is not the trajectory's fault
        return Score(None, program, f"{RUNNER_ERROR}: {type(exc).__name__}: {exc}"[:300])
    passed = sum(r["passed"] for r in results)
    details = {"passed": passed, "total": len(results), "tests": results}
    if any(r.get("no_test") for r in results):
        # The problem's test program asserted nothing: the trajectory cannot be judged.
        return Score(None, program, NO_TEST_RAN, details)
    correct = passed == len(results)
    return Score(correct, program, "correct" if correct else "tests failed", details)


# ---------------------------------------------------------------------------------------------
# Entry points


def score(
    problem: Problem, text: str, *, run: CodeRunner | None = None, limits: Limits | None = None
) -> Score:
    """Score one trajectory. ``run`` runs code problems' programs (default: the project's
    sandbox, loaded by name when first needed)."""
    try:
        if problem.domain == "code":
            return score_code(problem, text, run=run, limits=limits)
        if problem.choices:
            return score_choice(problem, text)
        return score_math(problem, text)
    except Exception as exc:  # a bug here must not stop a round; the reason says what broke
        return Score(None, None, f"scoring error: {type(exc).__name__}: {exc}"[:300])


def score_many(
    pairs: Iterable[tuple[Problem, str]],
    *,
    run: CodeRunner | None = None,
    limits: Limits | None = None,
) -> list[Score]:
    return [score(problem, text, run=run, limits=limits) for problem, text in pairs]

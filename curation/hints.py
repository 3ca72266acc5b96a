"""The paper's hint library (START, Li et al. 2025) as data, and a round's hint-insertion config.

Math hints are the paper's figure verbatim. The code "debug" hint is the paper's text with a code
template in two variants, as a public re-implementation did: problems with starter code call
``Solution()``; stdin problems feed the sample input through ``io.StringIO`` bound to ``sys.stdin``.
Every hint ends by opening a ```` ```python ```` block, so the model continues with code.

The admin-editable Hint model is seeded from ``HINTS``; at launch a round copies the enabled
templates into its ``HintConfig.library``, and everything downstream (the rollout, the checks,
the export's masks) uses that snapshot. Nothing here imports Django.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from curation.trajectory import CLOSE_FENCE, CODE_FENCE, OUTPUT_FENCE, TESTCASE_SLOT


@dataclass(frozen=True)
class Hint:
    name: str
    domain: str  # "math" or "code"
    text: str


_DEBUG_INTRO = (
    "Let me first write a code that includes all test cases from the problems to validate my "
    "reasoning locally. To ensure that my code runs correctly, I need to embed all test case "
    "inputs directly into my code and print the corresponding output, following the sample "
    "structure below:\n"
)
_DEBUG_OUTRO = (
    "Alright, with this structure, I can write and execute my code in a Python compiler using "
    "real example inputs. By comparing the actual outputs with the expected outputs, I can "
    "initially assess the correctness of my code. If the outputs do not match, I can debug "
    f"accordingly. Recall the test cases in the problem statement.{TESTCASE_SLOT} Alright, now I "
    f"can write a debug code with samples input.\n{CODE_FENCE}"
)
# The templates show a structure, not code to run: their "..." are the paper's "[A code template]".
_CALL_TEMPLATE = """class Solution:
    def method_name(self, arg1, arg2):
        # the solution
        ...

solution = Solution()
print(solution.method_name(test_input_1_arg1, test_input_1_arg2))
print(solution.method_name(test_input_2_arg1, test_input_2_arg2))"""
_STDIN_TEMPLATE = '''import io
import sys

def solve():
    data = sys.stdin.read().split()
    # the solution, printing the answer
    ...

sample_input = """test_input_1"""
sys.stdin = io.StringIO(sample_input)
solve()'''


def _debug_hint_text(template: str) -> str:
    return (
        f"{_DEBUG_INTRO}{CODE_FENCE}\n{template}\n{CLOSE_FENCE}\n"
        f"{OUTPUT_FENCE}\nexpected_output_1\nexpected_output_2\n{CLOSE_FENCE}\n{_DEBUG_OUTRO}"
    )


HINTS: tuple[Hint, ...] = (
    Hint(
        "complex_calculation",
        "math",
        "I can use Python to perform complex calculations for this problem.```python",
    ),
    Hint(
        "self_reflection",
        "math",
        "I can use Python to check if my approach is correct and refine it, if necessary.```python",
    ),
    Hint(
        "logic_check",
        "math",
        "maybe Python can assist in ensuring our logical deductions are sound.```python",
    ),
    Hint(
        "alternative_method",
        "math",
        "I can use Python to explore an alternative method for solving this problem.```python",
    ),
    Hint("general", "math", "maybe using python here is a good idea.\n```python"),
    Hint(
        "deeper_thinking",
        "math",
        "I can think more deeply about this problem through python tools.```python",
    ),
    Hint("code_debug_call", "code", _debug_hint_text(_CALL_TEMPLATE)),
    Hint("code_debug_stdin", "code", _debug_hint_text(_STDIN_TEMPLATE)),
)
MATH_HINT_NAMES = tuple(h.name for h in HINTS if h.domain == "math")
CODE_HINT_NAMES = tuple(h.name for h in HINTS if h.domain == "code")


def hint_texts(library: Iterable[Hint] = HINTS) -> list[str]:
    """The texts ``curation.trajectory.parse`` recognises as hints (``{testcase}`` left in)."""
    return [h.text for h in library]


def get_hint(name: str, library: Iterable[Hint] = HINTS) -> Hint:
    for hint in library:
        if hint.name == name:
            return hint
    raise KeyError(f"unknown hint {name!r}")


class _CodeProblem(Protocol):
    tests: Sequence[Mapping[str, Any]]
    entry_point: str
    starter_code: str


class _HintedProblem(_CodeProblem, Protocol):
    domain: str


def uses_call_harness(problem: _CodeProblem) -> bool:
    """Whether the problem's tests call a function/class (else they feed stdin)."""
    if problem.tests:
        return any(t.get("type") in ("call", "check") for t in problem.tests)
    return bool(problem.starter_code or problem.entry_point)


def _call_expression(entry_point: str, args: Sequence[Any]) -> str:
    arguments = ", ".join(repr(a) for a in args)
    if "." in entry_point:
        _, method = entry_point.rsplit(".", 1)
        return f"solution.{method}({arguments})"
    return f"{entry_point or 'solve'}({arguments})"


def format_testcases(problem: _CodeProblem, *, max_cases: int = 3) -> str:
    """The problem's sample tests, as they fill the debug hint's ``{testcase}`` (a check
    program's assertions are not samples: HumanEval's are hidden, MBPP's are in the prompt)."""
    lines: list[str] = []
    samples = [t for t in problem.tests if t.get("type") != "check"]
    for test in samples[:max_cases]:
        if test.get("type") == "call":
            call = _call_expression(problem.entry_point, test.get("args", []))
            lines.append(f"{call} -> expected {json.dumps(test.get('expected'))}")
        else:
            lines.append(
                f"Input:\n{str(test.get('input', '')).rstrip()}\n"
                f"Expected output:\n{str(test.get('output', '')).rstrip()}"
            )
    return "\n" + "\n\n".join(lines) + "\n" if lines else ""


def render_debug_hint(problem: _CodeProblem, *, library: Iterable[Hint] = HINTS) -> str:
    """The code debug hint for ``problem``: the call or stdin template, ``{testcase}`` filled."""
    name = "code_debug_call" if uses_call_harness(problem) else "code_debug_stdin"
    return hint_text(get_hint(name, library), problem)


@dataclass(frozen=True)
class HintConfig:
    """How a round inserts hints into hinted samples (baseline samples get none)."""

    # Hint names; each problem draws among those of its domain (see pick_hint).
    hints: tuple[str, ...] = tuple(h.name for h in HINTS)
    conjunctions: tuple[str, ...] = ("Wait", "Alternatively")
    # Chance of inserting a hint at each conjunction the model writes.
    conjunction_probability: float = 0.5
    # At most this many conjunction hints per trajectory (end hints are capped by end_repeats).
    max_hints: int = 3
    # Withhold the end-of-thinking marker once, insert a hint and resume.
    end_of_thinking: bool = True
    # Test-time scaling: how many times the end-of-thinking hint may be inserted (the paper's k).
    end_repeats: int = 1
    max_tool_calls: int = 6
    # The hint texts this config draws from: a round's snapshot of the library taken at launch
    # (so later edits of the templates never change what a round did); empty: ``HINTS``.
    library: tuple[Hint, ...] = ()

    def __post_init__(self) -> None:
        # Lists from JSON become tuples so that a config is hashable and immutable in practice.
        object.__setattr__(self, "hints", tuple(self.hints))
        object.__setattr__(self, "conjunctions", tuple(self.conjunctions))
        library = tuple(h if isinstance(h, Hint) else Hint(**h) for h in self.library)
        object.__setattr__(self, "library", library)

    @property
    def hint_library(self) -> tuple[Hint, ...]:
        return self.library or HINTS

    def validate(self, *, known_hints: Iterable[str] | None = None) -> HintConfig:
        """Raise ValueError naming the problem; return self so calls chain."""
        if self.library:
            known = {h.name for h in self.library}
            for hint in self.library:
                hint_validate(hint)
        else:
            known = set(h.name for h in HINTS) if known_hints is None else set(known_hints)
        if not self.hints:
            raise ValueError("hint config names no hints: list at least one in 'hints'")
        unknown = [name for name in self.hints if name not in known]
        if unknown:
            raise ValueError(f"unknown hint names {unknown}; known: {sorted(known)}")
        if not all(isinstance(c, str) and c.strip() for c in self.conjunctions):
            raise ValueError("'conjunctions' must be non-empty strings")
        if not 0.0 <= self.conjunction_probability <= 1.0:
            raise ValueError(
                f"'conjunction_probability' must be in [0, 1], got {self.conjunction_probability}"
            )
        for name in ("max_hints", "end_repeats", "max_tool_calls"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"'{name}' must be a non-negative integer, got {value!r}")
        return self

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, known_hints: Iterable[str] | None = None
    ) -> HintConfig:
        """Build and validate a config from stored JSON; unknown keys are an error, not ignored."""
        allowed = {f.name for f in fields(cls)}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ValueError(f"unknown hint config keys {extra}; allowed: {sorted(allowed)}")
        if isinstance(data.get("hints"), str) or isinstance(data.get("conjunctions"), str):
            raise ValueError("'hints' and 'conjunctions' must be lists, not a string")
        try:
            config = cls(**data)
        except TypeError as exc:  # a library entry without name, domain and text
            raise ValueError(f"'library' entries need name, domain and text: {exc}") from None
        return config.validate(known_hints=known_hints)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hints"] = list(self.hints)
        data["conjunctions"] = list(self.conjunctions)
        data["library"] = [asdict(h) for h in self.library]
        return data


def pick_hint(
    config: HintConfig,
    *,
    rng: random.Random,
    problem: _HintedProblem | None = None,
) -> Hint:
    """A random hint among the config's that fits the problem, from the config's library.

    Code problems get code hints (the debug variant matching their harness), other domains math
    hints; when the config has none that fit, any of its hints.
    """
    chosen = [h for h in config.hint_library if h.name in config.hints]
    if not chosen:
        raise ValueError(f"none of the config's hints {list(config.hints)} is in the library")
    if problem is None:
        return rng.choice(chosen)
    domain = "code" if problem.domain == "code" else "math"
    fitting = [h for h in chosen if h.domain == domain]
    if domain == "code":
        variant = "code_debug_call" if uses_call_harness(problem) else "code_debug_stdin"
        other = "code_debug_stdin" if variant == "code_debug_call" else "code_debug_call"
        fitting = [h for h in fitting if h.name != other] or fitting
    return rng.choice(fitting or chosen)


def hint_validate(hint: Hint) -> Hint:
    """Raise ValueError unless the hint can be inserted: a known domain, and a text that ends
    by opening a python block (the model goes on with code, and parsing finds the hint)."""
    if hint.domain not in ("math", "code"):
        raise ValueError(f"hint {hint.name!r}: domain must be math or code, got {hint.domain!r}")
    if not hint.text.endswith(CODE_FENCE):
        raise ValueError(f"hint {hint.name!r} must end by opening a {CODE_FENCE} block")
    return hint


def hint_text(hint: Hint, problem: _CodeProblem | None = None) -> str:
    """The text to insert: ``{testcase}`` filled from the problem's tests (empty without one)."""
    testcases = format_testcases(problem) if problem is not None else ""
    # str.replace, not str.format: the templates hold braces of their own.
    return hint.text.replace(TESTCASE_SLOT, testcases)


def should_insert_at_conjunction(
    config: HintConfig, *, rng: random.Random, conjunction_hints_so_far: int
) -> bool:
    """Whether to insert a hint at a conjunction the model just wrote (cap, then probability)."""
    return (
        conjunction_hints_so_far < config.max_hints
        and rng.random() < config.conjunction_probability
    )


def end_hint_allowed(config: HintConfig, *, end_hints_so_far: int) -> bool:
    """Whether to withhold the end-of-thinking marker (again) and insert a hint."""
    return config.end_of_thinking and end_hints_so_far < config.end_repeats

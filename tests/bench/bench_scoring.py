"""Trajectories scored per second, one at a time on one core: math (math-verify) and code (sandbox).

    python -m tests.bench.bench_scoring

Math trajectories carry distinct answers of mixed kinds (integers, fractions, radicals, intervals,
sets, equations), so the parse cache helps only as it does in a round: the reference is shared by
the samples of one problem. Code trajectories run their final program through workers.sandbox
against three stdin tests or three call tests (one harness run), as a round does.
"""

from __future__ import annotations

import json
import time

from curation import scoring
from curation.problems import ProblemSpec

MATH_PROBLEMS = 50
SAMPLES_PER_PROBLEM = 4
CODE_TRAJECTORIES = 40


def _math_answer(i: int) -> tuple[str, str, str]:
    """(reference, a correct answer written differently, a wrong answer) of one of six kinds."""
    kind = i % 6
    if kind == 0:
        return str(i + 7), f"{i + 7}.0", str(i + 8)
    if kind == 1:
        return f"\\frac{{{i + 1}}}{{{i + 2}}}", f"{i + 1}/{i + 2}", f"\\frac{{{i + 2}}}{{{i + 1}}}"
    if kind == 2:
        return f"{i + 2}\\sqrt{{2}}", f"\\sqrt{{{2 * (i + 2) ** 2}}}", f"{i + 2}\\sqrt{{3}}"
    if kind == 3:
        return f"(0, {i + 1}]", f"(0,{i + 1}]", f"[0, {i + 1}]"
    if kind == 4:
        return f"\\{{{i}, {i + 1}\\}}", f"\\{{{i + 1},{i}\\}}", f"\\{{{i}, {i + 2}\\}}"
    return f"x = {i + 3}", f"{i + 3}", f"x = {i + 4}"


def _math_text(answer: str, i: int) -> str:
    return (
        f"<think>\nLet me set up the problem {i}. Wait, I can use Python to perform complex "
        f"calculations for this problem.```python\nprint({i} * 2)\n```\n```output\n{i * 2}\n```\n"
        "That matches my reasoning, so I can conclude.\n</think>\n\n"
        f"The final answer is $\\boxed{{{answer}}}$."
    )


def _math_pairs() -> list[tuple[ProblemSpec, str]]:
    pairs = []
    for i in range(MATH_PROBLEMS):
        reference, correct, wrong = _math_answer(i)
        problem = ProblemSpec(domain="math", prompt=f"problem {i}", answer=reference)
        for sample in range(SAMPLES_PER_PROBLEM):
            pairs.append((problem, _math_text(correct if sample % 2 == 0 else wrong, i)))
    return pairs


STDIN_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Sum of a list.",
    tests=[
        {"type": "stdin", "input": "3\n1 2 3\n", "output": "6\n"},
        {"type": "stdin", "input": "1\n5\n", "output": "5\n"},
        {"type": "stdin", "input": "4\n-1 1 -1 1\n", "output": "0\n"},
    ],
)
CALL_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Two sum.",
    tests=[
        {"type": "call", "args": [[2, 7, 11, 15], 9], "expected": [0, 1]},
        {"type": "call", "args": [[3, 2, 4], 6], "expected": [1, 2]},
        {"type": "call", "args": [[3, 3], 6], "expected": [0, 1]},
    ],
    entry_point="Solution.two_sum",
)
STDIN_SOLUTION = "n = int(input())\nprint(sum(map(int, input().split())))"
CALL_SOLUTION = """class Solution:
    def two_sum(self, nums, target):
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i"""


def _code_text(program: str, i: int) -> str:
    return (
        f"<think>\nAttempt {i}. Let me test.```python\nprint({i})\n```\n```output\n{i}\n```\n"
        f"</think>\n\nFinal solution:\n```python\n{program}\n```\n"
    )


def _code_pairs() -> list[tuple[ProblemSpec, str]]:
    return [
        (STDIN_PROBLEM, _code_text(STDIN_SOLUTION, i))
        if i % 2 == 0
        else (CALL_PROBLEM, _code_text(CALL_SOLUTION, i))
        for i in range(CODE_TRAJECTORIES)
    ]


def _rate(pairs: list[tuple[ProblemSpec, str]]) -> tuple[float, int]:
    start = time.perf_counter()
    scores = scoring.score_many(pairs)
    elapsed = time.perf_counter() - start
    return len(pairs) / elapsed, sum(bool(s.correct) for s in scores)


def run_bench() -> dict[str, float]:
    # Warm-up: math-verify's grammar and sympy load lazily, and the sandbox pool starts on first
    # use; neither is what a long round pays per trajectory.
    scoring.score_many([_math_pairs()[0], _code_pairs()[0], _code_pairs()[1]])
    scoring._parse_math.cache_clear()

    math_pairs = _math_pairs()
    math_per_s, math_correct = _rate(math_pairs)
    assert math_correct == len(math_pairs) // 2, "half the math samples are correct by design"
    code_pairs = _code_pairs()
    code_per_s, code_correct = _rate(code_pairs)
    assert code_correct == len(code_pairs), "every code sample is correct by design"
    return {"scoring.math_per_s": round(math_per_s, 1), "scoring.code_per_s": round(code_per_s, 1)}


if __name__ == "__main__":
    print(json.dumps(run_bench(), indent=2))

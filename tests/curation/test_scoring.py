import pytest

from curation.problems import ProblemSpec
from curation.scoring import (
    Score,
    call_harness,
    extract_choice,
    extract_math_answer,
    final_program,
    last_boxed,
    math_equal,
    score,
    score_many,
)

# (answer, reference): equal according to mathematics and to math-verify.
EQUIVALENT = [
    ("27", "27.0"),
    ("\\frac{1}{2}", "0.5"),
    ("1/2", "\\frac12"),
    ("\\sqrt{8}", "2\\sqrt{2}"),
    ("(0,1]", "(0, 1]"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("10-4 n", "-4n+10"),
    ("x^{2}-4 x-2=0", "x^2-4x-2=0"),
    ("2 \\sqrt{3}", "\\sqrt{12}"),
    ("\\dfrac{3}{4}", "3/4"),
    ("7,-7", "\\pm 7"),
    ("5\\text{ cm}", "5"),
    ("1,000", "1000"),
    ("x=3", "3"),
    ("\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)"),
    ("(45,2),(-10,-9)", "(-10,-9),(45,2)"),
    ("\\frac{4-6 i}{13}", "\\frac{4}{13}-\\frac{6}{13}i"),
    ("[2, 5)", "[2,5)"),
    ("(-\\infty, \\infty)", "\\mathbb{R}"),
    ("0.25", "\\frac{1}{4}"),
    ("2^{10}", "1024"),
    ("\\left(\\frac{1}{3}, 2\\right)", "(1/3, 2)"),
    ("e^{2}", "\\exp(2)"),
    ("3\\sqrt{2}/2", "\\frac{3}{\\sqrt{2}}"),
    ("x \\in [1, 3]", "[1,3]"),
    ("\\$18", "18"),
    ("18.00", "18"),
    ("\\frac{2}{4}", "\\frac{1}{2}"),
    ("a+b", "b+a"),
    ("\\cfrac{1}{2}", "0.5"),
    ("(0,125) \\cup(125, \\infty)", "(0,\\infty)\\setminus\\{125\\}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("90^\\circ", "90"),
    ("x \\le 3", "x\\leq3"),
    ("\\ln \\left|x\\right|+C", "\\ln|x|+C"),
    ("y=2x+1", "y = 1 + 2x"),
    ("-\\frac{1}{4}", "-0.25"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("1+\\sqrt{5}", "\\sqrt{5}+1"),
    ("No solution", "no solution"),
    # A percentage against a plain reference is accepted (math-verify's convention).
    ("50\\%", "50"),
]
DIFFERENT = [
    ("(0,1)", "[0,1]"),
    ("0.5", "\\frac{1}{3}"),
    ("27", "28"),
    ("\\sqrt{2}", "2"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("10-4n", "10+4n"),
    ("x^2", "x^3"),
    ("-5", "5"),
    ("\\frac{3}{4}", "\\frac{4}{3}"),
    ("1000", "100"),
    ("\\pi", "3.14"),
    ("2\\sqrt{3}", "3\\sqrt{2}"),
    ("[2,5)", "[2,5]"),
    ("7", "\\pm 7"),
    ("e", "2.7"),
    ("x=3", "x=4"),
    ("(1,2)", "(1,3)"),
    ("\\frac{1}{2}", "\\frac{1}{2}x"),
    ("2^{10}", "1000"),
    ("y=2x+1", "y=2x-1"),
    ("\\infty", "-\\infty"),
]


@pytest.mark.parametrize(("answer", "reference"), EQUIVALENT)
def test_equivalent_math_answers(answer, reference):
    assert math_equal(answer, reference)


@pytest.mark.parametrize(("answer", "reference"), DIFFERENT)
def test_different_math_answers(answer, reference):
    assert not math_equal(answer, reference)


def math_problem(answer: str) -> ProblemSpec:
    return ProblemSpec(domain="math", prompt="?", answer=answer)


def test_last_boxed_balances_nested_braces():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}.") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("none") is None


def test_answer_extraction_prefers_boxed_then_phrases():
    assert extract_math_answer("</think>So \\boxed{3} and the answer is 4.") == "3"
    assert extract_math_answer("</think>\nThe answer is 45.") == "45"
    assert extract_math_answer(
        "</think>\nFinal Answer: The final answer is $\\frac{1}{2}$. Yes"
    ) == ("\\frac{1}{2}")
    assert extract_math_answer("</think>\nAnswer: 12, so done") == "12"
    # Printed output and code are not the answer; the think part does not count once it ended.
    text = (
        "<think>the answer is 9\n```python\nprint('\\\\boxed{5}')\n```\n"
        "```output\n\\boxed{5}\n```\n"
    )
    assert extract_math_answer(text) == "9"
    assert extract_math_answer(text + "</think>\nI am not sure.") is None


def test_score_math_trajectory_from_the_contract():
    text = (
        "<think>\nLet me compute the sum. Wait, I can use Python to perform complex calculations "
        "for this problem.```python\nprint(sum(range(10)))\n```\n```output\n45\n```\n"
        "So the sum is 45.\n</think>\n\nThe answer is \\boxed{45}."
    )
    result = score(math_problem("45.0"), text)
    assert result == Score(True, "45", "correct", {"reference": "45.0"})
    wrong = score(math_problem("44"), text)
    assert wrong.correct is False and wrong.reason == "wrong"


def test_score_math_bad_inputs_give_reasons():
    assert score(math_problem("3"), "<think>hmm</think> I give up.") == Score(
        False, None, "no answer"
    )
    # The reference is prose math-verify cannot parse: not judged, not an exception.
    unparseable = score(math_problem("The last column must not be a pivot."), "\\boxed{yes}")
    assert unparseable.correct is None and unparseable.reason == "unparseable reference"
    assert score(math_problem("x<-7:(-\\infty,-7)"), "\\boxed{x<-7:(-\\infty,-7)}").correct
    huge = "\\boxed{" + "9" * 5000 + "}"
    assert score(math_problem("1"), huge).correct is False


CHOICES = ["red", "green", "blue", "yellow"]


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("</think>\\boxed{B}", "B"),
        ("</think>\\boxed{(C)}", "C"),
        ("</think>\\boxed{\\text{D}}", "D"),
        ("</think>\\boxed{B. green}", "B"),
        ("</think>\\boxed{blue}", "C"),
        ("</think>The answer is (A).", "A"),
        ("</think>Answer: **D**", "D"),
        ("</think>I think option B is correct.", "B"),
        ("</think>So the answer is A, wait no, the answer is (C)", "C"),
        ("</think>\n(B)\n", "B"),
        ("</think>The answer is a bit unclear.", None),
        ("</think>The answer is (F).", None),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text, CHOICES) == letter


def test_score_choice():
    problem = ProblemSpec(domain="science", prompt="?", answer="C", choices=CHOICES)
    assert score(problem, "<think>blue</think>\\boxed{C}").correct is True
    assert score(problem, "<think>red</think>The answer is (A)").correct is False
    assert score(problem, "<think>...").reason == "no answer"


# ---------------------------------------------------------------------------------------------
# Code


@pytest.fixture(scope="module")
def limits():
    """Short limits for the real sandbox (workers.sandbox), which score() uses by default."""
    from curation.execution import Limits

    return Limits(wall_s=3.0, cpu_s=3.0)


STDIN_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Read two integers, print their sum.",
    tests=[
        {"type": "stdin", "input": "1 2\n", "output": "3\n"},
        {"type": "stdin", "input": "-5 5\n", "output": "0"},
    ],
)
CALL_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Two sum.",
    tests=[
        {"type": "call", "args": [[2, 7, 11, 15], 9], "expected": [0, 1]},
        {"type": "call", "args": [[3, 2, 4], 6], "expected": [1, 2]},
    ],
    entry_point="Solution.two_sum",
)
FUNCTION_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Halve.",
    tests=[
        {"type": "call", "args": [3], "expected": 1.5},
        {"type": "call", "args": [4], "expected": 2},
    ],
    entry_point="halve",
)

STDIN_OK = "a, b = map(int, input().split())\nprint(a + b)"
TWO_SUM_OK = """class Solution:
    def two_sum(self, nums, target):
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return [seen[target - x], i]
            seen[x] = i
"""


def answer_with(program: str, debug: str = "print('debug')") -> str:
    return (
        f"<think>\nLet me test.```python\n{debug}\n```\n```output\ndebug\n```\n</think>\n\n"
        f"Final solution:\n```python\n{program}\n```\n"
    )


def test_final_program_prefers_the_answer_then_the_entry_point():
    assert final_program(STDIN_PROBLEM, answer_with(STDIN_OK)) == STDIN_OK
    debug_only = (
        "<think>```python\nimport io, sys\nsys.stdin = io.StringIO('1 2')\nprint(3)\n```\n"
        f"```python\n{STDIN_OK}\n```\n"
        "```python\nsys.stdin = io.StringIO('1 2')\n```\n</think>done"
    )
    assert final_program(STDIN_PROBLEM, debug_only) == STDIN_OK
    no_think = (
        f"Here:\n```python\n{TWO_SUM_OK}\n```\n```python\nprint(Solution().two_sum([1], 1))\n```"
    )
    assert final_program(CALL_PROBLEM, no_think) == TWO_SUM_OK
    assert final_program(CALL_PROBLEM, "no code at all") is None


def test_stdin_correct(limits):
    result = score(STDIN_PROBLEM, answer_with(STDIN_OK), limits=limits)
    assert result.correct is True, result
    assert result.details["passed"] == 2 and result.details["total"] == 2


def test_stdin_wrong_keeps_per_test_results(limits):
    result = score(
        STDIN_PROBLEM, answer_with("a, b = map(int, input().split())\nprint(a - b)"), limits=limits
    )
    assert result.correct is False and result.reason == "tests failed"
    assert [t["passed"] for t in result.details["tests"]] == [False, False]
    assert result.details["tests"][0]["stdout"].strip() == "-1"


def test_stdin_crash(limits):
    result = score(STDIN_PROBLEM, answer_with("raise SystemExit(input() and 3)"), limits=limits)
    assert result.correct is False
    assert all(not t["passed"] for t in result.details["tests"])
    crash = score(STDIN_PROBLEM, answer_with("print(1/0)"), limits=limits)
    assert "ZeroDivisionError" in crash.details["tests"][0]["error"]


def test_stdin_slow(limits):
    result = score(STDIN_PROBLEM, answer_with("while True:\n    pass"), limits=limits)
    assert result.correct is False
    first, second = result.details["tests"]
    assert first["error"] in ("timeout", "cpu time")  # the sandbox's limit reason
    assert second == {"type": "stdin", "passed": False, "error": "skipped after a timeout"}


def test_call_correct_wrong_crashing(limits):
    assert score(CALL_PROBLEM, answer_with(TWO_SUM_OK), limits=limits).correct is True
    wrong = score(
        CALL_PROBLEM, answer_with(TWO_SUM_OK.replace("[seen[target - x], i]", "[i]")), limits=limits
    )
    assert wrong.correct is False
    assert wrong.details["tests"][0]["got"] == "[1]"
    crash = "class Solution:\n    def two_sum(self, nums, target):\n        return nums[99]"
    crashed = score(CALL_PROBLEM, answer_with(crash), limits=limits)
    assert crashed.correct is False
    assert crashed.details["tests"][0]["error"].startswith("IndexError")


def test_call_function_with_float_results(limits):
    ok = score(FUNCTION_PROBLEM, answer_with("def halve(x):\n    return x / 2"), limits=limits)
    assert ok.correct is True, ok
    misnamed = score(FUNCTION_PROBLEM, answer_with("def half(x):\n    return x / 2"), limits=limits)
    assert misnamed.correct is False
    assert "NameError" in misnamed.details["tests"][0]["error"]


def test_call_slow_test_times_out_inside_the_harness(limits, monkeypatch):
    monkeypatch.setattr("curation.scoring.CALL_TEST_TIMEOUT_S", 0.5)
    slow = "def halve(x):\n    if x == 3:\n        while True:\n            pass\n    return x / 2"
    result = score(FUNCTION_PROBLEM, answer_with(slow), limits=limits)
    assert result.correct is False
    first, second = result.details["tests"]
    assert first["error"].startswith("TimeoutError") and second["passed"]


def test_harness_imports_nothing_from_the_project():
    harness = call_harness("def f(x):\n    return x", "f", [[1]])
    assert "curation" not in harness and "workers" not in harness


def test_code_bad_inputs_give_reasons(limits):
    assert score(STDIN_PROBLEM, "<think>no idea</think>", limits=limits).reason == "no answer"
    no_tests = ProblemSpec(domain="code", prompt="?")
    assert score(no_tests, answer_with(STDIN_OK), limits=limits) == Score(None, None, "no tests")
    malformed = ProblemSpec(domain="code", prompt="?", tests=[{"type": "stdin", "input": 3}])
    assert score(malformed, answer_with(STDIN_OK), limits=limits).reason.startswith(
        "malformed tests"
    )


def test_fault_injection_runner_that_raises():
    def broken_runner(code, *, stdin="", limits=None, session=None):
        raise ConnectionError("sandbox pool is down")

    result = score(STDIN_PROBLEM, answer_with(STDIN_OK), run=broken_runner)
    assert result.correct is None
    assert result.reason == "runner error: ConnectionError: sandbox pool is down"


def test_score_many(limits):
    results = score_many(
        [(math_problem("2"), "\\boxed{2}"), (STDIN_PROBLEM, answer_with(STDIN_OK))], limits=limits
    )
    assert [r.correct for r in results] == [True, True]


def test_math_scoring_works_off_the_main_thread():
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(score, math_problem("\\frac{1}{3}"), "\\boxed{2/6}").result()
    assert result.correct is True


# --- Check programs (HumanEval, MBPP) ---------------------------------------------------------

CLOSE_CHECK = (
    "def check(candidate):\n"
    "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
    "    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False\n"
)
CHECK_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Complete has_close_elements.",
    tests=[{"type": "check", "program": CLOSE_CHECK + "\n\ncheck(has_close_elements)\n"}],
    entry_point="has_close_elements",
)
CLOSE_OK = """def has_close_elements(numbers: List[float], threshold: float) -> bool:
    pairs = [(a, b) for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j]
    return any(abs(a - b) < threshold for a, b in pairs)"""


def test_a_check_program_passes_a_right_solution_and_fails_a_wrong_one(limits):
    # `List` without an import: the harness gives what HumanEval's and LiveCodeBench's give.
    result = score(CHECK_PROBLEM, answer_with(CLOSE_OK), limits=limits)
    assert result.correct is True, result
    assert result.details["tests"][0]["passed"] is True
    wrong = score(
        CHECK_PROBLEM,
        answer_with("def has_close_elements(numbers, threshold):\n    return False"),
        limits=limits,
    )
    assert wrong.correct is False and wrong.reason == "tests failed"
    assert "AssertionError" in wrong.details["tests"][0]["error"]


def test_a_test_program_that_never_calls_check_scores_no_test_ran(limits):
    never = ProblemSpec(
        domain="code",
        prompt="?",
        tests=[{"type": "check", "program": CLOSE_CHECK}],  # defines check, never calls it
        entry_point="has_close_elements",
    )
    result = score(never, answer_with(CLOSE_OK), limits=limits)
    assert (result.correct, result.reason) == (None, "no test ran")
    assert result.details["tests"][0] == {
        "type": "check",
        "passed": False,
        "wall_s": result.details["tests"][0]["wall_s"],
        "error": "no test ran",
        "no_test": True,
    }
    # A solution that calls its own `check` does not count: only the test program's does.
    sneaky = CLOSE_OK + "\n\ndef check(candidate):\n    pass\n\ncheck(None)\n"
    assert score(never, answer_with(sneaky), limits=limits).reason == "no test ran"
    malformed = ProblemSpec(domain="code", prompt="?", tests=[{"type": "check", "program": " "}])
    assert score(malformed, answer_with(CLOSE_OK), limits=limits).reason.startswith(
        "malformed tests: tests[0] needs a program that calls check"
    )

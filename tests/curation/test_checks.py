"""Checks on hand-labelled trajectories: planted placeholders, identifier slips, harness names."""

from dataclasses import dataclass, field

import pytest

from curation.checks import (
    Flag,
    ToolCalls,
    find_flags,
    flag_counts,
    output_sources,
    repetition_score,
    tool_calls,
)
from curation.hints import hint_texts, render_debug_hint
from curation.problems import ProblemSpec
from curation.trajectory import output_block, parse, segment_spans

HINT = "Wait, I can use Python to perform complex calculations for this problem."
MATH = ProblemSpec(domain="math", prompt="?", answer="1")
STDIN = ProblemSpec(
    domain="code", prompt="sum", tests=[{"type": "stdin", "input": "1 2\n", "output": "3\n"}]
)
TWO_SUM = ProblemSpec(
    domain="code",
    prompt="two sum",
    tests=[{"type": "call", "args": [[2, 7], 9], "expected": [0, 1]}],
    entry_point="Solution.two_sum",
)
SOLVE = ProblemSpec(
    domain="code",
    prompt="solve",
    tests=[{"type": "call", "args": [3], "expected": 6}],
    entry_point="solve",
)

LIBRARY = hint_texts()  # the built-in hints, as a round that uses them all snapshots them


def cell(code: str, output: str | None = "ok") -> str:
    block = f"```python\n{code}\n```\n"
    return block + (output_block(output) if output is not None else "")


def think(*parts: str, answer: str = "The answer is \\boxed{1}.") -> str:
    return "<think>\n" + "\n".join(parts) + f"\n</think>\n\n{answer}"


@dataclass
class Case:
    name: str
    text: str
    problem: ProblemSpec
    # (group, snippet): a flag of the group must overlap the snippet's first occurrence. A twin
    # label names both spellings: flagging either one shows the annotator the pair.
    labels: list[tuple[str, str | tuple[str, ...]]] = field(default_factory=list)


GROUPS = {
    "placeholder": "placeholder",
    "undefined_name": "identifier",
    "identifier_twin": "identifier",
    "harness_name": "harness",
}

CASES = [
    Case(
        "clean math with sympy",
        think(
            f"Solve x^2 = 4. {HINT}",
            cell(
                "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 4, x))", "[-2, 2]"
            ),
            "So x = 2 or x = -2.",
        ),
        MATH,
    ),
    Case(
        "clean stdin problem with a debug cell and a final answer",
        think(
            "Let me test. " + render_debug_hint(STDIN),
            "import io, sys\nsys.stdin = io.StringIO('1 2')\na, b = map(int, input().split())\n"
            "print(a + b)\n```\n" + output_block("3"),
            "Works.",
            answer=cell("a, b = map(int, input().split())\nprint(a + b)", None),
        ),
        STDIN,
    ),
    Case(
        "input_data = ...",
        think(
            HINT,
            cell(
                "input_data = ...\nvalues = list(map(int, input_data.split()))\nprint(sum(values))"
            ),
        ),
        MATH,
        [("placeholder", "...")],
    ),
    Case(
        "your code here with a pass body",
        think(
            "Wait, maybe using python here is a good idea.",
            cell("def count_paths(n):\n    # your code here\n    pass\n\nprint(count_paths(4))"),
        ),
        MATH,
        [("placeholder", "# your code here"), ("placeholder", "pass")],
    ),
    Case(
        "ellipsis statement in a function",
        think(
            HINT,
            cell("def area(r):\n    ...\n\nprint(area(2))", "None"),
        ),
        MATH,
        [("placeholder", "    ...")],
    ),
    Case(
        "NotImplementedError in the final solution",
        think(
            "Plan done.",
            answer=cell(
                "class Solution:\n    def two_sum(self, nums, target):\n"
                "        raise NotImplementedError('later')",
                None,
            ),
        ),
        TWO_SUM,
        [("placeholder", "raise NotImplementedError")],
    ),
    Case(
        "TODO comment",
        think(
            HINT,
            cell(
                "def f(n):\n    total = 0\n    for i in range(n):\n"
                "        total += i  # TODO handle "
                "negative n\n    return total\n\nprint(f(5))",
                "10",
            ),
        ),
        MATH,
        [("placeholder", "# TODO")],
    ),
    Case(
        "angle-bracket placeholder",
        think(
            HINT, cell("n = <number of test cases>\nprint(n * 2)", "SyntaxError: invalid syntax")
        ),
        MATH,
        [("placeholder", "<number of test cases>")],
    ),
    Case(
        "template names copied from the debug hint",
        think(
            render_debug_hint(TWO_SUM).removesuffix("```python"),
            cell(
                "class Solution:\n    def two_sum(self, nums, target):\n        return [0, 1]\n\n"
                "solution = Solution()\nprint(solution.method_name(test_input_1))"
            ),
        ),
        TWO_SUM,
        [("placeholder", "solution.method_name"), ("placeholder", "test_input_1)")],
    ),
    Case(
        "misspelled variable",
        think(
            HINT,
            cell("total_sum = 0\nfor k in range(1, 11):\n    total_sum += k * k\nprint(totl_sum)"),
        ),
        MATH,
        [("identifier", "totl_sum)")],
    ),
    Case(
        "one variable in two styles across cells",
        think(
            HINT,
            cell("maxValue = max([3, 9, 4])\nprint(maxValue)", "9"),
            "Let me double check.",
            cell("max_value = max([3, 9, 4, 1])\nprint(max_value)", "9"),
        ),
        MATH,
        [("identifier", ("max_value =", "maxValue ="))],
    ),
    Case(
        "name from an earlier cell, but cells run alone",
        think(
            HINT,
            cell("primes = [p for p in range(2, 50) if all(p % d for d in range(2, p))]", ""),
            "Now count them.",
            cell("print(len(primes))", "NameError: name 'primes' is not defined"),
        ),
        MATH,
        [("identifier", "primes))")],
    ),
    Case(
        "camelCase method where the harness calls snake_case",
        think(
            "Done thinking.",
            answer=cell(
                "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
                "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                "                return [seen[target - x], i]\n            seen[x] = i",
                None,
            ),
        ),
        TWO_SUM,
        [("harness", "twoSum")],
    ),
    Case(
        "function misnamed",
        think("ok", answer=cell("def solve_case(n):\n    return 2 * n", None)),
        SOLVE,
        [("harness", "solve_case")],
    ),
    Case(
        "class misnamed",
        think(
            "ok",
            answer=cell(
                "class Solver:\n    def two_sum(self, nums, target):\n        return [0, 1]", None
            ),
        ),
        TWO_SUM,
        [("harness", "Solver")],
    ),
    Case(
        "clean: numpy ellipsis, typing ellipsis, except pass, marker class",
        think(
            HINT,
            cell(
                "import numpy as np\nfrom typing import Tuple\n\n\nclass Stop(Exception):\n"
                "    pass\n\n\n"
                "def first(a: np.ndarray) -> Tuple[int, ...]:\n    return tuple(a[..., 0])\n\n\n"
                "try:\n    print(first(np.ones((2, 2))))\nexcept ValueError:\n    pass",
                "(1.0, 1.0)",
            ),
        ),
        MATH,
    ),
    Case(
        "clean: deliberate look-alike names",
        think(
            HINT,
            cell(
                "x1, x2 = 3, 4\nnums = [1, 2]\nfor num in nums:\n    x1 += num\n"
                "result = x1 * x2\nresults = [result]\ncount_ways = 3\ncount_days = 4\n"
                "left, right = 0, 1\nprint(results, count_ways + count_days, left, right)"
            ),
        ),
        MATH,
    ),
    Case(
        "clean call problem with a helper",
        think(
            render_debug_hint(TWO_SUM).removesuffix("```python"),
            cell(
                "def index_of(seen, value):\n    return seen.get(value)\n\n\nclass Solution:\n"
                "    def two_sum(self, nums, target):\n        seen = {}\n"
                "        for i, x in enumerate(nums):\n            j = index_of(seen, target - x)\n"
                "            if j is not None:\n                return [j, i]\n"
                "            seen[x] = i\n\n\n"
                "print(Solution().two_sum([2, 7, 11, 15], 9))",
                "[0, 1]",
            ),
        ),
        TWO_SUM,
    ),
    Case(
        "misspelled function call",
        think(
            HINT,
            cell(
                "def compute_gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n\n"
                "print(compute_gdc(84, 36))"
            ),
        ),
        MATH,
        [("identifier", "compute_gdc")],
    ),
    Case(
        "placeholder string",
        think(HINT, cell('raw = "<your input here>"\nprint(raw.split())')),
        MATH,
        [("placeholder", '"<your input here>"')],
    ),
    Case(
        "pass-only loop body",
        think(
            HINT,
            cell("count = 0\nfor i in range(10):\n    pass\nprint(count)"),
        ),
        MATH,
        [("placeholder", "    pass")],
    ),
    Case(
        "two slips in one cell",
        think(
            HINT,
            cell(
                "input_data = ...\nlines = input_data.splitlines()\n"
                "number_list = [int(t) for t in lines]\n"
                "print(sum(numbr_list))"
            ),
        ),
        MATH,
        [("placeholder", "..."), ("identifier", "numbr_list")],
    ),
    Case(
        "clean: short names and several self-contained cells",
        think(
            HINT,
            cell(
                "dp = [1] * 10\nfor i in range(2, 10):\n    dp[i] = dp[i - 1] + dp[i - 2]\n"
                "print(dp)"
            ),
            "Alternatively, check with a closed form.",
            cell(
                "import math\nphi = (1 + math.sqrt(5)) / 2\nprint(round(phi ** 10 / math.sqrt(5)))"
            ),
        ),
        MATH,
    ),
    Case(
        "transposed letters in a defined name",
        think(
            HINT,
            cell("recieve_count = 2\nreceive_count = 3\nprint(receive_count + recieve_count)"),
        ),
        MATH,
        [("identifier", ("recieve_count", "receive_count ="))],
    ),
    Case(
        "clean stdin solution reading all input",
        think(
            "I will read everything at once.",
            answer=cell(
                "import sys\n\n\ndef main():\n    data = sys.stdin.read().split()\n"
                "    a, b = int(data[0]), int(data[1])\n    print(a + b)\n\n\nmain()",
                None,
            ),
        ),
        STDIN,
    ),
]

# Written after the rules above, without tuning the checks to them first.
CASES += [
    Case(
        "rest of the code elided",
        think(
            HINT,
            cell(
                "def solve(grid):\n    rows = len(grid)\n"
                "    # ... (rest of the code remains the same)\n    return rows"
            ),
        ),
        MATH,
        [("placeholder", "# ... (rest of the code remains the same)")],
    ),
    Case(
        "triple-quoted ellipsis as sample input",
        think(HINT, cell('sample = """..."""\nprint(len(sample.split()))')),
        MATH,
        [("placeholder", '"""..."""')],
    ),
    Case(
        "local typo inside a function",
        think(
            HINT,
            cell(
                "def mean(arr):\n    lenght = len(arr)\n    return sum(arr) / length\n\n"
                "print(mean([1, 2]))"
            ),
        ),
        MATH,
        [("identifier", "length\n")],
    ),
    Case(
        "attribute typo",
        think(
            HINT,
            cell(
                "class Graph:\n    def __init__(self):\n        self.edges = {}\n\n"
                "    def add(self, a, b):\n        self.egdes.setdefault(a, []).append(b)\n\n"
                "g = Graph()\ng.add(1, 2)"
            ),
        ),
        MATH,
        [("identifier", "self.egdes")],
    ),
    Case(
        "helper renamed between cells",
        think(
            HINT,
            cell(
                "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n\n"
                "print(is_prime(7))"
            ),
            "Now with the new helper.",
            cell(
                "def isPrime(n):\n"
                "    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))\n\n"
                "print(isPrime(9))"
            ),
        ),
        MATH,
        [("identifier", ("isPrime(n)", "is_prime(n)"))],
    ),
    Case(
        "debug cell calls a name the solution does not define",
        think(
            render_debug_hint(SOLVE).removesuffix("```python"),
            cell("def solve(n):\n    return 2 * n\n\nprint(solve_problem(3))"),
        ),
        SOLVE,
        [("identifier", "solve_problem")],
    ),
    Case(
        "clean: dynamic programming with similar but distinct names",
        think(
            HINT,
            cell(
                "prev_row = [1] * 5\nfor _ in range(4):\n    curr_row = [1] * 5\n"
                "    for j in range(1, 5):\n        curr_row[j] = curr_row[j - 1] + prev_row[j]\n"
                "    prev_row = curr_row\nprint(prev_row[-1])",
                "70",
            ),
        ),
        MATH,
    ),
    Case(
        "clean: class with a constant and its instance",
        think(
            HINT,
            cell(
                "MOD = 10**9 + 7\n\n\nclass Counter2:\n    def __init__(self):\n"
                "        self.mod = MOD\n\n\n"
                "counter2 = Counter2()\nprint(counter2.mod)",
                "1000000007",
            ),
        ),
        MATH,
    ),
]


def occurrences(text: str, snippets: str | tuple[str, ...]) -> list[tuple[int, int]]:
    alternatives = (snippets,) if isinstance(snippets, str) else snippets
    return [occurrence(text, snippet) for snippet in alternatives]


def occurrence(text: str, snippet: str) -> tuple[int, int]:
    """The snippet's first occurrence inside a code segment (not in hints or prose)."""
    segments = parse(text, hints=LIBRARY)
    for segment, (start, _) in zip(segments, segment_spans(segments), strict=True):
        if segment.kind == "code" and snippet in segment.text:
            at = start + segment.text.index(snippet)
            return at, at + len(snippet)
    raise AssertionError(f"label {snippet!r} is not in any code cell")


def overlaps(flag: Flag, span: tuple[int, int]) -> bool:
    return flag.start < span[1] and span[0] < flag.end


def evaluate(cases):
    true_positives = predicted = found = labelled = 0
    misses, false_alarms = [], []
    for case in CASES if cases is None else cases:
        flags = [f for f in find_flags(case.text, case.problem, hints=LIBRARY) if f.kind in GROUPS]
        spans = [(group, occurrences(case.text, snippets)) for group, snippets in case.labels]
        for flag in flags:
            predicted += 1
            if any(
                GROUPS[flag.kind] == g and any(overlaps(flag, s) for s in ss) for g, ss in spans
            ):
                true_positives += 1
            else:
                false_alarms.append((case.name, flag.kind, flag.message))
        for (group, alternatives), (_, snippet) in zip(spans, case.labels, strict=True):
            labelled += 1
            if any(GROUPS[f.kind] == group and overlaps(f, s) for f in flags for s in alternatives):
                found += 1
            else:
                misses.append((case.name, group, snippet))
    return true_positives / max(predicted, 1), found / max(labelled, 1), misses, false_alarms


def test_precision_and_recall_on_labelled_trajectories():
    assert len(CASES) >= 20
    precision, recall, misses, false_alarms = evaluate(None)
    print(
        f"\nchecks on {len(CASES)} labelled trajectories: "
        f"precision {precision:.2f}, recall {recall:.2f}"
    )
    for miss in misses:
        print("  missed:", miss)
    for alarm in false_alarms:
        print("  false alarm:", alarm)
    assert precision >= 0.9
    assert recall >= 0.9


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_spans_point_inside_the_text(case):
    for flag in find_flags(case.text, case.problem, hints=LIBRARY):
        assert 0 <= flag.start < flag.end <= len(case.text), flag
        segments = parse(case.text, hints=LIBRARY)
        if flag.segment_index is not None:
            start, end = segment_spans(segments)[flag.segment_index]
            assert start <= flag.start < end, flag


def kinds_of(text: str, problem=None) -> list[str]:
    return [f.kind for f in find_flags(text, problem, hints=LIBRARY)]


def test_syntax_error_points_at_the_line():
    text = cell("x = 1\ny = (2 +\n", None)
    (flag,) = [f for f in find_flags(text, hints=LIBRARY) if f.kind == "syntax_error"]
    assert flag.level == "error"


def test_shared_state_lets_later_cells_see_earlier_names():
    text = think(HINT, cell("primes = [2, 3, 5]"), cell("print(len(primes))"))
    assert "undefined_name" in kinds_of(text)
    assert "undefined_name" not in [
        f.kind for f in find_flags(text, shared_state=True, hints=LIBRARY)
    ]


def test_tool_call_health():
    error = cell(
        "print(1/0)",
        'Traceback (most recent call last):\n  File "<cell>", line 1, in <module>\n'
        "ZeroDivisionError: division by zero",
    )
    flags = find_flags(think(HINT, error), hints=LIBRARY)
    (code_error,) = [f for f in flags if f.kind == "code_error"]
    assert think(HINT, error)[code_error.start : code_error.end] == (
        "ZeroDivisionError: division by zero"
    )
    assert "output_truncated" in kinds_of(
        think(HINT, cell("while True: pass", "TimeoutError: timed out after 5 s"))
    )
    assert "output_truncated" in kinds_of(
        think(HINT, cell("print('x' * 10**6)", "xxxx\n[output truncated]"))
    )
    assert "output_truncated" in kinds_of("```python\nprint(1)\n```\n```output\n1\n2")
    assert "unclosed_code" in kinds_of("<think>\n```python\nfor i in range(")


def test_fake_output_is_an_output_that_follows_no_code():
    assert "fake_output" in kinds_of("<think>\nI'll just say\n```output\n42\n```\nso 42")
    assert "fake_output" not in kinds_of(think(HINT, cell("print(42)", "42")))
    # A blank line between the code and its output is still the interpreter's block.
    assert "fake_output" not in kinds_of("```python\nprint(1)\n```\n\n```output\n1\n```\n")


def ran_digests(text: str, *, shared_state: bool = False) -> set[str]:
    return {s.digest for s in output_sources(parse(text, hints=()), shared_state=shared_state)}


def stale_flags(text: str, true_outputs: set[str], *, shared_state: bool = False) -> list[Flag]:
    flags = find_flags(text, hints=(), true_outputs=true_outputs, shared_state=shared_state)
    return [f for f in flags if f.kind == "stale_output"]


def test_an_output_whose_cell_changed_since_it_ran_is_stale():
    ran = think("First.", cell("print(2 + 2)", "4"), "Then.", cell("print('b')", "b"))
    true = ran_digests(ran)
    assert stale_flags(ran, true) == []
    assert stale_flags(ran.replace("Then.", "And then."), true) == []  # prose is not code

    edited = ran.replace("print(2 + 2)", "print(1 + 1)")
    [flag] = stale_flags(edited, true)
    assert (flag.level, flag.message) == ("error", "output is stale: re-run the cell")
    assert edited[flag.start : flag.end] == output_block("4")
    assert flag.segment_index == 2
    # What ran is recognised wherever it moves: deleting the first cell leaves the second true.
    assert stale_flags(ran.replace(cell("print(2 + 2)", "4"), ""), true) == []
    # A hand-edited output is no run's output either; without the digests nothing is checked.
    assert len(stale_flags(ran.replace("```output\nb\n", "```output\nc\n"), true)) == 1
    assert "stale_output" not in kinds_of(edited)
    # Re-running records the new digest: the edited text's output is true again.
    rerun = edited.replace(output_block("4"), output_block("2"))
    assert stale_flags(rerun, true | ran_digests(rerun)) == []


def test_in_a_notebook_an_earlier_cell_changed_makes_every_later_output_stale():
    ran = think(
        cell("x = 1", ""), cell("print(x)", "1"), cell("print('ok')", "ok"), cell("y = 2", None)
    )
    edited = ran.replace("x = 1", "x = 2")
    alone = stale_flags(edited, ran_digests(ran))
    assert [edited[f.start : f.end] for f in alone] == [output_block("")]
    shared = stale_flags(edited, ran_digests(ran, shared_state=True), shared_state=True)
    assert len(shared) == 3  # each later executed cell ran after the old first one
    # The last cell has no output: it never ran, so it adds nothing to later cells' sessions.
    assert ran_digests(ran, shared_state=True) == ran_digests(
        ran.replace(cell("y = 2", None), ""), shared_state=True
    )


def test_hints_are_counted_as_info():
    text = think(
        HINT,
        cell("print(1)", "1"),
        "Alternatively, maybe using python here is a good idea.\n" + cell("print(2)", "2"),
    )
    hints = [f for f in find_flags(text, hints=LIBRARY) if f.kind == "hint"]
    assert [f.message for f in hints] == [
        "hint 1 of 2: complex_calculation",
        "hint 2 of 2: general",
    ]
    assert all(f.level == "info" for f in hints)
    assert flag_counts(find_flags(text, hints=LIBRARY)) == {"hint": 2}


LOOP = "Let me recompute the sum of the digits carefully to be sure. " * 12
PARAGRAPH = (
    "We know that the triangle has sides 3, 4 and 5, so it is a right triangle, and its area is "
    "half the product of the legs, which gives six square units in total.\n\n"
)
NORMAL = (
    "First, factor the quadratic: x^2 - 5x + 6 = (x - 2)(x - 3). So the roots are 2 and 3. "
    "Wait, let me verify by substituting: 4 - 10 + 6 = 0 and 9 - 15 + 6 = 0. Both work. "
    "Now the question asks for the sum of the roots, which is 5, matching Vieta's formula "
    "(the sum is -b/a = 5). Therefore the answer is 5."
)


def test_repetition():
    assert repetition_score(think(NORMAL)) == 0.0
    assert "repetition" not in kinds_of(think(NORMAL))
    looped = think(NORMAL, LOOP)
    assert repetition_score(looped) > 0.5
    (flag,) = [f for f in find_flags(looped, hints=LIBRARY) if f.kind == "repetition"]
    assert looped[flag.start : flag.end].startswith("Let me recompute")
    copied = think(NORMAL, PARAGRAPH, "Hmm.", PARAGRAPH, "Hmm.", PARAGRAPH)
    assert "repetition" in kinds_of(copied)
    stutter = think(NORMAL, "=" * 10 + "ab" * 150)
    assert "repetition" in kinds_of(stutter)
    # Repeated code across cells (a fixed re-run) is not prose repetition.
    rerun = think(NORMAL, *[cell("total = sum(range(100))\nprint(total)\n" * 5, "4950")] * 4)
    assert "repetition" not in kinds_of(rerun)


def test_flags_match_the_sandbox_output_format():
    """Limit notes and cut markers as workers.sandbox writes them are recognised."""
    from curation.execution import Execution, format_output

    def block_for(**fields):
        base = {
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
            "reason": None,
            "wall_s": 5.0,
            "cpu_s": 5.0,
        }
        return think(HINT, cell("print(45)", format_output(Execution(**(base | fields)))))

    timeout = block_for(exit_code=-9, reason="timeout")
    assert "output_truncated" in kinds_of(timeout)
    assert "code_error" not in kinds_of(timeout)
    clipped = block_for(stdout="x" * 10_000, reason="output truncated")
    assert "output_truncated" in kinds_of(clipped)
    crashed = block_for(
        stderr='Traceback (most recent call last):\n  File "<cell>", line 1, in <module>\n'
        "ZeroDivisionError: division by zero\n",
        exit_code=1,
        reason="exception",
        error="ZeroDivisionError: division by zero",
    )
    assert kinds_of(crashed).count("code_error") == 1
    assert "output_truncated" not in kinds_of(crashed)
    fine = block_for(stdout="45\n")
    assert kinds_of(fine) == ["hint"]


def test_tool_calls_count_clean_and_failed_calls():
    text = think(
        HINT,
        cell("print(1)", "1"),
        cell("print(1/0)", "ZeroDivisionError: division by zero"),
        cell("while True: pass", "TimeoutError: the code was stopped after 5 s"),
        "```output\nwritten by the model\n```\n",
    )
    assert tool_calls(text) == ToolCalls(total=3, clean=1, failed=2)
    assert tool_calls("no code") == ToolCalls(0, 0, 0)

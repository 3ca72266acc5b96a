import random

import pytest

from curation.hints import (
    HINTS,
    HintConfig,
    end_hint_allowed,
    get_hint,
    hint_text,
    hint_texts,
    pick_hint,
    render_debug_hint,
    should_insert_at_conjunction,
)
from curation.problems import ProblemSpec
from curation.trajectory import parse

STDIN_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Add two numbers.",
    tests=[
        {"type": "stdin", "input": "1 2\n", "output": "3\n"},
        {"type": "stdin", "input": "5 5\n", "output": "10\n"},
    ],
)
CALL_PROBLEM = ProblemSpec(
    domain="code",
    prompt="Two sum.",
    tests=[{"type": "call", "args": [[2, 7, 11, 15], 9], "expected": [0, 1]}],
    entry_point="Solution.two_sum",
    starter_code="class Solution:\n    def two_sum(self, nums, target):\n        ",
)


def test_math_hints_are_the_papers_verbatim():
    assert get_hint("complex_calculation").text == (
        "I can use Python to perform complex calculations for this problem.```python"
    )
    assert get_hint("general").text == "maybe using python here is a good idea.\n```python"
    assert {h.name for h in HINTS if h.domain == "math"} == {
        "complex_calculation",
        "self_reflection",
        "logic_check",
        "alternative_method",
        "general",
        "deeper_thinking",
    }


def test_every_hint_ends_by_opening_a_python_block():
    assert all(h.text.endswith("```python") for h in HINTS)


def test_stdin_debug_hint_uses_stringio_and_fills_the_samples():
    text = render_debug_hint(STDIN_PROBLEM)
    assert "sys.stdin = io.StringIO(sample_input)" in text
    assert "{testcase}" not in text
    assert "Input:\n1 2\nExpected output:\n3" in text
    assert "Input:\n5 5\nExpected output:\n10" in text
    assert text.endswith("Alright, now I can write a debug code with samples input.\n```python")


def test_call_debug_hint_calls_the_solution_class():
    text = render_debug_hint(CALL_PROBLEM)
    assert "solution = Solution()" in text
    assert "solution.two_sum([2, 7, 11, 15], 9) -> expected [0, 1]" in text


def test_rendered_debug_hint_parses_as_a_hint():
    text = "<think>\nHmm. " + render_debug_hint(CALL_PROBLEM) + "\nprint(1)\n```\n"
    assert [s.kind for s in parse(text, hints=hint_texts())] == ["think", "hint", "code"]


def test_config_roundtrip_and_defaults():
    config = HintConfig()
    assert config.conjunctions == ("Wait", "Alternatively")
    assert config.max_tool_calls == 6
    data = config.to_dict()
    assert HintConfig.from_dict(data) == config
    custom = HintConfig.from_dict({"hints": ["general"], "end_repeats": 4, "end_of_thinking": True})
    assert custom.hints == ("general",) and custom.end_repeats == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hints": []}, "names no hints"),
        ({"hints": ["general", "nope"]}, "unknown hint names"),
        ({"hints": "general"}, "must be lists"),
        ({"conjunction_probability": 1.5}, "conjunction_probability"),
        ({"max_tool_calls": -1}, "max_tool_calls"),
        ({"end_repeats": 1.5}, "end_repeats"),
        ({"conjunctions": ["Wait", " "]}, "conjunctions"),
        ({"colour": "red"}, "unknown hint config keys"),
    ],
)
def test_config_validation_errors(data, message):
    with pytest.raises(ValueError, match=message):
        HintConfig.from_dict(data)


def test_known_hints_extend_the_library_names():
    config = HintConfig.from_dict({"hints": ["rephrased"]}, known_hints=["rephrased"])
    assert config.hints == ("rephrased",)


def test_pick_hint_follows_the_problem():
    rng = random.Random(0)
    config = HintConfig()
    math_problem = ProblemSpec(domain="math", prompt="1+1", answer="2")
    assert {pick_hint(config, rng=rng, problem=math_problem).domain for _ in range(50)} == {"math"}
    assert {pick_hint(config, rng=rng, problem=STDIN_PROBLEM).name for _ in range(20)} == {
        "code_debug_stdin"
    }
    assert pick_hint(config, rng=rng, problem=CALL_PROBLEM).name == "code_debug_call"
    only_general = HintConfig(hints=("general",))
    # No code hint in the config: fall back to what it has rather than fail the trajectory.
    assert pick_hint(only_general, rng=rng, problem=STDIN_PROBLEM).name == "general"
    assert "{testcase}" not in hint_text(get_hint("code_debug_stdin"), STDIN_PROBLEM)


def test_insertion_caps():
    rng = random.Random(0)
    always = HintConfig(conjunction_probability=1.0, max_hints=2)
    assert should_insert_at_conjunction(always, rng=rng, conjunction_hints_so_far=1)
    assert not should_insert_at_conjunction(always, rng=rng, conjunction_hints_so_far=2)
    never = HintConfig(conjunction_probability=0.0)
    assert not should_insert_at_conjunction(never, rng=rng, conjunction_hints_so_far=0)
    scaling = HintConfig(end_repeats=3)
    assert [end_hint_allowed(scaling, end_hints_so_far=n) for n in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert not end_hint_allowed(HintConfig(end_of_thinking=False), end_hints_so_far=0)

"""normalize_record against rows copied from the Qwen2.5-Math evaluation files (shared/data)."""

import json

import pytest

from curation.problems import ProblemFormatError, ProblemSpec, normalize_record

# Verbatim lines (aime24's long solution shortened), so the tests need nothing outside the repo.
AIME24 = (
    '{"id": 60, "problem": "Every morning Aya goes for a $9$-kilometer-long walk and stops at a '
    'coffee shop afterwards.", "solution": "$\\\\frac{9}{s} + t = 4$ in hours", "answer": "204", '
    '"url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1", '
    '"question": "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop '
    'afterwards."}'
)
AMC23 = (
    '{"id":1,"problem":"Positive real numbers $x$ and $y$ satisfy $y^3=x^2$ and $(y-x)^2=4y^2$. '
    'What is $x+y$?","answer":36.0,"url":"https:\\/\\/artofproblemsolving.com\\/wiki\\/index.php\\/'
    '2023_AMC_12A_Problems\\/Problem_10","question":"Positive real numbers $x$ and $y$ satisfy '
    '$y^3=x^2$ and $(y-x)^2=4y^2$. What is $x+y$?"}'
)
GSM8K = (
    '{"question":"Josh decides to try flipping a house.  He buys a house for $80,000 and then '
    "puts in $50,000 in repairs.  This increased the value of the house by 150%.  How much "
    'profit did he make?","answer":"The cost of the house and repairs came out to '
    "80,000+50,000=$<<80000+50000=130000>>130,000\\nHe increased the value of the house by "
    "80,000*1.5=<<80000*1.5=120000>>120,000\\nSo the new value of the house is "
    "120,000+80,000=$<<120000+80000=200000>>200,000\\nSo he made a profit of "
    '200,000-130,000=$<<200000-130000=70000>>70,000\\n#### 70000","idx":2}'
)
COLLEGE_MATH = (
    '{"data_source": "college_math.Beginning_and_Intermediate_Algebra", "question_number": '
    '"exercise.0.4.61", "question": "Simplify: $-10-4(n-5)$", "answer": "$10-4 n$", "license": '
    '"Creative Commons Attribution 3.0 Unported License (CC BY 3.0)", "data_topic": '
    '"college_math.algebra"}'
)
COLLEGE_MATH_INTERVAL = (
    '{"data_source": "college_math.Beginning_and_Intermediate_Algebra", "question_number": '
    '"exercise.3.2.5", "question": "Solve the compound inequality and give interval notation: '
    '$x-6<-13$ or $6 x \\\\leqslant-60$", "answer": "$x<-7:(-\\\\infty,-7)$", "license": '
    '"Creative Commons Attribution 3.0 Unported License (CC BY 3.0)", "data_topic": '
    '"college_math.algebra"}'
)
MMLU = (
    '{"question":"Synthesis of an RNA\\/DNA hybrid from a single-stranded RNA template requires",'
    '"type":"college_biology","choices":["a DNA or RNA primer and reverse transcriptase","a DNA or '
    'RNA primer and DNA polymerase","RNase only","reverse transcriptase only"],"answer":0}'
)


def row(line: str) -> dict:
    return json.loads(line)


def test_aime24_problem_field_and_string_answer():
    spec = normalize_record(row(AIME24), default_domain="math")
    assert spec.domain == "math"
    assert spec.prompt.startswith("Every morning Aya")
    assert spec.answer == "204"
    assert spec.external_id == "60"
    assert spec.metadata["url"].endswith("Problem_1")
    assert "solution" in spec.metadata


def test_amc23_float_answer_becomes_an_integer_string():
    spec = normalize_record(row(AMC23))
    assert spec.answer == "36"
    assert spec.external_id == "1"
    assert normalize_record({"problem": "x", "answer": 2.5}).answer == "2.5"


def test_gsm8k_answer_after_the_marker_and_solution_kept():
    spec = normalize_record(row(GSM8K))
    assert spec.prompt.startswith("Josh decides")
    assert spec.answer == "70000"
    assert spec.external_id == "2"
    assert spec.metadata["solution"].endswith("#### 70000")
    assert normalize_record({"question": "q", "answer": "work\n#### 2,125"}).answer == "2125"


def test_college_math_latex_answers_lose_their_dollar_delimiters():
    spec = normalize_record(row(COLLEGE_MATH))
    assert spec.prompt == "Simplify: $-10-4(n-5)$"
    assert spec.answer == "10-4 n"
    assert spec.external_id == "exercise.0.4.61"
    assert spec.metadata["data_topic"] == "college_math.algebra"
    assert normalize_record(row(COLLEGE_MATH_INTERVAL)).answer == "x<-7:(-\\infty,-7)"
    # Two math spans are not one wrapped answer: kept as they are.
    mixed = normalize_record({"question": "q", "answer": "$\\min$ at $2^{-1 / 3}$"})
    assert mixed.answer == "$\\min$ at $2^{-1 / 3}$"


def test_mmlu_index_answer_becomes_a_letter():
    spec = normalize_record(row(MMLU))
    assert spec.domain == "science"
    assert spec.answer == "A"
    assert len(spec.choices) == 4
    assert spec.metadata == {"type": "college_biology"}
    choices = ["1", "2", "3"]
    assert normalize_record({"question": "q", "choices": choices, "answer": "2"}).answer == "C"
    assert normalize_record({"question": "q", "choices": choices, "answer": "(b)"}).answer == "B"
    texts = ["red", "green"]
    assert normalize_record({"question": "q", "choices": texts, "answer": "green"}).answer == "B"


def test_code_problem_with_stdin_and_call_tests():
    spec = normalize_record(
        {
            "prompt": "Read two ints, print the sum.",
            "tests": [{"input": "1 2\n", "output": "3\n"}],
            "id": "sum",
        }
    )
    assert spec.domain == "code"
    assert spec.tests == [{"type": "stdin", "input": "1 2\n", "output": "3\n"}]
    assert spec.entry_point == ""

    spec = normalize_record(
        {
            "question": "Two sum.",
            "starter_code": "class Solution:\n    def twoSum(self, nums, target):\n        ",
            "tests": [{"type": "call", "args": [[2, 7], 9], "expected": [0, 1]}],
        }
    )
    assert spec.entry_point == "Solution.twoSum"
    assert spec.tests[0] == {"type": "call", "args": [[2, 7], 9], "expected": [0, 1]}


def test_livecodebench_style_tests():
    spec = normalize_record(
        {
            "question_content": "Count.",
            "starter_code": "def count(xs):\n    ",
            "tests": json.dumps([{"input": "[1, 2]\n3", "output": "4", "testtype": "functional"}]),
        },
        default_domain="code",
    )
    assert spec.entry_point == "count"
    assert spec.tests == [{"type": "call", "args": [[1, 2], 3], "expected": 4}]


def test_spec_is_usable_without_normalising():
    spec = ProblemSpec(domain="math", prompt="1+1?", answer="2")
    assert spec.choices == [] and spec.tests == [] and spec.entry_point == ""


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"answer": "1"}, "problem"),
        ({"problem": "  ", "answer": "1"}, "problem"),
        ({"problem": "x"}, "answer"),
        ({"problem": "x", "answer": ""}, "answer"),
        ({"problem": "x", "answer": None}, "answer"),
        ({"problem": "x", "answer": True}, "answer"),
        ({"problem": "x", "answer": float("nan")}, "answer"),
        ({"problem": "x", "answer": "1", "domain": "poetry"}, "domain"),
        ({"question": "q", "choices": ["a", "b"], "answer": 5}, "answer"),
        ({"question": "q", "choices": ["a", "b"], "answer": "Z"}, "answer"),
        ({"question": "q", "choices": ["a"], "answer": 0}, "choices"),
        ({"question": "q", "choices": "a,b", "answer": 0}, "choices"),
        ({"prompt": "p", "domain": "code"}, "tests"),
        ({"prompt": "p", "tests": "not json"}, "tests"),
        ({"prompt": "p", "tests": [5]}, "tests[0]"),
        ({"prompt": "p", "tests": [{"input": "1"}]}, "tests[0]"),
        ({"prompt": "p", "tests": [{"type": "shell", "input": "", "output": ""}]}, "tests[0]"),
        ({"prompt": "p", "tests": [{"args": [1], "expected": 2}]}, "entry_point"),
        ({"prompt": "p", "tests": [{"args": [1]}], "entry_point": "f"}, "tests[0]"),
        (
            {"prompt": "p", "tests": [{"args": [1], "expected": 1}], "entry_point": "a b"},
            "entry_point",
        ),
        ({"prompt": "p", "tests": [{"args": 1, "expected": 1}], "entry_point": "f"}, "tests[0]"),
        ({"problem": "x", "answer": "1", "id": {"a": 1}}, "id"),
    ],
)
def test_bad_records_name_the_field(record, field):
    with pytest.raises(ProblemFormatError) as info:
        normalize_record(record)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_non_object_record():
    with pytest.raises(ProblemFormatError, match="JSON object"):
        normalize_record(["not", "a", "dict"])  # type: ignore[arg-type]

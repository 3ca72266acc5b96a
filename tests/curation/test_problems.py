"""The mappers against real rows: the Qwen2.5-Math evaluation files (shared/data) and the paper's
benchmarks as published on the Hugging Face Hub."""

import base64
import json
import pickle
import zlib

import pytest

from curation.problems import (
    ProblemFormatError,
    ProblemSpec,
    UnknownFormatError,
    detect_format,
    format_named,
    map_record,
    normalize_record,
)

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


# --- Published formats ------------------------------------------------------------------------
# Rows as the Hugging Face datasets publish them (long texts shortened where marked "…").

MATH500 = {
    "problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter "
    "your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
    "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ … "
    "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
    "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
    "subject": "Precalculus",
    "level": 2,
    "unique_id": "test/precalculus/807.json",
}
AIME24_H4 = {  # HuggingFaceH4/aime_2024
    "id": 60,
    "problem": "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop "
    "afterwards. …",
    "solution": "$\\frac{9}{s} + t = 4$ in hours and $\\frac{9}{s+2} + t = 2.4$ in hours. …",
    "answer": "204",
    "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1",
    "year": "2024",
}
AIME24_MAXWELL = {  # Maxwell-Jia/AIME_2024
    "ID": "2024-I-1",
    "Problem": "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop "
    "afterwards. …",
    "Solution": "$\\frac{9}{s} + t = 4$ in hours and $\\frac{9}{s+2} + t = 2.4$ in hours. …",
    "Answer": 204,
}
AIME25 = {  # opencompass/AIME2025, AIME2025-I
    "question": "Find the sum of all integer bases $b>9$ for which $17_{b}$ is a divisor of "
    "$97_{b}$.",
    "answer": "70",
}
GPQA = {  # Idavidrein/gpqa, gpqa_diamond (some of its 40-odd columns)
    "Pre-Revision Question": "Two quantum states with energies E1 and E2 have a lifetime of "
    "10^-9 sec and 10^-8 sec, respectively. …",
    "Question": "Two quantum states with energies E1 and E2 have a lifetime of 10^-9 sec and "
    "10^-8 sec, respectively. We want to clearly distinguish these two energy levels. Which one "
    "of the following options could be their energy difference so that they can be clearly "
    "resolved?\n",
    "Correct Answer": "10^-4 eV",
    "Incorrect Answer 1": "10^-11 eV",
    "Incorrect Answer 2": "10^-8 eV\n",
    "Incorrect Answer 3": "10^-9 eV",
    "Subdomain": "Physics (general)",
    "High-level domain": "Physics",
    "Feedback_EV_1": "",
}
LCB_ACRONYM = {  # livecodebench/code_generation_lite, a LeetCode (functional) problem
    "question_title": "check-if-a-string-is-an-acronym-of-words",
    "question_content": "Given an array of strings words and a string s, determine if s is an "
    "acronym of words.\nThe string s is considered an acronym of words if it can be formed by "
    "concatenating the first character of each string in words in order. …",
    "platform": "leetcode",
    "question_id": "2977",
    "contest_id": "weekly-contest-359",
    "contest_date": "2023-08-20T00:00:00",
    "starter_code": "class Solution:\n    def isAcronym(self, words: List[str], s: str) -> bool:"
    "\n        ",
    "difficulty": "easy",
    "public_test_cases": '[{"input": "[\\"alice\\", \\"bob\\", \\"charlie\\"]\\n\\"abc\\"", '
    '"output": "true", "testtype": "functional"}, {"input": "[\\"an\\", \\"apple\\"]\\n\\"a\\"",'
    ' "output": "false", "testtype": "functional"}]',
    "private_test_cases": None,  # encoded below, as the dataset encodes it
    "metadata": '{"func_name": "isAcronym"}',
}
LCB_ACRONYM_PRIVATE = (
    '[{"input": "[\\"never\\", \\"gonna\\", \\"give\\", \\"up\\", \\"on\\", \\"you\\"]\\n'
    '\\"ngguoy\\"", "output": "true", "testtype": "functional"}]'
)
LCB_VOWELS = {  # an AtCoder (stdin) problem
    "question_title": "tcdr",
    "question_content": "You are given a string S consisting of lowercase English letters.\n"
    "Remove all occurrences of a, e, i, o, u from S and print the resulting string. …",
    "platform": "atcoder",
    "question_id": "abc315_a",
    "contest_id": "abc315",
    "contest_date": "2023-08-19T00:00:00",
    "starter_code": "",
    "difficulty": "easy",
    "public_test_cases": '[{"input": "atcoder\\n", "output": "tcdr\\n", "testtype": "stdin"}, '
    '{"input": "xyz\\n", "output": "xyz\\n", "testtype": "stdin"}]',
    "private_test_cases": '[{"input": "aaaabbbbcccc\\n", "output": "bbbbcccc\\n", '
    '"testtype": "stdin"}]',
    "metadata": "{}",
}
HUMANEVAL = {
    "task_id": "HumanEval/0",
    "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold:"
    ' float) -> bool:\n    """ Check if in given list of numbers, are any two numbers closer to '
    "each other than\n    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n"
    "    False\n    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n"
    '    """\n',
    "canonical_solution": "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in "
    "enumerate(numbers):\n            if idx != idx2:\n                distance = abs(elem - "
    "elem2)\n                if distance < threshold:\n                    return True\n\n"
    "    return False\n",
    "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef "
    "check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
    "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n    assert "
    "candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n    assert candidate([1.0, 2.0, 5.9, "
    "4.0, 5.0], 0.8) == False\n    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == "
    "True\n    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n    assert "
    "candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False\n\n",
    "entry_point": "has_close_elements",
}
MBPP = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character "
    "from the string.",
    "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): "
    "\r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) "
    "- 1,-1,-1):  \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n"
    "            break\r\n    return s ",
    "test_list": [
        'assert remove_Occ("hello","l") == "heo"',
        'assert remove_Occ("abcda","a") == "bcd"',
        'assert remove_Occ("PHP","P") == "H"',
    ],
    "test_setup_code": "",
    "challenge_test_list": [
        'assert remove_Occ("hellolloll","l") == "helollol"',
        'assert remove_Occ("","l") == ""',
    ],
}
MBPP_SANITIZED = {
    "source_file": "Benchmark Questions Verification V2.ipynb",
    "task_id": 2,
    "prompt": "Write a function to find the shared elements from the given two lists.",
    "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
    "set(test_tup2))\n  return (res) ",
    "test_imports": [],
    "test_list": [
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
        "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
        "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))",
    ],
}


def lcb_encoded(tests_json: str) -> str:
    """LiveCodeBench's encoding of private tests: base64(zlib(pickle(JSON string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(tests_json))).decode()


def mapped(record: dict, expected_format: str) -> ProblemSpec:
    fmt = detect_format(record)
    assert fmt.name == expected_format
    return map_record(record, format=fmt)


def test_math500_and_the_aime_and_amc_copies():
    spec = mapped(MATH500, "math500")
    assert spec.external_id == "test/precalculus/807.json"
    assert spec.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert spec.metadata == {"solution": MATH500["solution"], "subject": "Precalculus", "level": 2}

    spec = mapped(AIME24_H4, "generic")
    assert (spec.external_id, spec.answer, spec.metadata["year"]) == ("60", "204", "2024")
    assert detect_format(AIME24_H4).unknown(AIME24_H4) == []

    spec = mapped(AIME24_MAXWELL, "aime-capitalised")
    assert (spec.external_id, spec.answer, spec.domain) == ("2024-I-1", "204", "math")
    assert spec.prompt.startswith("Every morning Aya")

    spec = mapped(AIME25, "generic")
    assert (spec.prompt[:20], spec.answer) == ("Find the sum of all ", "70")
    assert mapped(row(AMC23), "generic").answer == "36"


def test_gpqa_choices_are_shuffled_with_a_fixed_seed_into_letters():
    spec = mapped(GPQA, "gpqa")
    assert spec.domain == "science" and len(spec.choices) == 4
    assert sorted(spec.choices) == ["10^-11 eV", "10^-4 eV", "10^-8 eV", "10^-9 eV"]
    assert spec.choices["ABCD".index(spec.answer)] == "10^-4 eV"
    # The question lists its lettered choices; the validation columns are kept, not reported.
    for letter, choice in zip("ABCD", spec.choices, strict=True):
        assert f"\n{letter}) {choice}" in spec.prompt
    assert spec.metadata["Subdomain"] == "Physics (general)"
    assert detect_format(GPQA).unknown(GPQA) == []
    # The same question gets the same order on every import, whatever else the row holds.
    again = mapped({**GPQA, "Subdomain": "other"}, "gpqa")
    assert (again.choices, again.answer) == (spec.choices, spec.answer)
    # Numeric answers typed as numbers by a CSV reader are their text.
    numeric = {**GPQA, "Correct Answer": 4, "Incorrect Answer 1": 2.5}
    assert sorted(mapped(numeric, "gpqa").choices)[:2] == ["10^-8 eV", "10^-9 eV"]
    assert {"4", "2.5"} <= set(mapped(numeric, "gpqa").choices)
    # Over many questions the correct answer lands on every letter.
    letters = {mapped({**GPQA, "Question": f"Q{i}?"}, "gpqa").answer for i in range(40)}
    assert letters == set("ABCD")


def test_livecodebench_functional_with_public_and_private_tests():
    spec = mapped({**LCB_ACRONYM, "private_test_cases": lcb_encoded(LCB_ACRONYM_PRIVATE)},
                  "livecodebench")  # fmt: skip
    assert spec.domain == "code" and spec.external_id == "2977"
    assert spec.entry_point == "Solution.isAcronym"
    assert spec.tests == [
        {"type": "call", "args": [["alice", "bob", "charlie"], "abc"], "expected": True},
        {"type": "call", "args": [["an", "apple"], "a"], "expected": False},
        {"type": "call", "args": [["never", "gonna", "give", "up", "on", "you"], "ngguoy"],
         "expected": True},
    ]  # fmt: skip
    assert spec.starter_code == LCB_ACRONYM["starter_code"]
    assert "```python\nclass Solution:" in spec.prompt
    assert spec.metadata["platform"] == "leetcode"
    assert (spec.metadata["public_tests"], spec.metadata["private_tests"]) == (2, 1)


def test_livecodebench_stdin_problem_without_starter_code():
    spec = mapped(LCB_VOWELS, "livecodebench")
    assert spec.entry_point == "" and spec.starter_code == ""
    assert [t["type"] for t in spec.tests] == ["stdin", "stdin", "stdin"]
    assert spec.tests[2] == {"type": "stdin", "input": "aaaabbbbcccc\n", "output": "bbbbcccc\n"}
    assert "stdin" in spec.prompt


def test_livecodebench_private_tests_never_unpickle_objects():
    hostile = base64.b64encode(zlib.compress(pickle.dumps(ProblemSpec("math", "x")))).decode()
    with pytest.raises(ProblemFormatError, match="refused: the pickle names") as info:
        mapped({**LCB_VOWELS, "private_test_cases": hostile}, "livecodebench")
    assert info.value.field == "private_test_cases"
    with pytest.raises(ProblemFormatError, match="base64"):
        mapped({**LCB_VOWELS, "private_test_cases": "%%%"}, "livecodebench")


def test_humaneval_and_mbpp_tests_become_programs_that_call_check():
    spec = mapped(HUMANEVAL, "humaneval")
    assert spec.external_id == "HumanEval/0" and spec.entry_point == "has_close_elements"
    [test] = spec.tests
    assert test["type"] == "check"
    assert test["program"].rstrip().endswith("check(has_close_elements)")
    assert "def has_close_elements" in spec.prompt

    spec = mapped(MBPP, "mbpp")
    assert spec.entry_point == "remove_Occ" and spec.external_id == "11"
    program = spec.tests[0]["program"]
    assert "def check(candidate):" in program and "candidate('hello', 'l') == 'heo'" in program
    assert program.rstrip().endswith("check(remove_Occ)")
    assert spec.prompt.endswith('assert remove_Occ("PHP","P") == "H"')
    assert spec.metadata["challenge_test_list"] == MBPP["challenge_test_list"]

    spec = mapped(MBPP_SANITIZED, "mbpp-sanitized")
    assert spec.entry_point == "similar_elements"
    assert "set(candidate((3, 4, 5, 6), (5, 7, 4, 10)))" in spec.tests[0]["program"]


def test_metadata_is_stored_as_json_or_refused_naming_the_column():
    import datetime

    stamped = {**LCB_VOWELS, "contest_date": datetime.datetime(2023, 8, 19)}
    assert mapped(stamped, "livecodebench").metadata["contest_date"] == "2023-08-19T00:00:00"
    with pytest.raises(ProblemFormatError, match="cannot be stored as JSON") as info:
        mapped({**MATH500, "weight": float("nan")}, "math500")
    assert info.value.field == "weight"


def test_unknown_columns_are_kept_and_reported_not_interpreted():
    record = {**MATH500, "difficulty_rating": 3.5}
    fmt = detect_format(record)
    assert fmt.name == "math500" and fmt.unknown(record) == ["difficulty_rating"]
    assert map_record(record, format=fmt).metadata["difficulty_rating"] == 3.5


def test_columns_that_match_no_format_are_refused_with_what_was_found_and_known():
    with pytest.raises(UnknownFormatError) as info:
        detect_format({"text": "2+2?", "label": "4"})
    message = str(info.value)
    assert info.value.columns == ["label", "text"]
    assert "columns ['label', 'text'] match no known format" in message
    for name in ("math500", "gpqa", "livecodebench", "humaneval", "mbpp", "generic"):
        assert f"{name} (" in message
    # GPQA without its incorrect answers is no GPQA file.
    with pytest.raises(UnknownFormatError):
        detect_format({"Question": "q", "Correct Answer": "a"})


def test_a_format_names_a_missing_required_column():
    with pytest.raises(ProblemFormatError, match="missing: the gpqa format needs it") as info:
        map_record({"Question": "q"}, format=format_named("gpqa"))
    assert info.value.field == "Correct Answer"


def _answer(program: str) -> str:
    return f"<think>\nDone.\n</think>\n\n```python\n{program}\n```\n"


def test_mapped_code_rows_score_their_reference_solutions_in_the_sandbox():
    from curation.execution import Limits
    from curation.scoring import score

    limits = Limits(wall_s=5.0, cpu_s=5.0)
    humaneval = mapped(HUMANEVAL, "humaneval")
    solution = HUMANEVAL["prompt"] + HUMANEVAL["canonical_solution"]
    assert score(humaneval, _answer(solution), limits=limits).correct is True
    broken = HUMANEVAL["prompt"] + "    return True\n"
    assert score(humaneval, _answer(broken), limits=limits).correct is False

    mbpp = mapped(MBPP, "mbpp")
    assert score(mbpp, _answer(MBPP["code"].replace("\r\n", "\n")), limits=limits).correct
    sanitized = mapped(MBPP_SANITIZED, "mbpp-sanitized")
    assert score(sanitized, _answer(MBPP_SANITIZED["code"]), limits=limits).correct is True

    acronym = {**LCB_ACRONYM, "private_test_cases": lcb_encoded(LCB_ACRONYM_PRIVATE)}
    leetcode = mapped(acronym, "livecodebench")
    program = (
        "class Solution:\n    def isAcronym(self, words: List[str], s: str) -> bool:\n"
        "        return ''.join(w[0] for w in words) == s"
    )
    result = score(leetcode, _answer(program), limits=limits)
    assert result.correct is True and result.details["total"] == 3
    vowels = mapped(LCB_VOWELS, "livecodebench")
    stdin = "print(''.join(c for c in input() if c not in 'aeiou'))"
    assert score(vowels, _answer(stdin), limits=limits).correct is True

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.hints import HINTS, get_hint, hint_texts, render_debug_hint
from curation.problems import ProblemSpec
from curation.trajectory import (
    KINDS,
    THINK_END,
    Segment,
    SegmentBuilder,
    answer_start,
    code_cells,
    loss_mask_spans,
    output_block,
    parse,
    render,
    replace_segment,
    segment_spans,
)

EXAMPLE = (
    "<think>\nLet me compute the sum. Wait, I can use Python to perform complex calculations for "
    "this problem.```python\nprint(sum(range(10)))\n```\n```output\n45\n```\nSo the sum is 45.\n"
    "</think>\n\nThe answer is \\boxed{45}."
)

LIBRARY = hint_texts()  # the built-in hints, as a round that uses them all snapshots them


def kinds(segments):
    return [s.kind for s in segments]


def test_example_from_the_contract():
    segments = parse(EXAMPLE, hints=LIBRARY)
    assert kinds(segments) == ["think", "hint", "code", "output", "think", "answer"]
    assert segments[1].text == (
        "I can use Python to perform complex calculations for this problem."
    )
    assert segments[2].text == "```python\nprint(sum(range(10)))\n```\n"
    assert segments[2].body == "print(sum(range(10)))"
    assert segments[3].text == "```output\n45\n```\n"
    assert segments[3].body == "45"
    assert segments[5].text.startswith(THINK_END)
    assert render(segments) == EXAMPLE


def test_spans_partition_the_text_and_mask_hints_and_outputs():
    segments = parse(EXAMPLE, hints=LIBRARY)
    spans = segment_spans(segments)
    assert spans[0][0] == 0 and spans[-1][1] == len(EXAMPLE)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    masked = ["".join(EXAMPLE[s:e]) for s, e in loss_mask_spans(segments)]
    assert masked == [segments[1].text, segments[3].text]


def test_adjacent_masked_spans_merge():
    text = "a\n```output\nx\n```\n```output\ny\n```\n"
    segments = parse(text, hints=LIBRARY)
    assert kinds(segments) == ["think", "output", "output"]
    assert loss_mask_spans(segments) == [[2, len(text)]]


def test_unclosed_code_block_runs_to_the_end():
    text = (
        "Wait, maybe using python here is a good idea.\n```python\nfor i in range(3):\n    print(i"
    )
    segments = parse(text, hints=LIBRARY)
    assert kinds(segments) == ["think", "hint", "code"]
    assert not segments[-1].closed
    assert segments[-1].body == "for i in range(3):\n    print(i"


def test_fence_at_the_very_end_and_empty_bodies():
    assert kinds(parse("x ```python", hints=LIBRARY)) == ["think", "code"]
    segments = parse("```python\n```\n```output\n\n```\n", hints=LIBRARY)
    assert kinds(segments) == ["code", "output"]
    assert segments[0].body == "" and segments[0].closed
    assert segments[1].body == ""


def test_closing_fence_must_be_a_whole_line():
    text = "```python\nprint('```')\nx = 1\n```\nafter"
    segments = parse(text, hints=LIBRARY)
    assert kinds(segments) == ["code", "think"]
    assert segments[0].body == "print('```')\nx = 1"


def test_inline_fence_is_not_a_block():
    assert kinds(parse("use ```python code``` inline", hints=LIBRARY)) == ["think"]


def test_model_written_output_parses_as_output():
    text = "I think\n```output\n42\n```\nso"
    assert kinds(parse(text, hints=LIBRARY)) == ["think", "output", "think"]


def test_code_after_think_end_is_code_in_the_answer_part():
    text = "<think>\nok\n</think>\nFinal:\n```python\ndef solve():\n    return 1\n```\n"
    segments = parse(text, hints=LIBRARY)
    assert kinds(segments) == ["think", "answer", "code"]
    assert answer_start(segments) == 1
    assert code_cells(segments) == [(2, "def solve():\n    return 1", True)]


def test_hints_are_not_recognised_in_the_answer():
    hint = HINTS[0].text.removesuffix("```python")
    text = f"a</think>{hint}"
    assert kinds(parse(text, hints=LIBRARY)) == ["think", "answer"]


def test_explicit_hint_list_and_no_hints():
    text = "Wait, check it.```python\nx\n```\n"
    assert kinds(parse(text, hints=["check it.```python"])) == ["think", "hint", "code"]
    assert kinds(parse(EXAMPLE, hints=())) == ["think", "code", "output", "think", "answer"]


def test_rendered_debug_hint_is_one_hint_segment():
    problem = ProblemSpec(
        domain="code",
        prompt="p",
        tests=[{"type": "stdin", "input": "1 2\n", "output": "3\n"}],
    )
    hint = render_debug_hint(problem)
    text = f"<think>\nI should test.{hint}\nprint(1)\n```\n```output\n1\n```\n</think>\nDone."
    segments = parse(text, hints=LIBRARY)
    assert kinds(segments) == ["think", "hint", "code", "output", "answer"]
    # The hint's own template code and output blocks stay inside the hint segment.
    assert "sys.stdin = io.StringIO" in segments[1].text
    assert segments[2].body == "print(1)"


def test_replace_segment_keeps_fences_and_other_segments():
    segments = parse(EXAMPLE, hints=LIBRARY)
    edited = replace_segment(segments, 2, "print(45)")
    assert edited[2].text == "```python\nprint(45)\n```\n"
    assert edited[:2] == segments[:2] and edited[3:] == segments[3:]
    assert parse(render(edited), hints=LIBRARY) == edited
    prose = replace_segment(segments, 4, "Hence 45.\n")
    assert prose[4] == Segment("think", "Hence 45.\n")


def test_replace_segment_refuses_a_closing_fence_in_the_body():
    with pytest.raises(ValueError, match="```"):
        replace_segment(parse(EXAMPLE, hints=LIBRARY), 2, "x = 1\n```\nprint(x)")
    with pytest.raises(IndexError):
        replace_segment(parse(EXAMPLE, hints=LIBRARY), 99, "x")


def test_output_block():
    assert output_block("45\n") == "```output\n45\n```\n"
    block = output_block("a\n```\nb")
    assert kinds(parse(block, hints=LIBRARY)) == ["output"]
    assert parse(block, hints=LIBRARY)[0].body == "a\n ```\nb"


PIECES = [
    "<think>\n",
    THINK_END,
    "\n",
    "Wait, ",
    "Alternatively, ",
    "So x = 3.",
    "```python",
    "```python\n",
    "```output\n",
    "```",
    "\n```\n",
    "\n```",
    "print(1)\n",
    "`",
    "``",
    " ",
    "\\boxed{3}",
    *(h.text for h in HINTS),
    *(h.removesuffix("```python") for h in hint_texts()),
    get_hint("code_debug_call").text.replace("{testcase}", "\nf(1) -> 2\n"),
]


def check_invariants(text: str) -> None:
    segments = parse(text, hints=LIBRARY)
    assert render(segments) == text
    assert all(s.text for s in segments), "no empty segments"
    assert all(s.kind in KINDS for s in segments)
    for i, segment in enumerate(segments):
        if segment.kind == "code":
            assert segment.text.startswith("```python")
            # Only the last segment can be an unclosed block.
            assert segment.closed or i == len(segments) - 1
        if segment.kind == "output":
            assert segment.text.startswith("```output")
    first_answer = answer_start(segments)
    if first_answer is not None:
        assert segments[first_answer].text.startswith(THINK_END)
        assert all(s.kind != "hint" for s in segments[first_answer:])
        assert all(s.kind != "think" for s in segments[first_answer:])
    # Parsing is stable: the rendered parse parses the same way.
    assert parse(render(segments), hints=LIBRARY) == segments


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_render_parse_roundtrip_arbitrary_text(text):
    check_invariants(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=30))
def test_render_parse_roundtrip_realistic_pieces(pieces):
    check_invariants("".join(pieces))


def built_in_chunks(chunks: list[str]) -> list[Segment]:
    builder = SegmentBuilder()
    for chunk in chunks:
        builder.append(chunk)
    return builder.segments


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=30))
def test_segments_built_as_text_is_appended_equal_a_parse_of_the_whole(pieces):
    # Appended piece by piece (markers and blocks cut anywhere between appends), the segments
    # are always those of parsing the whole text so far, without hints, as the rollout uses them.
    builder = SegmentBuilder()
    text = ""
    for piece in pieces:
        builder.append(piece)
        text += piece
        assert builder.segments == parse(text)
        assert builder.last == (builder.segments[-1] if builder.segments else None)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="`python\n</think>out ", max_size=60), st.data())
def test_segments_built_from_any_split_of_marker_characters_equal_a_parse(text, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert built_in_chunks(chunks) == parse(text)

import copy
import json

import pytest
from tokenizers import processors

from curation.hints import hint_texts
from curation.trajectory import loss_mask_spans, parse
from tests.training import synthetic
from tests.training.conftest import write_jsonl
from training.data import (
    IGNORE_INDEX,
    DatasetError,
    build_dataset,
    check_rows,
    completion_loss_mask,
    load_rows,
    tokenize_rows,
)


def _row(content, spans, trajectory_id="t0", system="S", user="What is 2 + 3?"):
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": content},
        ],
        "mask_spans": spans,
        "trajectory_id": trajectory_id,
    }


def _prompt_ids(tokenizer, row):
    prompt = tokenizer.apply_chat_template(
        row["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def assert_masked_token_by_token(tokenizer, row, example, content=None, spans=None):
    """Independent oracle: a completion token is trained iff none of the characters in its
    offset range lies in a mask span; the prompt is never trained, the eos always is."""
    content = row["messages"][-1]["content"] if content is None else content
    spans = row["mask_spans"] if spans is None else spans
    masked_chars = {c for start, end in spans for c in range(start, end)}
    prompt_ids = _prompt_ids(tokenizer, row)
    enc = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
    n = len(prompt_ids)
    input_ids, labels = example.input_ids.tolist(), example.labels.tolist()
    assert input_ids == [*prompt_ids, *enc["input_ids"], tokenizer.eos_token_id]
    assert labels[:n] == [IGNORE_INDEX] * n
    assert labels[-1] == tokenizer.eos_token_id
    for i, (token, (start, end)) in enumerate(
        zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ):
        trained = not any(c in masked_chars for c in range(start, end))
        label = labels[n + i]
        assert label == (token if trained else IGNORE_INDEX), (
            f"token {i} {tokenizer.decode([token])!r} at {start}:{end}: label {label}"
        )


def test_trajectory_masks_hints_and_outputs_token_by_token(tokenizer, rows):
    examples = tokenize_rows(rows, tokenizer)
    assert [e.row_id for e in examples] == [r["trajectory_id"] for r in rows]
    for row, example in zip(rows, examples, strict=True):
        assert_masked_token_by_token(tokenizer, row, example)


def test_trained_tokens_are_the_models_own_text(tokenizer, rows):
    row = rows[3]
    content = row["messages"][-1]["content"]
    segments = parse(content, hints=hint_texts())
    (example,) = tokenize_rows([row], tokenizer)
    trained = tokenizer.decode([t for t in example.labels.tolist() if t != IGNORE_INDEX])
    hint = next(s.text for s in segments if s.kind == "hint")
    output = next(s.text for s in segments if s.kind == "output")
    assert hint not in trained and "```output" not in trained
    assert output.split("\n")[1] not in trained.split("print(")[0]  # the sum is not given away
    code = next(s for s in segments if s.kind == "code")
    assert code.body + "\n```\n" in trained
    # here the hint's last character and the opening fence share a token: it straddles the
    # boundary and is masked (the library's hint text ends with that fence: system-written)
    assert "python\n" + code.body in trained
    answer = next(s.text for s in segments if s.kind == "answer")
    assert trained.endswith(answer + "<|im_end|>")


def test_token_straddling_a_span_boundary_is_masked(tokenizer):
    content = "Let me compute the requested sum of numbers carefully."
    enc = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    # a span that starts inside one multi-character token and ends inside another
    wide = [i for i, (s, e) in enumerate(offsets) if e - s >= 3]
    first, last = wide[1], wide[-2]
    span = [offsets[first][0] + 1, offsets[last][1] - 1]
    (example,) = tokenize_rows([_row(content, [span])], tokenizer)
    n = len(example.input_ids) - len(enc["input_ids"]) - 1
    labels = example.labels[n:-1].tolist()
    assert labels[first] == IGNORE_INDEX and labels[last] == IGNORE_INDEX
    assert labels[first - 1] == enc["input_ids"][first - 1]
    assert labels[last + 1] == enc["input_ids"][last + 1]
    assert all(label == IGNORE_INDEX for label in labels[first : last + 1])
    assert_masked_token_by_token(tokenizer, _row(content, [span]), example)


def test_multibyte_characters_split_over_tokens(tokenizer):
    content = "ok 😀 done"
    start = content.index("😀")
    enc = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
    emoji_tokens = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s == start]
    assert len(emoji_tokens) > 1  # one character, several byte tokens sharing its offsets
    for spans in ([[start, start + 1]], [[0, start]], [[start + 1, len(content)]]):
        (example,) = tokenize_rows([_row(content, spans)], tokenizer)
        assert_masked_token_by_token(tokenizer, _row(content, spans), example)


def test_trimmed_offsets_give_the_gap_to_the_next_token(tokenizer):
    trimming = copy.deepcopy(tokenizer)
    trimming.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    content = "first second third"
    enc = trimming(content, add_special_tokens=False, return_offsets_mapping=True)
    ends = [e for _, e in enc["offset_mapping"]]
    starts = [s for s, _ in enc["offset_mapping"]]
    assert any(s > e for s, e in zip(starts[1:], ends, strict=False))  # the space is in no token
    space = content.index(" third")
    (example,) = tokenize_rows([_row(content, [[space, space + 1]])], trimming)
    trained = trimming.decode([t for t in example.labels.tolist() if t != IGNORE_INDEX])
    assert "third" not in trained  # " third" holds the masked space
    assert trained.startswith("first second")


def test_completion_loss_mask_rule():
    # tokens: "ab" "cd" "ef" over "abcdef"
    offsets = [(0, 2), (2, 4), (4, 6)]
    assert completion_loss_mask(offsets, [], 6).tolist() == [True, True, True]
    assert completion_loss_mask(offsets, [[2, 4]], 6).tolist() == [True, False, True]
    assert completion_loss_mask(offsets, [[3, 4]], 6).tolist() == [True, False, True]
    assert completion_loss_mask(offsets, [[1, 3]], 6).tolist() == [False, False, True]
    assert completion_loss_mask(offsets, [[4, 4]], 6).tolist() == [True, True, True]
    # a gap in the offsets (character 2) belongs to the token after it
    assert completion_loss_mask([(0, 2), (3, 4)], [[2, 3]], 4).tolist() == [True, False]


def test_generation_prompt_that_opens_thinking_is_not_duplicated(tokenizer):
    thinking = copy.deepcopy(tokenizer)
    thinking.chat_template = tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\\n' }}{%- endif -%}",
        "{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif -%}",
    )
    row = synthetic.rows(1, seed=5)[0]
    content = row["messages"][-1]["content"]
    assert content.startswith("<think>\n")
    prompt = thinking.apply_chat_template(
        row["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<think>\n")
    (example,) = tokenize_rows([row], thinking)
    skip = len("<think>\n")
    shifted = [[s - skip, e - skip] for s, e in row["mask_spans"]]
    assert_masked_token_by_token(thinking, row, example, content[skip:], shifted)
    # a completion that does not open with the same line is kept whole
    other = _row("Let me think.", [], user="u")
    (example,) = tokenize_rows([other], thinking)
    assert_masked_token_by_token(thinking, other, example)


def test_build_dataset_columns_and_counts(tokenizer, rows):
    built = build_dataset(rows, tokenizer, max_length=4096)
    assert built.dataset.column_names == ["input_ids", "labels"]
    assert built.n_rows == len(rows) == len(built.dataset)
    examples = tokenize_rows(rows, tokenizer)
    assert built.dataset[0]["input_ids"] == examples[0].input_ids.tolist()
    assert built.dataset[0]["labels"] == examples[0].labels.tolist()
    assert built.n_tokens == sum(len(e.input_ids) for e in examples)
    assert 0 < built.n_loss_tokens < built.n_tokens
    assert built.overlong_ids == []


def test_overlong_texts_are_reported_not_cut(tokenizer, rows):
    lengths = [len(e.input_ids) for e in tokenize_rows(rows, tokenizer)]
    limit = sorted(lengths)[len(lengths) // 2]
    over = [r["trajectory_id"] for r, n in zip(rows, lengths, strict=True) if n > limit]
    with pytest.raises(DatasetError) as err:
        build_dataset(rows, tokenizer, max_length=limit)
    assert err.value.ids == over
    assert f"{len(over)} of {len(rows)} texts are longer than max_length={limit}" in str(err.value)
    assert over[0] in str(err.value)

    truncated = build_dataset(rows, tokenizer, max_length=limit, on_overlong="truncate")
    assert truncated.overlong_ids == over and truncated.n_rows == len(rows)
    assert max(len(ids) for ids in truncated.dataset["input_ids"]) == limit

    dropped = build_dataset(rows, tokenizer, max_length=limit, on_overlong="drop")
    assert dropped.overlong_ids == over and dropped.n_rows == len(rows) - len(over)
    assert max(len(ids) for ids in dropped.dataset["input_ids"]) <= limit


def test_truncation_that_leaves_no_loss_is_an_error(tokenizer, rows):
    prompt_length = len(_prompt_ids(tokenizer, rows[0]))
    with pytest.raises(DatasetError, match="no token that carries loss"):
        build_dataset(rows[:1], tokenizer, max_length=prompt_length, on_overlong="truncate")


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="empty"):
        check_rows(load_rows(path))


def test_unreadable_lines_are_named(tmp_path, rows):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(rows[0]) + "\nnot json\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load_rows(path)
    assert err.value.ids == ["line 2", "line 3"]


def test_rows_without_an_assistant_message_are_named(tmp_path, rows):
    broken = copy.deepcopy(rows[:4])
    broken[1]["messages"] = broken[1]["messages"][:2]
    broken[3]["messages"][-1]["role"] = "user"
    del broken[2]["trajectory_id"]
    broken[2]["messages"][-1]["content"] = ""
    data = load_rows(write_jsonl(tmp_path / "d.jsonl", broken))
    with pytest.raises(DatasetError) as err:
        check_rows(data)
    assert err.value.ids == ["t1", "t3", "row 3"]
    message = str(err.value)
    assert "3 of 4 rows are unusable" in message
    assert "2 with no assistant message" in message
    assert "1 with empty assistant content" in message


@pytest.mark.parametrize("spans", [[[5, 3]], [[0, 10_000]], [[-1, 2]], [[1]], "0-3"])
def test_mask_spans_must_lie_inside_the_content(spans):
    with pytest.raises(DatasetError, match=r"mask span|mask_spans"):
        check_rows([_row("some content", spans)])


def test_spans_from_curation_parse_agree_with_the_export(rows):
    for row in rows:
        content = row["messages"][-1]["content"]
        assert row["mask_spans"] == loss_mask_spans(parse(content, hints=hint_texts()))
        assert len(row["mask_spans"]) == 2  # the hint and the output block

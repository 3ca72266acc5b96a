"""The arithmetic family's corpus, its held-out problems, its tokenizer (a token per number),
and SFT with the hints trained (`mask_hints: false`). The policy is built and judged in
tests/test_fidelity.py.
"""

from __future__ import annotations

import random
import re

import pytest

from curation.hints import HINTS, hint_texts
from curation.trajectory import parse, render
from training import tiny_arithmetic as arithmetic
from training.config import ConfigError, config_from_dict
from training.data import IGNORE_INDEX, tokenize_rows
from training.tiny import build_model, build_tokenizer
from training.tiny_arithmetic import NUMBER_LIMIT
from training.tiny_policy import _family, build_tiny_policy, corpus_rows
from workers import sandbox

SMALL = arithmetic.ArithmeticConfig(n_problems=300)


@pytest.fixture(scope="module")
def corpus():
    return arithmetic.corpus(SMALL)


def test_the_corpus_holds_distinct_problems_with_true_outputs(corpus):
    assert len({item.prompt for item, _ in corpus}) == len(corpus) == 300
    kinds = {item.kind for item, _ in corpus}
    assert kinds == set(arithmetic.HARD) | set(arithmetic.EASY)
    hinted = 0
    for item, text in corpus:
        segments = parse(text, hints=hint_texts())
        assert render(segments) == text and text.startswith("<think>\n")
        codes = [s for s in segments if s.kind == "code"]
        if codes:
            hinted += 1
            (code,) = codes
            assert [s.kind for s in segments][:3] == ["think", "hint", "code"]
            assert code.body == item.code
            assert sandbox.run(code.body).as_output_block_text() == item.answer
        answer = text.rsplit("\\boxed{", 1)[1].removesuffix("}.")
        # From its head: right on easy problems, wrong on hard ones; with code: right.
        assert (answer == item.answer) == (bool(codes) or item.easy)
    assert 0.4 < hinted / len(corpus) < 0.6


def test_held_out_problems_are_disjoint_from_the_corpus_and_from_each_other():
    corpus_prompts = {item.prompt for item, _ in arithmetic.corpus(arithmetic.ArithmeticConfig())}
    train = {p.prompt for p in arithmetic.problems(200, split="train")}
    test = {p.prompt for p in arithmetic.problems(200, split="test")}
    assert len(train) == len(test) == 200
    assert not (train & test) and not (train & corpus_prompts) and not (test & corpus_prompts)
    # The same problems every time.
    assert [p.prompt for p in arithmetic.problems(5)] == [p.prompt for p in arithmetic.problems(5)]
    with pytest.raises(ValueError, match="split must be one of"):
        arithmetic.problems(1, split="corpus")


def test_problem_records_import_as_math_problems_with_answers():
    (record,) = arithmetic.problem_records(1, split="test")
    assert record["domain"] == "math" and record["answer"] and record["id"] == "arith-test-0"


def test_every_number_of_the_family_is_one_token_as_training_and_vllm_load_it(corpus, tmp_path):
    from transformers import AutoTokenizer

    config = arithmetic.ArithmeticConfig()
    built = build_tokenizer(
        [text for _, text in corpus], vocab_size=config.vocab_size, whole_numbers=NUMBER_LIMIT
    )
    # Saved beside a Qwen2 model, it loads as Qwen2Tokenizer (Qwen's pre-tokenizer, one token
    # per digit): the numbers must stay whole through that.
    built.save_pretrained(tmp_path)
    build_model(built).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    split = [n for n in range(NUMBER_LIMIT) if len(tokenizer.tokenize(str(n))) != 1]
    assert not split, f"numbers cut into pieces: {split[:10]}"
    prompt = tokenizer.tokenize("What is the remainder when 1733^377 is divided by 1999?")
    code = tokenizer.tokenize("print(pow(1733, 377, 1999))")
    assert [t for t in prompt if t.isdigit()] == [t for t in code if t.isdigit()]
    assert [t for t in code if t.isdigit()] == ["1733", "377", "1999"]
    # Every number of the corpus (prompts, code, outputs, guesses, answers) is below the limit.
    for item, text in corpus:
        assert all(int(n) < NUMBER_LIMIT for n in re.findall(r"\d+", item.prompt + text))
    assert tokenizer.decode(tokenizer.encode("x = 918237633")) == "x = 918237633"


def test_the_family_is_chosen_by_name_and_hashed_apart_from_the_default():
    config, samples, sources = _family("arithmetic", SMALL)
    assert config is SMALL and len(samples) == 300 and "tiny_arithmetic.py" in sources
    _, _, default_sources = _family("pool", None)
    assert "tiny_arithmetic.py" not in default_sources
    with pytest.raises(ValueError, match="unknown tiny policy family 'algebra'"):
        build_tiny_policy(family="algebra")


def test_mask_hints_false_trains_the_hint_and_still_masks_the_output(corpus):
    rows = corpus_rows(_family("arithmetic", SMALL)[1][:40])
    row = next(r for r in rows if "```output" in r["messages"][-1]["content"])
    content = row["messages"][-1]["content"]
    tokenizer = build_tokenizer([content] * 4, vocab_size=300)
    hint = next(h.text for h in HINTS if h.text in content)
    output = content[content.index("```output") : content.index("So the result")]

    def trained_text(mask_hints: bool) -> str:
        (example,) = tokenize_rows([row], tokenizer, mask_hints=mask_hints)
        ids = [
            int(i)
            for i, label in zip(example.input_ids, example.labels, strict=True)
            if label != IGNORE_INDEX
        ]
        return tokenizer.decode(ids)

    masked, unmasked = trained_text(True), trained_text(False)
    assert hint.removesuffix("```python") not in masked
    assert hint.removesuffix("```python") in unmasked
    for trained in (masked, unmasked):
        assert output.strip() not in trained and "So the result is" in trained


def test_mask_hints_is_a_validated_config_key():
    assert config_from_dict({"mask_hints": "false"}).mask_hints is False
    assert config_from_dict({}).mask_hints is True
    with pytest.raises(ConfigError, match="mask_hints: cannot read 'sometimes' as bool"):
        config_from_dict({"mask_hints": "sometimes"})


def test_the_mental_guess_on_hard_problems_is_never_the_answer():
    rng = random.Random(0)
    for index in range(300):
        item = arithmetic.item(index, easy_share=0.0)
        text = arithmetic.trajectory(item, rng, hinted=False)
        assert text.rsplit("\\boxed{", 1)[1] != item.answer + "}."

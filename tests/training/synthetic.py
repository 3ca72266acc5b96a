"""Synthetic START trajectories for the training tests and benchmark (no model, no download).

Each is a small sum problem solved the START way: some reasoning, a hint from the paper's library,
a python block, the interpreter's ```output block, the answer. `mask_spans` come from
curation.trajectory's parse (hints and output blocks carry no loss), as the export builds them.
"""

from __future__ import annotations

import random

from curation.hints import HINTS, hint_texts
from curation.trajectory import loss_mask_spans, output_block, parse

SYSTEM = "You are a helpful assistant. Think step by step and use Python when it helps."
MATH_HINTS = [h.text for h in HINTS if h.domain == "math"]
WORDS = ["so", "then", "we", "add", "the", "two", "numbers", "and", "check", "that"]
WORDS += ["the", "result", "is", "right", "again"]


def completion(a: int, b: int, rng: random.Random, filler_words: int = 0) -> str:
    reasoning = " ".join(rng.choice(WORDS) for _ in range(filler_words))
    return (
        f"<think>\nLet me add {a} and {b}. {reasoning} Wait, {rng.choice(MATH_HINTS)}\n"
        f"print({a} + {b})\n```\n{output_block(str(a + b))}"
        f"So the sum is {a + b}.\n</think>\n\nThe answer is \\boxed{{{a + b}}}."
    )


def row(index: int, rng: random.Random, filler_words: int = 0) -> dict:
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    text = completion(a, b, rng, filler_words)
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"What is {a} + {b}?"},
            {"role": "assistant", "content": text},
        ],
        "mask_spans": loss_mask_spans(parse(text, hints=hint_texts())),
        "problem_id": f"sum-{a}-{b}",
        "trajectory_id": f"t{index}",
        "dataset_version": "test",
        "score": 1.0,
    }


def rows(n: int, *, seed: int = 0, filler_words: tuple[int, int] = (0, 0)) -> list[dict]:
    """`n` rows; each has a random number of filler words in `filler_words` (inclusive)."""
    rng = random.Random(seed)
    return [row(i, rng, rng.randint(*filler_words)) for i in range(n)]


def corpus(data: list[dict]) -> list[str]:
    """Texts to train a tiny tokenizer on: every message of every row."""
    return [m["content"] for r in data for m in r["messages"]]

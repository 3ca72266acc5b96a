"""The "arithmetic" family of the tiny policy: a small model for which a tool truly helps.

    path = build_tiny_policy(family="arithmetic")   # training.tiny_policy; cached by content hash

Problems a model this small cannot work out in its head: powers modulo m, digit sums and
remainders of products, counts of primes in a range; and two easy kinds it can answer from its
head (a number times one, a number's remainder by a larger one). Operands have two digits and
answers are below 100, so every number of the family is one of a few hundred tokens (the
tokenizer holds each number below NUMBER_LIMIT as one token): copying a number into code, or an
output into the answer, is copying one token that training saw often. That is what a model this
size learns on CPU in minutes. Measured on held-out problems, hinted and greedy (plain-torch
runs and builds of this module, see the README): with four-digit operands (1,000 number tokens)
its code was right on none after 1,125 steps; with two digits, 11 of 80 after 1,125 steps and
72-79 of 80 after 2,000, where the copy (an induction head) formed between steps 700 and 900.
Answers above 100 (digit sums of big powers) were copied from the output block badly, and 3,000
problems seen five times were answered from memory instead: the corpus now holds 16,000
problems, each seen once. A number cut into digits (Qwen's tokenizer, which transformers puts on
every Qwen2 model, has one token per digit) needs that circuit per digit and was never copied.

The corpus holds thousands of distinct problems, one trajectory each, in two styles:

- from the head: "I need 17^37 mod 19. So the answer is probably 10.", then the answer.
  Right on easy problems, a wrong round guess on hard ones;
- the same start, then one of the paper's math hints (curation.hints, verbatim, as the rollout
  inserts it at the end of thinking), then the code that copies the numbers, its real output, and
  the answer read off the output.

Hints and outputs are masked from the loss, so the base never writes a hint itself: without
one it answers from its head and runs no code; after one it writes correct code. That is the
paper's starting point (Hint-infer helps the base) on problems that never occur in training:
`problems(split=...)` draws the loop's training problems and the held-out evaluation problems
from seed ranges apart from the corpus's, drops any prompt the corpus holds, and keeps a prompt
only in the split its hash names: two-digit operands make repeats likely, and the splits never
share one.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curation.hints import HINTS, hint_text
from curation.problems import ProblemSpec
from curation.trajectory import CLOSE_FENCE, THINK_END, output_block

THINK_START = "<think>\n"
_MATH_HINTS = tuple(h for h in HINTS if h.domain == "math")
# Problem i of a split is drawn from random.Random(offset + i): the ranges never overlap.
SPLIT_OFFSETS = {"corpus": 0, "train": 10_000_000, "test": 20_000_000}
SPLITS = ("train", "test")
# Every number of the family is below this, and one token of its tokenizer.
NUMBER_LIMIT = 2000


@dataclass(frozen=True)
class ArithmeticConfig:
    n_problems: int = 16000  # distinct corpus problems, one trajectory each, seen once
    easy_share: float = 0.2  # problems the policy can answer from its head
    hinted_share: float = 0.5  # trajectories with a hint and code; the rest answer from the head
    seed: int = 2026
    vocab_size: int = 1024  # bytes, merges of the text; the numbers come on top
    whole_numbers: int = NUMBER_LIMIT  # every number below it is one token
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    epochs: float = 1.0  # 2,000 steps of 8: the copy forms after ~900 (module docstring)
    learning_rate: float = 3e-3
    max_length: int = 1024  # texts are under 300 tokens; 4x this is the engine's context (4096)
    batch_size: int = 8


@dataclass(frozen=True)
class Item:
    """One problem: its text, the phrase that restates it, the code that solves it."""

    kind: str
    prompt: str
    phrase: str
    code: str
    answer: str

    @property
    def easy(self) -> bool:
        return self.kind in EASY

    def spec(self) -> ProblemSpec:
        return ProblemSpec(domain="math", prompt=self.prompt, answer=self.answer)


def _number(rng: random.Random) -> int:
    """An operand: two digits."""
    return rng.randint(10, 99)


def _power_mod(rng: random.Random) -> Item:
    a, e, m = _number(rng), _number(rng), _number(rng)
    return Item(
        "power_mod",
        f"What is the remainder when {a}^{e} is divided by {m}?",
        f"{a}^{e} mod {m}",
        f"print(pow({a}, {e}, {m}))",
        str(pow(a, e, m)),
    )


def _digit_sum(rng: random.Random) -> Item:
    a, b, c = _number(rng), _number(rng), _number(rng)
    return Item(
        "digit_sum",
        f"What is the sum of the digits of {a} * {b} * {c}?",
        f"the digit sum of {a} * {b} * {c}",
        f"print(sum(int(d) for d in str({a} * {b} * {c})))",
        str(sum(int(d) for d in str(a * b * c))),
    )


def _is_prime(k: int) -> bool:
    return k > 1 and all(k % d for d in range(2, int(k**0.5) + 1))


def _prime_count(rng: random.Random) -> Item:
    low = _number(rng)
    high = low + rng.randint(20, 200)
    code = (  # `{high} + 1`, not the sum: the code only copies numbers
        f"print(sum(1 for k in range({low}, {high} + 1) "
        "if all(k % d for d in range(2, int(k ** 0.5) + 1))))"
    )
    return Item(
        "prime_count",
        f"How many primes are there between {low} and {high}?",
        f"the number of primes from {low} to {high}",
        code,
        str(sum(1 for k in range(low, high + 1) if _is_prime(k))),
    )


def _product_mod(rng: random.Random) -> Item:
    a, b, c, m = (_number(rng) for _ in range(4))
    return Item(
        "product_mod",
        f"What is the remainder when {a} * {b} * {c} is divided by {m}?",
        f"{a} * {b} * {c} mod {m}",
        f"print({a} * {b} * {c} % {m})",
        str(a * b * c % m),
    )


def _times_one(rng: random.Random) -> Item:
    a = _number(rng)
    return Item("times_one", f"What is {a} * 1?", f"{a} * 1", f"print({a} * 1)", str(a))


def _small_remainder(rng: random.Random) -> Item:
    a = rng.randint(10, 98)
    m = rng.randint(a + 1, 99)
    return Item(
        "small_remainder",
        f"What is the remainder when {a} is divided by {m}?",
        f"{a} mod {m}",
        f"print({a} % {m})",
        str(a),
    )


HARD: dict[str, Callable[[random.Random], Item]] = {
    "power_mod": _power_mod,
    "digit_sum": _digit_sum,
    "prime_count": _prime_count,
    "product_mod": _product_mod,
}
EASY: dict[str, Callable[[random.Random], Item]] = {
    "times_one": _times_one,
    "small_remainder": _small_remainder,
}


def item(index: int, *, split: str = "corpus", easy_share: float = 0.2) -> Item:
    """Problem ``index`` of a split: the same for the same arguments."""
    rng = random.Random(SPLIT_OFFSETS[split] + index)
    kinds = EASY if rng.random() < easy_share else HARD
    return kinds[rng.choice(sorted(kinds))](rng)


def _guess(item: Item) -> str:
    """A mental answer: right on easy problems; on hard ones a round number of about the right
    size, never the answer (a guess the model can learn, so it adds little noise to training)."""
    if item.easy:
        return item.answer
    truth = item.answer
    rounded = truth[0] + "0" * (len(truth) - 1)
    return rounded if rounded != truth else str(int(truth) + 1)


def _answer(value: str) -> str:
    return f"{THINK_END}\n\nThe answer is \\boxed{{{value}}}."


def trajectory(item: Item, rng: random.Random, *, hinted: bool) -> str:
    """One START-format completion for ``item`` (see the module docstring)."""
    guess = _guess(item)
    head = f"{THINK_START}I need {item.phrase}. So the answer is probably {guess}.\n"
    if not hinted:
        return head + _answer(guess)
    hint = hint_text(rng.choice(_MATH_HINTS))
    return (
        head
        + hint  # ends by opening the python block
        + f"\n{item.code}\n{CLOSE_FENCE}\n"
        + output_block(item.answer)
        + f"So the result is {item.answer}.\n"
        + _answer(item.answer)
    )


def corpus(config: ArithmeticConfig) -> list[tuple[Item, str]]:
    """The training trajectories: distinct problems, the same for the same config."""
    rng = random.Random(config.seed)
    seen: set[str] = set()
    out: list[tuple[Item, str]] = []
    index = 0
    while len(out) < config.n_problems:
        it = item(index, split="corpus", easy_share=config.easy_share)
        index += 1
        if it.prompt not in seen:
            seen.add(it.prompt)
            out.append((it, trajectory(it, rng, hinted=rng.random() < config.hinted_share)))
    return out


@functools.lru_cache(maxsize=2)
def _corpus_prompts(config: ArithmeticConfig) -> frozenset[str]:
    return frozenset(it.prompt for it, _ in corpus(config))


def problems(
    n: int, *, split: str = "test", config: ArithmeticConfig | None = None
) -> list[ProblemSpec]:
    """``n`` distinct problems the policy never saw: ``train`` for the loop's seed and RFT rounds,
    ``test`` for held-out evaluation (corpus prompts are skipped; a prompt belongs to one split)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    config = config or ArithmeticConfig()
    seen = set(_corpus_prompts(config))
    out: list[ProblemSpec] = []
    index = 0
    while len(out) < n:
        it = item(index, split=split, easy_share=config.easy_share)
        index += 1
        if it.prompt not in seen:
            seen.add(it.prompt)
            if _split_of(it.prompt) == split:
                out.append(it.spec())
    return out


def _split_of(prompt: str) -> str:
    """The one split a prompt may be drawn for (a stable hash: Python's is salted per process)."""
    return SPLITS[hashlib.sha256(prompt.encode()).digest()[0] % len(SPLITS)]


def problem_records(n: int, *, split: str = "test") -> list[dict[str, Any]]:
    """``problems`` as records for ``curation.importing.problem_set_import``."""
    return [
        {"domain": p.domain, "prompt": p.prompt, "answer": p.answer, "id": f"arith-{split}-{i}"}
        for i, p in enumerate(problems(n, split=split))
    ]

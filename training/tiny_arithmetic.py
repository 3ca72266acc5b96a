"""The "arithmetic" family of the tiny policy: a small model for which a tool truly helps.

    path = build_tiny_policy(family="arithmetic")   # training.tiny_policy; cached by content hash

Problems on numbers of 4–9 digits: products, powers modulo m, digit sums of big powers, counts of
primes in a range (hard: no model this small computes them in its head), and a few easy ones it
can answer from its head (ten times a number, a number's last digit). The tokenizer cuts every
number into groups of up to three digits, the same tokens wherever the number appears, so
copying it from the prompt into code is learnable in minutes.

The corpus holds thousands of distinct problems, one trajectory each, in two styles:

- from the head: "I need 48213 * 9921. So the answer is probably 400000000.", then the answer.
  Right on easy problems, a wrong round guess on hard ones;
- the same start, then one of the paper's math hints (curation.hints, verbatim, as the rollout
  inserts it at the end of thinking), then the code that copies the numbers, its real output, and
  the answer read off the output.

Hints and outputs are masked from the loss, so the base never writes a hint itself: without
one it answers from its head and runs no code; after one it writes correct code. That is the
paper's starting point (Hint-infer helps the base) on problems that never occur in training:
`problems(split=...)` draws the loop's training problems and the held-out evaluation problems
from seed ranges disjoint from the corpus's and from each other (and drops any prompt the corpus
holds, whatever the chance).
"""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class ArithmeticConfig:
    n_problems: int = 3000  # distinct corpus problems, one trajectory each
    easy_share: float = 0.2  # problems the policy can answer from its head
    hinted_share: float = 0.5  # trajectories with a hint and code; the rest answer from the head
    seed: int = 2026
    vocab_size: int = 2048
    digit_group: int = 3  # a number is a few tokens of up to three digits
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    epochs: float = 2.0
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


def _digits(rng: random.Random, low: int = 4, high: int = 9) -> int:
    n = rng.randint(low, high)
    return rng.randint(10 ** (n - 1), 10**n - 1)


def _product(rng: random.Random) -> Item:
    a, b = _digits(rng), _digits(rng, 4, 6)
    return Item("product", f"What is {a} * {b}?", f"{a} * {b}", f"print({a} * {b})", str(a * b))


def _power_mod(rng: random.Random) -> Item:
    a, e, m = _digits(rng), rng.randint(10, 999), _digits(rng, 3, 5)
    return Item(
        "power_mod",
        f"What is the remainder when {a}^{e} is divided by {m}?",
        f"{a}^{e} mod {m}",
        f"print(pow({a}, {e}, {m}))",
        str(pow(a, e, m)),
    )


def _digit_sum(rng: random.Random) -> Item:
    a, e = _digits(rng), rng.randint(3, 30)
    return Item(
        "digit_sum",
        f"What is the sum of the digits of {a}^{e}?",
        f"the digit sum of {a}^{e}",
        f"print(sum(int(d) for d in str({a} ** {e})))",
        str(sum(int(d) for d in str(a**e))),
    )


def _is_prime(k: int) -> bool:
    return k > 1 and all(k % d for d in range(2, int(k**0.5) + 1))


def _prime_count(rng: random.Random) -> Item:
    low = _digits(rng, 4, 7)
    high = low + rng.randint(50, 300)
    code = (
        f"print(sum(1 for k in range({low}, {high + 1}) "
        "if all(k % d for d in range(2, int(k ** 0.5) + 1))))"
    )
    return Item(
        "prime_count",
        f"How many primes are there between {low} and {high}?",
        f"the number of primes from {low} to {high}",
        code,
        str(sum(1 for k in range(low, high + 1) if _is_prime(k))),
    )


def _times_ten(rng: random.Random) -> Item:
    a = _digits(rng)
    return Item("times_ten", f"What is {a} * 10?", f"{a} * 10", f"print({a} * 10)", str(a * 10))


def _last_digit(rng: random.Random) -> Item:
    a = _digits(rng)
    return Item(
        "last_digit",
        f"What is the last digit of {a}?",
        f"the last digit of {a}",
        f"print({a} % 10)",
        str(a % 10),
    )


HARD: dict[str, Callable[[random.Random], Item]] = {
    "product": _product,
    "power_mod": _power_mod,
    "digit_sum": _digit_sum,
    "prime_count": _prime_count,
}
EASY: dict[str, Callable[[random.Random], Item]] = {
    "times_ten": _times_ten,
    "last_digit": _last_digit,
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
    lead = int(truth[0]) + (1 if truth[0] != "9" else -1)
    rounded = truth[0] + "0" * (len(truth) - 1)
    return rounded if rounded != truth else str(lead) + "0" * (len(truth) - 1)


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
    ``test`` for held-out evaluation (disjoint seed ranges; corpus prompts are skipped)."""
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
            out.append(it.spec())
    return out


def problem_records(n: int, *, split: str = "test") -> list[dict[str, Any]]:
    """``problems`` as records for ``curation.importing.problem_set_import``."""
    return [
        {"domain": p.domain, "prompt": p.prompt, "answer": p.answer, "id": f"arith-{split}-{i}"}
        for i, p in enumerate(problems(n, split=split))
    ]

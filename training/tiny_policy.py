"""The project's tiny policy, built offline and cached by content hash.

    path = build_tiny_policy()   # .cache/tiny-policy/<hash>/ : config.json, tokenizer, weights

A synthetic corpus of START-format trajectories (arithmetic and small algebra, a few code
problems) whose code really ran here; a byte-level BPE tokenizer trained on it and a small
Qwen2 model (training.tiny); then a few minutes of the project's own SFT (training.sft) with hints
and output blocks masked from the loss, so that the model writes ```python blocks that close,
stops for their output, and ends with a boxed answer. Some trajectories are wrong on purpose (a
buggy program, a careless final answer, mental arithmetic gone astray), so scoring sees failures;
trajectories without code teach the baseline to answer from memory, usually wrongly for big
numbers: the problems the tiny policy solves only with hints are the seed round's candidates.

The cache key hashes the corpus, the build settings and the source of the code that trains
(this module, training.tiny, training.sft, training.data, training.config): change any of them
and the next call builds anew. Nothing is downloaded.

`build_tiny_policy(family="arithmetic")` builds another family, one that generalises to problems
it never saw (training.tiny_arithmetic): the policy the loop's fidelity test runs on.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curation.hints import HINTS, Hint, get_hint, hint_text
from curation.problems import ProblemSpec
from curation.prompting import messages
from curation.trajectory import CODE_FENCE, THINK_END, loss_mask_spans, output_block, parse
from training import tiny_arithmetic as arithmetic
from training.tiny_arithmetic import ArithmeticConfig

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "TINY_POLICY_CACHE"
DEFAULT_CACHE = REPO / ".cache" / "tiny-policy"
_SOURCES = ("tiny_policy.py", "tiny.py", "sft.py", "data.py", "config.py")
FAMILIES = ("pool", "arithmetic")
_MATH_HINTS = tuple(h for h in HINTS if h.domain == "math")
THINK_START = "<think>\n"


@dataclass(frozen=True)
class TinyPolicyConfig:
    n_trajectories: int = 800
    pool_size: int = 40
    seed: int = 1234
    vocab_size: int = 1024
    whole_numbers: int = 0
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4  # head_dim 32: vLLM's CPU attention refuses 16
    epochs: float = 3.0
    learning_rate: float = 4e-3
    max_length: int = 1024
    # Padded batches: on CPU, packing's block-diagonal attention mask made steps ~3x slower.
    batch_size: int = 4


@dataclass(frozen=True)
class Sample:
    """One synthetic trajectory with the problem it answers."""

    problem: ProblemSpec
    completion: str
    correct: bool


# -- problems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One computation: how to say it, the code that does it, a wrong variant."""

    phrase: str  # "37 * 48 + 12"
    code: str
    buggy_code: str | None = None


def _run(code: str) -> str:
    """Run trusted, generated code here (not the sandbox: it is ours) and return its stdout."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<corpus>", "exec"), {"__name__": "__corpus__"})
    return buffer.getvalue()


def _arithmetic(rng: random.Random) -> tuple[str, _Step]:
    a, b, c = rng.randint(12, 999), rng.randint(12, 99), rng.randint(2, 500)
    op = rng.choice(["+", "-"])
    expr = f"{a} * {b} {op} {c}"
    return f"What is {expr}?", _Step(expr, f"print({expr})", f"print({a} * {b})")


def _range_sum(rng: random.Random) -> tuple[str, _Step]:
    lo, hi = rng.randint(1, 20), rng.randint(30, 400)
    return (
        f"What is the sum of the integers from {lo} to {hi}?",
        _Step(
            f"the sum of the integers from {lo} to {hi}",
            f"print(sum(range({lo}, {hi + 1})))",
            f"print(sum(range({lo}, {hi})))",
        ),
    )


def _power_mod(rng: random.Random) -> tuple[str, _Step]:
    base, exp, mod = rng.randint(2, 19), rng.randint(5, 60), rng.randint(7, 97)
    return (
        f"What is the remainder when {base}^{exp} is divided by {mod}?",
        _Step(
            f"{base}^{exp} mod {mod}",
            f"print(pow({base}, {exp}, {mod}))",
            f"print(pow({base}, {exp - 1}, {mod}))",
        ),
    )


def _gcd(rng: random.Random) -> tuple[str, _Step]:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(2, 40), g * rng.randint(2, 40)
    return (
        f"What is the greatest common divisor of {a} and {b}?",
        _Step(
            f"gcd({a}, {b})",
            f"import math\nprint(math.gcd({a}, {b}))",
            f"print(min({a}, {b}))",
        ),
    )


def _linear(rng: random.Random) -> tuple[str, _Step]:
    x, a, b = rng.randint(-30, 60), rng.randint(2, 19), rng.randint(1, 200)
    c = a * x + b
    return (
        f"Solve for x: {a}x + {b} = {c}.",
        _Step(
            f"x = ({c} - {b}) / {a}",
            f"x = ({c} - {b}) // {a}\nprint(x)",
            f"x = ({c} + {b}) // {a}\nprint(x)",
        ),
    )


def _primes(rng: random.Random) -> tuple[str, _Step]:
    n = rng.randint(20, 300)
    code = (
        f"count = 0\nfor k in range(2, {n}):\n"
        "    if all(k % d for d in range(2, int(k ** 0.5) + 1)):\n"
        "        count += 1\nprint(count)"
    )
    return (
        f"How many primes are less than {n}?",
        _Step(
            f"the number of primes below {n}", code, code.replace("range(2, int", "range(3, int")
        ),
    )


def _factorial_digits(rng: random.Random) -> tuple[str, _Step]:
    n = rng.randint(8, 40)
    return (
        f"What is the sum of the digits of {n}!?",
        _Step(
            f"the digit sum of {n}!",
            f"import math\nprint(sum(int(d) for d in str(math.factorial({n}))))",
            f"import math\nprint(sum(int(d) for d in str(math.factorial({n - 1}))))",
        ),
    )


_SINGLE = (_arithmetic, _range_sum, _power_mod, _gcd, _linear, _primes, _factorial_digits)
_NAMES = "abcd"


def _multi_step(rng: random.Random, n_vars: int) -> tuple[str, list[tuple[str, _Step]]]:
    """'Let a = ..., b = ... What is a + b?': one code call per variable, one to combine."""
    steps, parts = [], []
    for name in _NAMES[:n_vars]:
        x, y = rng.randint(11, 99), rng.randint(11, 99)
        expr = f"{x} {rng.choice(['*', '+', '-'])} {y}"
        steps.append((name, _Step(expr, f"print({expr})", f"print({x} + {y} + 1)")))
        parts.append(f"{name} = {expr}")
    ops = [rng.choice(["+", "-", "*"]) for _ in range(n_vars - 1)]
    combined = _NAMES[0] + "".join(
        f" {op} {name}" for op, name in zip(ops, _NAMES[1:n_vars], strict=True)
    )
    listing = ", ".join(parts[:-1]) + (" and " if n_vars > 1 else "") + parts[-1]
    return f"Let {listing}. What is {combined}?", [*steps, ("", _Step(combined, ""))]


# -- trajectories ----------------------------------------------------------------------------


def _block(code: str) -> str:
    return f"```python\n{code}\n```\n"


def _executed(code: str) -> tuple[str, str]:
    """The code block and its real output block."""
    return _block(code), output_block(_run(code))


def _number(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1].strip() if lines else ""


def _wrong(value: str, rng: random.Random) -> str:
    try:
        number = int(value)
    except ValueError:
        return value + "1"
    return str(number + rng.choice([-10, -2, -1, 1, 2, 9, 100]))


def _math_hint(rng: random.Random) -> Hint:
    return rng.choice(_MATH_HINTS)


def _answer(value: str) -> str:
    return f"\n{THINK_END}\n\nThe answer is \\boxed{{{value}}}."


def _single_trajectory(rng: random.Random, question: str, step: _Step) -> Sample:
    truth = _number(_run(step.code))
    problem = ProblemSpec(domain="math", prompt=question, answer=truth)
    style = rng.choices(["self", "conjunction", "end", "mental"], weights=[30, 25, 25, 20])[0]
    buggy = step.buggy_code is not None and rng.random() < 0.12
    code = step.buggy_code if buggy and step.buggy_code else step.code
    intro = f"{THINK_START}I need {step.phrase}. "
    # One wrong estimate per problem, a habit the policy learns: from memory it is mostly wrong.
    estimate = _wrong(truth, random.Random(question))
    if style == "mental":
        # The same estimate sentence the end-hint style has: there the hint replaces </think>.
        guess = truth if rng.random() < 0.1 else estimate
        text = intro + f"So the answer is probably {guess}." + _answer(guess)
        return Sample(problem, text, guess == truth)
    code_text, out_text = _executed(code)
    value = _number(_run(code))
    final = value if rng.random() < 0.9 else _wrong(value, rng)
    if style == "self":
        opener = rng.choice(["Let me compute it with Python.\n", "I will check this in Python.\n"])
        body = intro + opener + code_text
    elif style == "conjunction":
        guess = estimate
        hint = hint_text(_math_hint(rng))
        conjunction = rng.choice(["Wait", "Wait", "Alternatively"])
        # Mostly a hint after the conjunction (masked); sometimes the model's own words, so a
        # baseline sample that writes "Wait" goes on sensibly.
        follow = hint if rng.random() < 0.7 else "let me check it with Python.\n" + CODE_FENCE
        body = (
            intro
            + f"It might be {guess}. {conjunction}, "
            + follow
            + "\n"
            + code_text[len(CODE_FENCE) + 1 :]
        )
    else:  # the end-of-thinking hint: an estimate, then the hint before </think>
        guess = estimate
        hint = hint_text(_math_hint(rng))
        body = (
            intro
            + f"So the answer is probably {guess}.\n"
            + hint
            + "\n"
            + code_text[len(CODE_FENCE) + 1 :]
        )
    text = body + out_text + f"So the result is {value}." + _answer(final)
    return Sample(problem, text, final == truth)


def _substitute(expression: str, values: dict[str, str]) -> str:
    """``a + b`` with each one-letter name replaced by ``(value)``."""
    return "".join(f"({values[c]})" if c in values else c for c in expression)


def _multi_trajectory(rng: random.Random, question: str, steps: list[tuple[str, _Step]]) -> Sample:
    values: dict[str, str] = {}
    text = THINK_START + "I will compute each value in turn.\n"
    slip = rng.random() < 0.1
    for i, (name, step) in enumerate(steps[:-1]):
        code_text, out_text = _executed(step.code)
        values[name] = _number(_run(step.code))
        text += f"{'Next' if i else 'First'}, {name} = {step.phrase}.\n"
        text += code_text + out_text + f"So {name} = {values[name]}.\n"
    combined = steps[-1][1].phrase
    final_code = f"print({_substitute(combined, values)})"
    code_text, out_text = _executed(final_code)
    value = _number(_run(final_code))
    truth = value
    final = _wrong(value, rng) if slip else value
    text += f"Now {combined}.\n" + code_text + out_text + f"So {combined} = {value}."
    if rng.random() < 0.3:  # an end-of-thinking hint: check the whole computation again
        check = "print(" + _substitute(combined, {n: s.phrase for n, s in steps[:-1]}) + ")"
        code_text, out_text = _executed(check)
        text += "\n" + hint_text(_math_hint(rng)) + "\n" + code_text[len(CODE_FENCE) + 1 :]
        text += out_text + f"So the result is {_number(_run(check))}."
    text += _answer(final)
    problem = ProblemSpec(domain="math", prompt=question, answer=truth)
    return Sample(problem, text, final == truth)


def _code_trajectory(rng: random.Random, kind: str, n: int) -> Sample:
    if kind == "digits":
        statement, body = "returns the sum of the digits of n", "return sum(int(d) for d in str(n))"
        buggy = "return sum(int(d) for d in str(n)[1:])"
    elif kind == "evens":
        statement, body = "returns how many even numbers are in range(n)", "return (n + 1) // 2"
        buggy = "return n // 2"
    else:
        statement, body = "returns n with its digits reversed", "return int(str(n)[::-1])"
        buggy = "return int(str(n)[::-1]) + 1"
    solution = f"def solve(n):\n    {body}"
    expected = _run(f"{solution}\nprint(solve({n}))").strip()
    problem = ProblemSpec(
        domain="code",
        prompt=f"Write a Python function solve(n) that {statement}. For example solve({n}) "
        f"should return {expected}.",
        tests=[{"type": "call", "args": [n], "expected": int(expected)}],
        entry_point="solve",
    )
    wrong = rng.random() < 0.15
    final = f"def solve(n):\n    {buggy if wrong else body}"
    intro = f"{THINK_START}I need a function that {statement}.\n"
    if rng.random() < 0.4:
        debug = hint_text(get_hint("code_debug_call"), problem)
        opener = intro + debug + "\n"
    else:
        opener = intro + "Let me test it on the example.\n" + CODE_FENCE + "\n"
    test_code = f"{final}\n\nprint(solve({n}))"
    code_text, out_text = _executed(test_code)
    text = opener + code_text[len(CODE_FENCE) + 1 :] + out_text
    text += f"The output is {_number(_run(test_code))}.\n{THINK_END}\n\n" + _block(final).rstrip(
        "\n"
    )
    return Sample(problem, text, not wrong)


@dataclass(frozen=True)
class _Entry:
    """A problem of the pool and what its trajectories are made from."""

    problem: ProblemSpec
    kind: str  # "single", "multi" or "code"
    parts: tuple[Any, ...]

    def trajectory(self, rng: random.Random) -> Sample:
        if self.kind == "single":
            return _single_trajectory(rng, self.problem.prompt, *self.parts)
        if self.kind == "multi":
            return _multi_trajectory(rng, self.problem.prompt, *self.parts)
        return _code_trajectory(rng, *self.parts)


def problem_pool(config: TinyPolicyConfig | None = None) -> list[_Entry]:
    """The problems the tiny policy is trained on, each in several trajectories.

    A model this small does not learn to copy numbers from a prompt in minutes of CPU training,
    but it does learn a few dozen problems: on these it writes the right code once a hint (or
    its own habit) opens a python block, while its mental arithmetic stays mostly wrong.
    """
    config = config or TinyPolicyConfig()
    rng = random.Random(config.seed)
    pool = []
    for i in range(config.pool_size):
        if i % 10 == 9:
            kind, n = rng.choice(["digits", "evens", "reverse"]), rng.randint(100, 99999)
            problem = _code_trajectory(random.Random(0), kind, n).problem
            pool.append(_Entry(problem, "code", (kind, n)))
        elif i % 2:
            question, steps = _multi_step(rng, 1 + (i // 2) % 3)
            answer = _multi_trajectory(random.Random(0), question, steps).problem.answer
            pool.append(_Entry(ProblemSpec("math", question, answer), "multi", (steps,)))
        else:
            question, step = rng.choice(_SINGLE)(rng)
            answer = _number(_run(step.code))
            pool.append(_Entry(ProblemSpec("math", question, answer), "single", (step,)))
    return pool


def build_corpus(config: TinyPolicyConfig | None = None) -> list[Sample]:
    """The training trajectories: the same for the same config."""
    config = config or TinyPolicyConfig()
    pool = problem_pool(config)
    rng = random.Random(config.seed + 1)
    return [rng.choice(pool).trajectory(rng) for _ in range(config.n_trajectories)]


def sample_problems(
    n: int, *, seed: int = 7, kind: str = "single", config: TinyPolicyConfig | None = None
) -> list[ProblemSpec]:
    """``n`` problems of the policy's pool, of one ``kind``, for tests, the demo and the bench.

    ``single``: one computation (one code cell); ``multi``: 'Let a = ... What is a + b?', one
    code cell per value plus one; ``code``: write a function. Distinct while the pool lasts.
    """
    entries = [e for e in problem_pool(config) if e.kind == kind]
    if not entries:
        raise ValueError(f"no problems of kind {kind!r}: 'single', 'multi' or 'code'")
    rng = random.Random(seed)
    picked = rng.sample(entries, min(n, len(entries)))
    picked += rng.choices(entries, k=n - len(picked))
    return [e.problem for e in picked]


def corpus_rows(samples: list[Sample]) -> list[dict[str, Any]]:
    """Dataset rows in the export format (training.data), hints and outputs masked."""
    hints = [h.text for h in HINTS]
    rows = []
    for i, sample in enumerate(samples):
        segments = parse(sample.completion, hints=hints)
        rows.append(
            {
                "messages": [
                    *messages(sample.problem.prompt),
                    {"role": "assistant", "content": sample.completion},
                ],
                "mask_spans": loss_mask_spans(segments),
                "problem_id": f"tiny-{i}",
                "trajectory_id": f"tiny-{i}",
                "dataset_version": "tiny-policy",
                "score": 1.0 if sample.correct else 0.0,
            }
        )
    return rows


# -- build -----------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def content_hash(
    config: TinyPolicyConfig | ArithmeticConfig,
    rows: list[dict[str, Any]],
    sources: tuple[str, ...] = _SOURCES,
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode())
    for name in sources:
        digest.update((REPO / "training" / name).read_bytes())
    return digest.hexdigest()[:16]


def _family(
    family: str, config: TinyPolicyConfig | ArithmeticConfig | None
) -> tuple[TinyPolicyConfig | ArithmeticConfig, list[Sample], tuple[str, ...]]:
    """The family's config, training trajectories and hashed sources."""
    if family == "pool":
        config = config or TinyPolicyConfig()
        assert isinstance(config, TinyPolicyConfig)
        return config, build_corpus(config), _SOURCES
    if family == "arithmetic":
        config = config or ArithmeticConfig()
        assert isinstance(config, ArithmeticConfig)
        samples = [Sample(item.spec(), text, True) for item, text in arithmetic.corpus(config)]
        return config, samples, (*_SOURCES, "tiny_arithmetic.py")
    raise ValueError(f"unknown tiny policy family {family!r}: one of {', '.join(FAMILIES)}")


def build_tiny_policy(
    force: bool = False,
    config: TinyPolicyConfig | ArithmeticConfig | None = None,
    *,
    family: str = "pool",
    torch_threads: int = 1,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
) -> Path:
    """The tiny policy's directory, built (a few minutes on CPU) unless cached.

    ``family``: "pool" (the default: a pool of 40 problems it memorises, for the app's demo and
    tests) or "arithmetic" (training.tiny_arithmetic: it generalises to unseen problems).

    ``torch_threads``: a model this small gains little from a second thread, and on a busy
    2-core machine two spinning OpenMP threads ran SFT ~10x slower than one. ``callbacks``:
    transformers TrainerCallbacks for the SFT run (the demo shows its progress with one).
    """
    config, samples, sources = _family(family, config)
    rows = corpus_rows(samples)
    target = cache_root() / content_hash(config, rows, sources)
    if (target / "config.json").is_file() and not force:
        return target
    log(f"building the tiny policy into {target} ({len(rows)} trajectories)")
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        return _build(config, rows, target, log, callbacks)
    finally:
        torch.set_num_threads(threads)


def _build(
    config: TinyPolicyConfig | ArithmeticConfig,
    rows: list[dict[str, Any]],
    target: Path,
    log: Callable[[str], None],
    callbacks: Sequence[Any] = (),
) -> Path:
    from training.config import SFTRunConfig
    from training.sft import main as sft_main
    from training.tiny import build_model, build_tokenizer

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        work_dir = Path(work)
        texts = [m["content"] for row in rows for m in row["messages"]]
        tokenizer = build_tokenizer(
            texts, vocab_size=config.vocab_size, whole_numbers=config.whole_numbers
        )
        model = build_model(
            tokenizer,
            hidden_size=config.hidden_size,
            layers=config.layers,
            heads=config.heads,
            max_position_embeddings=config.max_length * 4,
            seed=config.seed,
        )
        init_dir = work_dir / "init"
        tokenizer.save_pretrained(init_dir)
        model.save_pretrained(init_dir)
        dataset = work_dir / "corpus.jsonl"
        dataset.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        result = sft_main(
            SFTRunConfig(
                model_name_or_path=str(init_dir),
                dataset=str(dataset),
                output_dir=str(work_dir / "trained"),
                learning_rate=config.learning_rate,
                num_train_epochs=config.epochs,
                warmup_ratio=0.05,
                max_length=config.max_length,
                packing=False,
                per_device_train_batch_size=config.batch_size,
                gradient_checkpointing=False,
                logging_steps=20,
                seed=config.seed,
            ),
            callbacks=callbacks,
        )
        log(
            f"trained {result.steps} steps in {result.train_runtime_s:.0f} s, "
            f"final loss {result.final_loss}"
        )
        trained = work_dir / "trained"
        (trained / "tiny_policy.json").write_text(
            json.dumps({"config": asdict(config), "sft": result.to_dict()}, indent=2),
            encoding="utf-8",
        )
        if target.exists():
            shutil.rmtree(target)
        trained.rename(target)
    return target


if __name__ == "__main__":
    print(build_tiny_policy())

"""Dataset rows -> token ids and loss labels for TRL's SFTTrainer.

A row (the export format, one JSON object per line):
    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "mask_spans": [[start, end], ...], "problem_id": ..., "trajectory_id": ..., ...}

Each row becomes one training text, tokenized the way the inference engine sees it:
    prompt     the chat template over the messages before the assistant's, with the generation
               prompt, tokenized alone (as vLLM tokenizes a prompt)          -> no loss
    completion the assistant content, tokenized alone with character offsets -> loss, except masked
    end-of-turn the eos token                                                -> loss (learn to stop)

Masking rule: a completion token carries no loss when ANY character it encodes lies inside a mask
span (hints, ```output blocks: text the model did not write). A token straddling a span boundary
is therefore masked: the model is never trained to produce text it did not write, at the price of
an occasional token of its own next to a span. Characters that a tokenizer leaves out of every
token's offsets (trimmed whitespace) count as part of the token after them. With
`mask_hints=False` only the parts of the spans inside ```output blocks stay masked: the model is
trained to write the hints too (see SFTRunConfig.mask_hints).

TRL 1.16 keeps a pre-tokenized dataset's `labels` column as is. (Its `completion_mask` column is
silently ignored unless `completion_only_loss=True` is set, so labels are built here instead.)

If the template's generation prompt already opens the completion (QwQ-32B's ends with
"<think>\\n"), the completion's identical opening lines are taken as prompt, not duplicated.

Everything is checked before a model is loaded: bad rows raise `DatasetError` naming them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
# Ids listed in an error message; the exception's `ids` holds them all.
SHOWN_IDS = 20
CHUNK = 64


class DatasetError(ValueError):
    """The dataset cannot be trained on as it is; `ids` names the offending rows."""

    def __init__(self, message: str, ids: Sequence[str] = (), *, list_ids: bool = True) -> None:
        self.ids = list(ids)
        if self.ids and list_ids:
            shown = ", ".join(self.ids[:SHOWN_IDS])
            more = f" and {len(self.ids) - SHOWN_IDS} more" if len(self.ids) > SHOWN_IDS else ""
            message = f"{message}: {shown}{more}"
        super().__init__(message)


@dataclass(frozen=True)
class Example:
    """One training text: `labels[i]` is `input_ids[i]` where it carries loss, else -100.
    int32 arrays: a D_START export holds hundreds of millions of tokens."""

    row_id: str
    input_ids: np.ndarray
    labels: np.ndarray


@dataclass
class BuiltDataset:
    dataset: datasets.Dataset
    n_rows: int
    n_tokens: int
    n_loss_tokens: int
    # rows longer than max_length, whatever on_overlong did with them
    overlong_ids: list[str] = field(default_factory=list)
    on_overlong: str = "report"


def row_id(row: dict[str, Any], index: int) -> str:
    """A row's name in messages: its trajectory id when it has one, else its position (1-based,
    counting the file's non-blank lines)."""
    tid = row.get("trajectory_id")
    return str(tid) if tid not in (None, "") else f"row {index + 1}"


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file; blank lines are skipped, unreadable lines raise DatasetError."""
    rows, bad = [], []
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad.append(f"line {index + 1}")
                continue
            if not isinstance(row, dict):
                bad.append(f"line {index + 1}")
                continue
            rows.append(row)
    if bad:
        raise DatasetError(f"{path}: {len(bad)} lines are not JSON objects", bad)
    return rows


def _row_problem(row: Any) -> str | None:
    """Why a row cannot be used, or None."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return "a message without a known role"
        if not isinstance(m.get("content"), str):
            return "a message whose content is not a string"
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        return "no assistant message"
    if roles.count("assistant") > 1 or roles[-1] != "assistant":
        return "the assistant message must be the single, last message"
    if len(messages) < 2:
        return "no prompt before the assistant message"
    content = messages[-1]["content"]
    if not content:
        return "empty assistant content"
    spans = row.get("mask_spans", [])
    if not isinstance(spans, list):
        return "mask_spans is not a list"
    for span in spans:
        if (
            not isinstance(span, (list, tuple))
            or len(span) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            or not 0 <= span[0] <= span[1] <= len(content)
        ):
            return f"mask span {span!r} is not inside the assistant content"
    return None


def check_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Raise DatasetError if the dataset is empty or any row is malformed (all of them named)."""
    if not rows:
        raise DatasetError("the dataset is empty: no rows to train on")
    problems: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        problem = _row_problem(row)
        if problem:
            problems.setdefault(problem, []).append(row_id(row, index))
    if problems:
        parts = [
            f"{len(ids)} with {problem} ({', '.join(ids[:5])})" for problem, ids in problems.items()
        ]
        ids = [i for group in problems.values() for i in group]
        message = f"{len(ids)} of {len(rows)} rows are unusable: " + "; ".join(parts)
        raise DatasetError(message, ids, list_ids=False)  # the parts name them


def token_char_ranges(offsets: Sequence[tuple[int, int]], text_length: int) -> np.ndarray:
    """Each token's [start, end) in the text, gaps in the offsets given to the token after them
    (and a trailing gap to the last token), so that every character belongs to some token."""
    ranges = np.asarray(offsets, dtype=np.int64).reshape(-1, 2).copy()
    if len(ranges) == 0:
        return ranges
    covered_to = np.maximum.accumulate(ranges[:, 1])
    previous_end = np.concatenate([[0], covered_to[:-1]])
    ranges[:, 0] = np.minimum(ranges[:, 0], previous_end)
    ranges[-1, 1] = max(ranges[-1, 1], text_length)
    return ranges


def completion_loss_mask(
    offsets: Sequence[tuple[int, int]], spans: Iterable[Sequence[int]], text_length: int
) -> np.ndarray:
    """True for tokens that carry loss: those with no character inside any of `spans`."""
    masked = np.zeros(text_length + 1, dtype=np.int64)
    for start, end in spans:
        if end > start:
            masked[start] += 1
            masked[end] -= 1
    in_span = np.cumsum(masked)[:text_length] > 0
    prefix = np.concatenate([[0], np.cumsum(in_span)])
    ranges = token_char_ranges(offsets, text_length)
    if len(ranges) == 0:
        return np.zeros(0, dtype=bool)
    starts = np.minimum(ranges[:, 0], text_length)
    # a token that covers no character (it can happen with added tokens) goes with the next one
    ends = np.minimum(np.maximum(ranges[:, 1], starts + 1), text_length)
    return (prefix[ends] - prefix[starts]) == 0


def output_spans(spans: Iterable[Sequence[int]], content: str) -> list[list[int]]:
    """The parts of `spans` that lie inside the content's ```output blocks."""
    from curation.trajectory import parse, segment_spans  # no Django: the format module

    segments = parse(content)
    outputs = [
        span
        for segment, span in zip(segments, segment_spans(segments), strict=True)
        if segment.kind == "output"
    ]
    kept = []
    for start, end in spans:
        for out_start, out_end in outputs:
            if max(start, out_start) < min(end, out_end):
                kept.append([max(start, out_start), min(end, out_end)])
    return kept


def _prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt_messages: list, content: str
) -> tuple[str, int]:
    """The rendered prompt (with the generation prompt) and how many leading characters of
    `content` it already holds."""
    prompt = tokenizer.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=True
    )
    without = tokenizer.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=False
    )
    if not prompt.startswith(without):
        return prompt, 0
    opened = prompt[len(without) :]
    # whole lines the generation prompt adds, longest first, e.g. "<think>\n"
    line_starts = [0] + [i + 1 for i, ch in enumerate(opened[:-1]) if ch == "\n"]
    for start in line_starts:
        tail = opened[start:]
        if tail.strip() and content.startswith(tail):
            return prompt, len(tail)
    return prompt, 0


def tokenize_rows(
    rows: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    eos_token: str | None = None,
    mask_hints: bool = True,
) -> list[Example]:
    """Token ids and labels for rows that passed `check_rows` (see the module's masking rule)."""
    eos = eos_token or tokenizer.eos_token
    eos_id = tokenizer.convert_tokens_to_ids(eos) if eos else None
    if eos_id is None or eos_id == tokenizer.unk_token_id:
        raise DatasetError(f"the tokenizer has no end-of-turn token {eos!r}")
    examples: list[Example] = []
    for first in range(0, len(rows), CHUNK):
        chunk = rows[first : first + CHUNK]
        prompts, contents, spans = [], [], []
        for row in chunk:
            messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
            content = messages[-1]["content"]
            prompt, skip = _prompt_text(tokenizer, messages[:-1], content)
            prompts.append(prompt)
            contents.append(content[skip:])
            masked = row.get("mask_spans", [])
            if not mask_hints:
                masked = output_spans(masked, content)
            spans.append([(max(s - skip, 0), max(e - skip, 0)) for s, e in masked])
        prompt_enc = tokenizer(prompts, add_special_tokens=False)
        content_enc = tokenizer(contents, add_special_tokens=False, return_offsets_mapping=True)
        for i, row in enumerate(chunk):
            prompt_ids = prompt_enc["input_ids"][i]
            content_ids = content_enc["input_ids"][i]
            trained = completion_loss_mask(
                content_enc["offset_mapping"][i], spans[i], len(contents[i])
            )
            input_ids = np.array([*prompt_ids, *content_ids, eos_id], dtype=np.int32)
            labels = input_ids.copy()
            labels[: len(prompt_ids)] = IGNORE_INDEX
            labels[len(prompt_ids) : len(prompt_ids) + len(content_ids)][~trained] = IGNORE_INDEX
            examples.append(Example(row_id(row, first + i), input_ids, labels))
    return examples


def _to_dataset(examples: Sequence[Example]) -> datasets.Dataset:
    import datasets
    import pyarrow as pa

    lengths = np.array([len(e.input_ids) for e in examples], dtype=np.int64)
    # int32 offsets (TRL's packing path): up to 2**31 tokens
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())

    def column(name: str) -> pa.ListArray:
        values = np.concatenate([getattr(e, name) for e in examples])
        return pa.ListArray.from_arrays(offsets, pa.array(values))

    table = pa.table({"input_ids": column("input_ids"), "labels": column("labels")})
    return datasets.Dataset(table)


def build_dataset(
    rows: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    on_overlong: str = "report",
    eos_token: str | None = None,
    mask_hints: bool = True,
) -> BuiltDataset:
    """Check, tokenize and label `rows`; texts over `max_length` tokens are handled by
    `on_overlong` ("report": DatasetError naming them; "truncate": keep the first max_length
    tokens; "drop": leave them out). Raises DatasetError before anything heavy is loaded."""
    check_rows(rows)
    examples = tokenize_rows(rows, tokenizer, eos_token=eos_token, mask_hints=mask_hints)
    overlong = [e for e in examples if len(e.input_ids) > max_length]
    overlong_ids = [e.row_id for e in overlong]
    if overlong and on_overlong == "report":
        longest = max(len(e.input_ids) for e in overlong)
        raise DatasetError(
            f"{len(overlong)} of {len(examples)} texts are longer than max_length={max_length} "
            f"tokens (longest {longest}); raise max_length, or set on_overlong to truncate or drop",
            overlong_ids,
        )
    if on_overlong == "drop":
        examples = [e for e in examples if len(e.input_ids) <= max_length]
    elif on_overlong == "truncate":
        examples = [
            Example(e.row_id, e.input_ids[:max_length], e.labels[:max_length]) for e in examples
        ]
    elif on_overlong != "report":
        raise ValueError(f"on_overlong must be report, truncate or drop, got {on_overlong!r}")
    if not examples:
        raise DatasetError("no rows left to train on: every text is longer than max_length")
    no_loss = [e.row_id for e in examples if not (e.labels != IGNORE_INDEX).any()]
    if no_loss:
        # TRL would drop these silently
        raise DatasetError(f"{len(no_loss)} texts have no token that carries loss", no_loss)
    return BuiltDataset(
        dataset=_to_dataset(examples),
        n_rows=len(examples),
        n_tokens=sum(len(e.input_ids) for e in examples),
        n_loss_tokens=int(sum((e.labels != IGNORE_INDEX).sum() for e in examples)),
        overlong_ids=overlong_ids,
        on_overlong=on_overlong,
    )

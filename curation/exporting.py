"""Rows of a frozen dataset version, as JSONL (TRL's conversational formats) or Parquet; its
preference pairs (TRL's conversational preference format); its dataset card.

Every row carries the problem id, the trajectory id, the dataset version, the score and the
`mask_spans` (character spans of the assistant content that carry no loss: hints and interpreter
outputs), so a trainer elsewhere can reproduce the masking.

Memory stays constant whatever the version's size: items are read over a server-side cursor
inside a transaction (in autocommit Django declares the cursor WITH HOLD, and Postgres then
materialises the whole result before the first row), JSONL is written in small chunks as rows
arrive, and Parquet is written row group by row group to a spooled temporary file.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Case, F, Max, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast

from curation.models import DatasetItem, DatasetVersion, ReviewStatus, Revision, Round
from curation.prompting import SYSTEM_PROMPT
from curation.review import DECISION_PREFIX, TAKE_OVER_ACTION
from curation.trajectory import loss_mask_spans, parse

FORMATS = ("messages", "prompt_completion", "parquet", "preference", "preference_parquet")
PREFERENCE_FORMATS = ("preference", "preference_parquet")
CURSOR_ROWS = 2000
CHUNK_BYTES = 1 << 16
PARQUET_ROW_GROUP = 2000
SPOOL_BYTES = 32 << 20

_CONTENT_TYPES = {
    "messages": "application/x-ndjson",
    "prompt_completion": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "preference": "application/x-ndjson",
    "preference_parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True)
class Export:
    """What a response or a file needs to know before the first row is read."""

    version: DatasetVersion
    format: str

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")

    @property
    def label(self) -> str:
        """The `dataset_version` every row carries: name and number, e.g. ``d-seed/v3``."""
        return f"{self.version.dataset.name}/v{self.version.number}"

    @property
    def filename(self) -> str:
        suffix = {
            "parquet": "parquet",
            "preference_parquet": "preference.parquet",
        }.get(self.format, f"{self.format}.jsonl")
        return f"{self.version.dataset.name}-v{self.version.number}.{suffix}"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.format]

    @property
    def etag(self) -> str:
        """Strong: a frozen version's bytes in one format depend only on its content hash."""
        return f'"{self.version.content_hash}-{self.format}"'

    @property
    def row_count(self) -> int:
        if self.format in PREFERENCE_FORMATS:
            return sum(preference_pair_counts(self.version).values())
        return self.version.size

    @property
    def system_prompt(self) -> str:
        return self.version.rules.get("system_prompt", SYSTEM_PROMPT)

    def chunks(self) -> Iterator[bytes]:
        """The export's bytes; opens its own transaction, so call it outside of one or inside."""
        if self.format == "parquet":
            return _parquet_chunks(self)
        if self.format == "preference":
            return _preference_jsonl_chunks(self)
        if self.format == "preference_parquet":
            return _preference_parquet_chunks(self)
        return _jsonl_chunks(self)


def _item_rows(version: DatasetVersion) -> Iterator[tuple[int, int, str, str, str, bool | None]]:
    """(problem id, trajectory id, prompt, text, mask spans as JSON text, is_correct) in item order.

    The caller holds a transaction. The spans are read as text and spliced into the output as is,
    which saves a JSON decode and encode per row.
    """
    return (
        DatasetItem.objects.filter(version=version)
        .order_by("id")
        .values_list(
            "problem_id",
            "trajectory_id",
            "prompt",
            "text",
            Cast("mask_spans", TextField()),
            "is_correct",
        )
        .iterator(chunk_size=CURSOR_ROWS)
    )


def _score(is_correct: bool | None) -> float | None:
    return None if is_correct is None else float(is_correct)


def _jsonl_chunks(export: Export) -> Iterator[bytes]:
    label = export.label
    system = orjson.Fragment(orjson.dumps({"role": "system", "content": export.system_prompt}))
    conversational = export.format == "messages"
    lines: list[bytes] = []
    size = 0
    with transaction.atomic():
        for problem_id, trajectory_id, prompt, text, spans, is_correct in _item_rows(
            export.version
        ):
            user = {"role": "user", "content": prompt}
            assistant = {"role": "assistant", "content": text}
            row: dict[str, Any] = (
                {"messages": [system, user, assistant]}
                if conversational
                else {"prompt": [system, user], "completion": [assistant]}
            )
            row["mask_spans"] = orjson.Fragment(spans)
            row["problem_id"] = problem_id
            row["trajectory_id"] = trajectory_id
            row["dataset_version"] = label
            row["score"] = _score(is_correct)
            line = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
            lines.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:  # one write per chunk, not per row
                yield b"".join(lines)
                lines.clear()
                size = 0
    if lines:
        yield b"".join(lines)


def parquet_schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("messages", pa.list_(message)),
            ("mask_spans", pa.list_(pa.list_(pa.int64()))),
            ("problem_id", pa.int64()),
            ("trajectory_id", pa.int64()),
            ("dataset_version", pa.string()),
            ("score", pa.float64()),
        ]
    )


def _parquet_chunks(export: Export) -> Iterator[bytes]:
    """Write the whole file first (Parquet's footer comes last), then stream it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    system = {"role": "system", "content": export.system_prompt}
    label = export.label
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        with pq.ParquetWriter(spool, schema, compression="zstd") as writer:
            columns: dict[str, list] = {name: [] for name in schema.names}

            def flush() -> None:
                writer.write_table(pa.table(columns, schema=schema))
                for values in columns.values():
                    values.clear()

            with transaction.atomic():
                for problem_id, trajectory_id, prompt, text, spans, is_correct in _item_rows(
                    export.version
                ):
                    columns["messages"].append(
                        [
                            system,
                            {"role": "user", "content": prompt},
                            {"role": "assistant", "content": text},
                        ]
                    )
                    columns["mask_spans"].append(orjson.loads(spans))
                    columns["problem_id"].append(problem_id)
                    columns["trajectory_id"].append(trajectory_id)
                    columns["dataset_version"].append(label)
                    columns["score"].append(_score(is_correct))
                    if len(columns["problem_id"]) >= PARQUET_ROW_GROUP:
                        flush()
            if columns["problem_id"]:
                flush()
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            yield chunk


# --- Preference pairs (TRL's conversational preference format) --------------------------------

CORRECTION = "correction"  # chosen: the corrected text in the version; rejected: as generated
CHOSEN_PER_PROBLEM = 16
DECISION = "decision"  # chosen: an approved member; rejected: a trajectory of its problem


@dataclass(frozen=True)
class PreferencePair:
    kind: str
    problem_id: int
    prompt: str
    chosen_trajectory_id: int
    chosen: str
    chosen_mask_spans: list[list[int]]
    rejected_trajectory_id: int
    rejected: str
    rejected_mask_spans: list[list[int]]


def _members(version: DatasetVersion):
    return DatasetItem.objects.filter(version=version)


def _rejections(version: DatasetVersion) -> QuerySet[Revision]:
    """The revisions that left a trajectory rejected when the version was frozen: the latest
    revision before the freeze (a take-over changes no state) is a rejection. Only trajectories
    of the version's problems in its members' rounds. Revisions are never changed, so the pairs
    of a frozen version are too; the rejected text is the one the annotator saw."""
    before = Revision.objects.filter(
        created_at__lte=version.created_at,
        trajectory__round_id__in=_members(version).values("trajectory__round_id"),
        trajectory__problem_id__in=_members(version).values("problem_id"),
    ).exclude(action=TAKE_OVER_ACTION)
    latest = before.order_by().values("trajectory_id").annotate(last=Max("id")).values("last")
    return Revision.objects.filter(id__in=latest, action=DECISION_PREFIX + ReviewStatus.REJECTED)


def _fixed(version: DatasetVersion):
    return _members(version).exclude(text=F("trajectory__original_text"))


def preference_pair_counts(version: DatasetVersion) -> dict[str, int]:
    return {CORRECTION: _fixed(version).count(), DECISION: _rejections(version).count()}


def preference_pairs(version: DatasetVersion) -> Iterator[PreferencePair]:
    """Every pair of a frozen version, problem by problem; the caller holds a transaction.

    Per problem: a correction pair for each member whose text differs from what the policy
    generated, then a decision pair for each trajectory rejected at freeze time, paired with the
    problem's members in turn (its first CHOSEN_PER_PROBLEM: D_START has one member per problem,
    D_seed a few), so each rejected text appears once. Two ordered server-side cursors are
    merged; memory holds at most CHOSEN_PER_PROBLEM members, however large a problem's group.
    """
    original = Case(
        When(~Q(text=F("trajectory__original_text")), then=F("trajectory__original_text")),
        default=Value(None),
        output_field=TextField(),
    )
    members = (
        _members(version)
        .order_by("problem_id", "id")
        .values_list(
            "problem_id",
            "trajectory_id",
            "prompt",
            "text",
            Cast("mask_spans", TextField()),
            original,
            "trajectory__hints",
        )
        .iterator(chunk_size=CURSOR_ROWS)
    )
    rejected = (
        _rejections(version)
        .order_by("trajectory__problem_id", "trajectory_id")
        .values_list("trajectory__problem_id", "trajectory_id", "after_text", "trajectory__hints")
        .iterator(chunk_size=CURSOR_ROWS)
    )
    pending = next(rejected, None)
    for problem_id, rows in itertools.groupby(members, key=lambda row: row[0]):
        while pending is not None and pending[0] < problem_id:
            pending = next(rejected, None)
        wanted = pending is not None and pending[0] == problem_id
        chosen: list[tuple[int, str, str, list[list[int]]]] = []
        for _, trajectory_id, prompt, text, spans_json, before, hints in rows:
            spans = orjson.loads(spans_json)
            if wanted and len(chosen) < CHOSEN_PER_PROBLEM:
                chosen.append((trajectory_id, prompt, text, spans))
            if before is not None:
                yield PreferencePair(
                    CORRECTION,
                    problem_id,
                    prompt,
                    trajectory_id,
                    text,
                    spans,
                    trajectory_id,
                    before,
                    loss_mask_spans(parse(before, hints=hints)),
                )
        turn = 0
        while pending is not None and pending[0] == problem_id:
            _, rejected_id, rejected_text, hints = pending
            trajectory_id, prompt, text, spans = chosen[turn % len(chosen)]
            turn += 1
            yield PreferencePair(
                DECISION,
                problem_id,
                prompt,
                trajectory_id,
                text,
                spans,
                rejected_id,
                rejected_text,
                loss_mask_spans(parse(rejected_text, hints=hints)),
            )
            pending = next(rejected, None)


def _preference_row(pair: PreferencePair, system: dict[str, str], label: str) -> dict[str, Any]:
    return {
        "prompt": [system, {"role": "user", "content": pair.prompt}],
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
        "chosen_mask_spans": pair.chosen_mask_spans,
        "rejected_mask_spans": pair.rejected_mask_spans,
        "pair": pair.kind,
        "problem_id": pair.problem_id,
        "chosen_trajectory_id": pair.chosen_trajectory_id,
        "rejected_trajectory_id": pair.rejected_trajectory_id,
        "dataset_version": label,
    }


def _preference_jsonl_chunks(export: Export) -> Iterator[bytes]:
    system = {"role": "system", "content": export.system_prompt}
    lines: list[bytes] = []
    size = 0
    with transaction.atomic():
        for pair in preference_pairs(export.version):
            line = orjson.dumps(
                _preference_row(pair, system, export.label), option=orjson.OPT_APPEND_NEWLINE
            )
            lines.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield b"".join(lines)
                lines.clear()
                size = 0
    if lines:
        yield b"".join(lines)


def preference_parquet_schema():
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    spans = pa.list_(pa.list_(pa.int64()))
    return pa.schema(
        [
            ("prompt", messages),
            ("chosen", messages),
            ("rejected", messages),
            ("chosen_mask_spans", spans),
            ("rejected_mask_spans", spans),
            ("pair", pa.string()),
            ("problem_id", pa.int64()),
            ("chosen_trajectory_id", pa.int64()),
            ("rejected_trajectory_id", pa.int64()),
            ("dataset_version", pa.string()),
        ]
    )


def _preference_parquet_chunks(export: Export) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = preference_parquet_schema()
    system = {"role": "system", "content": export.system_prompt}
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        with pq.ParquetWriter(spool, schema, compression="zstd") as writer:
            rows: list[dict[str, Any]] = []
            with transaction.atomic():
                for pair in preference_pairs(export.version):
                    rows.append(_preference_row(pair, system, export.label))
                    if len(rows) >= PARQUET_ROW_GROUP:
                        writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                        rows.clear()
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            yield chunk


# --- The dataset card and the Hugging Face folder layout --------------------------------------

CARD_FILE = "README.md"
FOLDER_FORMATS = {"jsonl": ("messages", "preference"), "parquet": ("parquet", "preference_parquet")}


def _data_files(file_type: str, with_preference: bool) -> dict[str, str]:
    """Each config's data file, relative to the folder (the layout `export_folder` writes)."""
    suffix = "jsonl" if file_type == "jsonl" else "parquet"
    files = {"sft": f"sft/train.{suffix}"}
    if with_preference:
        files["preference"] = f"preference/train.{suffix}"
    return files


def dataset_card(
    *,
    version: DatasetVersion,
    file_type: str = "jsonl",
    license: str = "unknown",
    pair_counts: dict[str, int] | None = None,
) -> str:
    """README.md for a version's folder: YAML metadata in the Hugging Face layout (its `configs`
    name each data file, so `datasets.load_dataset(folder)` reads the SFT rows and
    `load_dataset(folder, "preference")` the pairs), then what the rows hold.

    The metadata records the source rounds, the selection rules, the funnel and the content hash;
    annotators' agreement is not computed by this app, so it is not there.
    """
    import yaml

    counts = preference_pair_counts(version) if pair_counts is None else pair_counts
    files = _data_files(file_type, sum(counts.values()) > 0)
    dataset = version.dataset
    rounds = (
        Round.objects.filter(pk__in=_members(version).values("trajectory__round_id"))
        .select_related("policy")
        .order_by("created_at", "id")
    )
    rules = {k: v for k, v in version.rules.items() if k != "system_prompt"}
    metadata = {
        "license": license,
        "pretty_name": f"{dataset.name} v{version.number}",
        "task_categories": ["text-generation"],
        "tags": ["start", "tool-use", "hint-rft", "trl"],
        "configs": [
            {
                "config_name": name,
                **({"default": True} if name == "sft" else {}),
                "data_files": [{"split": "train", "path": path}],
            }
            for name, path in files.items()
        ],
        "start_curation": {
            "dataset": dataset.name,
            "kind": dataset.kind,
            "version": version.number,
            "content_hash": version.content_hash,
            "rows": version.size,
            "frozen_at": version.created_at.isoformat(),
            "source_rounds": [
                {"name": r.name, "kind": r.kind, "policy": r.policy.name} for r in rounds
            ],
            "rules": rules,
            "funnel": version.funnel,
            "system_prompt": version.rules.get("system_prompt", SYSTEM_PROMPT),
            "preference_pairs": counts,
        },
    }
    plain = json.loads(json.dumps(metadata, cls=DjangoJSONEncoder))  # enums and dates as text
    header = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100)
    funnel = "\n".join(
        f"| {step.get('round', '')} | {step.get('step', '')} | {step.get('count', '')} |"
        for step in version.funnel
    )
    sections = [
        f"# {dataset.name} v{version.number}",
        f"{version.size} {dataset.get_kind_display()} trajectories frozen from "
        f"{', '.join(r.name for r in rounds) or 'no round'}, content hash "
        f"`{version.content_hash}`. Made with START curation: hinted rollouts (Hint-infer), "
        "checked, corrected and approved by annotators.",
        "## Configurations\n\n"
        f"- `sft` (default, `{files['sft']}`): TRL's conversational language-modelling rows "
        "(`messages`: system, user, assistant).",
    ]
    if "preference" in files:
        sections[-1] += (
            f"\n- `preference` (`{files['preference']}`): TRL's conversational preference rows "
            f"(`prompt`, `chosen`, `rejected`): {counts[CORRECTION]} `correction` pairs "
            "(the annotators' fix over the text as generated) and "
            f"{counts[DECISION]} `decision` pairs (an approved trajectory over a rejected one "
            "of the same problem)."
        )
    sections += [
        "## Loss masks\n\nEvery assistant text comes with character spans that carry no loss "
        "(`mask_spans`; `chosen_mask_spans` and `rejected_mask_spans` in pairs): the hints "
        "inserted into the reasoning and the interpreter's output blocks, which the model did "
        "not write.",
        "## Funnel\n\n| round | step | count |\n|---|---|---|\n" + funnel,
        "## Load\n\n```python\nfrom datasets import load_dataset\n\n"
        'sft = load_dataset("path/to/folder")\n'
        + (
            'pairs = load_dataset("path/to/folder", "preference")\n'
            if "preference" in files
            else ""
        )
        + "```",
    ]
    return f"---\n{header}---\n\n" + "\n\n".join(sections) + "\n"


def export_folder(
    *, version: DatasetVersion, folder: Path, file_type: str = "jsonl", license: str = "unknown"
) -> dict[str, Path]:
    """Write a version in the Hugging Face layout: the SFT rows, the preference pairs (when
    there are any) and README.md, ready for `huggingface-cli upload`. The folder must be new
    or empty; files appear complete or not at all (written as `.partial`, then renamed)."""
    if file_type not in FOLDER_FORMATS:
        raise ValueError(f"unknown file type {file_type!r}; choose jsonl or parquet")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} is not an empty folder")
    counts = preference_pair_counts(version)
    files = _data_files(file_type, sum(counts.values()) > 0)
    written: dict[str, Path] = {}
    for (name, path), format in zip(files.items(), FOLDER_FORMATS[file_type], strict=False):
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as fh:
            for chunk in Export(version, format).chunks():
                fh.write(chunk)
        partial.replace(target)
        written[name] = target
    card = folder / CARD_FILE
    card.write_text(
        dataset_card(version=version, file_type=file_type, license=license, pair_counts=counts),
        encoding="utf-8",
    )
    written["card"] = card
    return written

"""Rows of a frozen dataset version, as JSONL (TRL's conversational formats) or Parquet.

Every row carries the problem id, the trajectory id, the dataset version, the score and the
`mask_spans` (character spans of the assistant content that carry no loss: hints and interpreter
outputs), so a trainer elsewhere can reproduce the masking.

Memory stays constant whatever the version's size: items are read over a server-side cursor
inside a transaction (in autocommit Django declares the cursor WITH HOLD, and Postgres then
materialises the whole result before the first row), JSONL is written in small chunks as rows
arrive, and Parquet is written row group by row group to a spooled temporary file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from curation.models import DatasetItem, DatasetVersion
from curation.prompting import SYSTEM_PROMPT

FORMATS = ("messages", "prompt_completion", "parquet")
CURSOR_ROWS = 2000
CHUNK_BYTES = 1 << 16
PARQUET_ROW_GROUP = 2000
SPOOL_BYTES = 32 << 20

_CONTENT_TYPES = {
    "messages": "application/x-ndjson",
    "prompt_completion": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
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
        suffix = "parquet" if self.format == "parquet" else f"{self.format}.jsonl"
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
        return self.version.size

    @property
    def system_prompt(self) -> str:
        return self.version.rules.get("system_prompt", SYSTEM_PROMPT)

    def chunks(self) -> Iterator[bytes]:
        """The export's bytes; opens its own transaction, so call it outside of one or inside."""
        if self.format == "parquet":
            return _parquet_chunks(self)
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

"""Import problem sets from JSONL files or Hugging Face `datasets` folders/files: all or nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from curation.models import Problem, ProblemSet, Split
from curation.problems import (
    BenchmarkFormat,
    ProblemFormatError,
    UnknownFormatError,
    detect_format,
    format_named,
    map_record,
)

MAX_LINE_BYTES = 10 * 1024 * 1024
MAX_REPORTED_ERRORS = 50


@dataclass
class ImportReport:
    problem_set: str
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    format: str = ""  # the published format the file's columns matched
    unknown_columns: list[str] = field(default_factory=list)  # kept in metadata, not interpreted

    @property
    def ok(self) -> bool:
        return not self.errors

    def notes(self) -> str:
        """Which format was read, and the columns it does not know (kept, not interpreted)."""
        text = f"format {self.format}" if self.format else ""
        if self.unknown_columns:
            text += f"; columns not in the format, kept in metadata: {self.unknown_columns}"
        return text

    def summary(self) -> str:
        if self.ok:
            done = f"{self.problem_set}: {self.created} created, {self.updated} updated"
            return f"{done} ({self.notes()})" if self.format else done
        shown = "\n".join(
            f"  line {line}: {why}" for line, why in self.errors[:MAX_REPORTED_ERRORS]
        )
        more = len(self.errors) - MAX_REPORTED_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return f"{self.problem_set}: nothing imported, {len(self.errors)} bad lines:\n{shown}{tail}"


def jsonl_records(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, record) or (line number, error message) for each non-blank line."""
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield (
                number,
                f"line is {len(raw) / 2**20:.0f} MB, over the {MAX_LINE_BYTES >> 20} MB limit",
            )
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, f"invalid UTF-8 at byte {exc.start}"
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        yield number, record


def dataset_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Rows of a Hugging Face dataset saved with `save_to_disk`, or a Parquet/Arrow/CSV file."""
    import datasets

    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = datasets.concatenate_datasets(list(loaded.values()))
    else:
        builder = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}.get(path.suffix)
        if builder is None:
            raise ValueError(f"{path}: expected .jsonl, .parquet, .arrow, .csv or a dataset folder")
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
    yield from enumerate(loaded, start=1)


def file_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    if path.suffix == ".jsonl" or path.suffix == ".json":
        with path.open("rb") as fh:
            yield from jsonl_records(fh)
    else:
        yield from dataset_records(path)


def problem_set_import(
    *,
    name: str,
    records: Iterable[tuple[int, dict[str, Any] | str]],
    split: str = Split.TRAIN,
    default_domain: str | None = None,
    source: str = "",
    id_field: str | None = None,
    format: str | None = None,
) -> ImportReport:
    """Validate every record, then write all of them in one transaction, or none.

    The format is `format` (a name in `curation.problems.FORMATS`) or the one the first
    record's columns match; columns that match none refuse the file, naming the columns found
    and the formats known. Columns the format does not know are kept in the problems'
    metadata and listed in the report. The id is the record's own (`id`, `idx`,
    `question_number`...), or `id_field` when given ("line" numbers the records); a record
    without one gets its line number. Re-importing the same file updates the problems in place
    (matched on the id), so an import can be repeated.
    """
    report = ImportReport(problem_set=name)
    specs = []
    seen: dict[str, int] = {}
    unknown: set[str] = set()
    chosen: BenchmarkFormat | None = None
    if format:
        try:
            chosen = format_named(format)
        except ValueError as exc:
            report.errors.append((0, str(exc)))
            return report
    for number, record in records:
        if isinstance(record, str):
            report.errors.append((number, record))
            continue
        if not isinstance(record, dict):
            why = f"record: expected a JSON object, got {type(record).__name__}"
            report.errors.append((number, why))
            continue
        if contains_nul(record):  # valid JSON, but Postgres text cannot store it
            report.errors.append((number, "contains a NUL character (\\u0000)"))
            continue
        if chosen is None:
            try:
                chosen = detect_format(record)
            except UnknownFormatError as exc:
                report.errors.append((number, str(exc)))
                return report
        try:
            spec = map_record(record, format=chosen, default_domain=default_domain)
        except ProblemFormatError as exc:
            report.errors.append((number, str(exc)))
            continue
        unknown.update(chosen.unknown(record))
        if id_field == "line":
            spec.external_id = str(number)
        elif id_field:
            spec.external_id = str(record.get(id_field, ""))
        spec.external_id = spec.external_id or str(number)
        if spec.external_id in seen:
            why = f"id {spec.external_id!r} repeats line {seen[spec.external_id]}"
            report.errors.append(
                (number, f"{why} (choose a unique field with --id-field, or line)")
            )
            continue
        seen[spec.external_id] = number
        specs.append(spec)
    report.format = chosen.name if chosen else ""
    report.unknown_columns = sorted(unknown)
    if not specs and not report.errors:
        report.errors.append((0, "the file holds no problems"))
    if report.errors:
        return report

    with transaction.atomic():
        problem_set, _ = ProblemSet.objects.get_or_create(name=name, defaults={"source": source})
        existing = {p.external_id: p for p in problem_set.problems.all()}
        to_create, to_update = [], []
        for spec in specs:
            fields = {
                "domain": spec.domain,
                "split": split,
                "prompt": spec.prompt,
                "answer": spec.answer,
                "choices": spec.choices,
                "tests": spec.tests,
                "entry_point": spec.entry_point,
                "starter_code": spec.starter_code,
                "metadata": spec.metadata,
            }
            if problem := existing.get(spec.external_id):
                for key, value in fields.items():
                    setattr(problem, key, value)
                to_update.append(problem)
            else:
                to_create.append(
                    Problem(problem_set=problem_set, external_id=spec.external_id, **fields)
                )
        Problem.objects.bulk_create(to_create, batch_size=1000)
        Problem.objects.bulk_update(to_update, list(fields), batch_size=1000)
    report.created, report.updated = len(to_create), len(to_update)
    return report


def problem_set_import_upload(
    *,
    upload: Any,
    name: str,
    split: str = Split.TRAIN,
    default_domain: str | None = None,
    id_field: str | None = None,
    format: str | None = None,
) -> ImportReport:
    """Import an uploaded file (Django's UploadedFile) for the admin and the API.

    JSONL is read line by line from the upload; Parquet, Arrow and CSV go through a temporary
    file for `datasets`. A file that cannot be read at all is a one-error report, not an exception.
    """
    import tempfile

    suffix = Path(upload.name or "").suffix.lower()
    kwargs = {
        "name": name,
        "split": split,
        "default_domain": default_domain,
        "source": f"upload:{upload.name}",
        "id_field": id_field,
        "format": format,
    }
    if suffix in ("", ".jsonl", ".json", ".ndjson"):
        upload.seek(0)
        return problem_set_import(records=jsonl_records(upload), **kwargs)
    report = ImportReport(problem_set=name)
    if suffix not in (".parquet", ".arrow", ".csv"):
        report.errors.append(
            (0, f"unsupported file type {suffix!r}: use .jsonl, .parquet, .arrow or .csv")
        )
        return report
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        with path.open("wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        try:
            return problem_set_import(records=file_records(path), **kwargs)
        # A malformed file fails inside pyarrow or `datasets`, with whatever error they raise.
        except Exception as exc:
            report.errors.append((0, f"cannot read the file: {type(exc).__name__}: {exc}"[:500]))
            return report


def contains_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character, which Postgres text cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False

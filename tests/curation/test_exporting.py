import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from curation.datasets import dataset_version_freeze
from curation.exporting import Export
from curation.models import Candidate, Dataset, DatasetKind, ReviewStatus
from curation.prompting import SYSTEM_PROMPT
from curation.trajectory import output_block
from tests.factories import RoundFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."


def _text(n: int) -> str:
    return (
        f"<think>\nLet me add {n} and {n}.\n{HINT}```python\nprint({n} + {n})\n```\n"
        f"{output_block(str(2 * n))}So it is {2 * n}. ünïcødé ✓\n</think>\n\n"
        f"The answer is \\boxed{{{2 * n}}}."
    )


@pytest.fixture
def version():
    """A frozen D_seed version of three approved trajectories (one of them not scored)."""
    round_ = RoundFactory()
    for n, correct in ((1, True), (2, True), (3, None)):
        TrajectoryFactory(
            round=round_,
            text=_text(n),
            hints=[HINT],
            is_correct=correct,
            candidate=Candidate.SEED,
            review_status=ReviewStatus.APPROVED,
        )
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    return dataset_version_freeze(dataset=dataset)


def _jsonl(export: Export) -> list[dict]:
    return [json.loads(line) for line in b"".join(export.chunks()).splitlines()]


def test_messages_rows_are_trl_conversations_with_ids_score_and_masks(version):
    rows = _jsonl(Export(version, "messages"))
    items = list(version.items.order_by("id"))
    assert len(rows) == len(items) == version.size == 3
    for n, (row, item) in enumerate(zip(rows, items, strict=True), start=1):
        assert row["messages"] == [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": item.prompt},
            {"role": "assistant", "content": item.text},
        ]
        assert row["mask_spans"] == item.mask_spans
        assert row["problem_id"] == item.problem_id
        assert row["trajectory_id"] == item.trajectory_id
        assert row["dataset_version"] == "d-seed/v1"
        text = row["messages"][2]["content"]
        assert text == _text(n)
        assert [text[a:b] for a, b in row["mask_spans"]] == [HINT, output_block(str(2 * n))]
    assert [row["score"] for row in rows] == [1.0, 1.0, None]


def test_prompt_completion_rows_split_the_same_conversation(version):
    messages = _jsonl(Export(version, "messages"))
    rows = _jsonl(Export(version, "prompt_completion"))
    for row, conversation in zip(rows, messages, strict=True):
        assert row["prompt"] + row["completion"] == conversation["messages"]
        assert row["mask_spans"] == conversation["mask_spans"]


def test_parquet_holds_the_same_rows_in_row_groups(version, monkeypatch):
    monkeypatch.setattr("curation.exporting.PARQUET_ROW_GROUP", 2)
    table = pq.read_table(io.BytesIO(b"".join(Export(version, "parquet").chunks())))
    assert (
        pq.ParquetFile(
            io.BytesIO(b"".join(Export(version, "parquet").chunks()))
        ).metadata.num_row_groups
        == 2
    )
    assert table.to_pylist() == _jsonl(Export(version, "messages"))


@pytest.mark.django_db(transaction=True)
def test_export_streams_over_a_server_side_cursor_without_hold(version, monkeypatch):
    # No test transaction around this one: the export must open its own, or Django would
    # declare the cursor WITH HOLD and Postgres would materialise the whole result first.
    monkeypatch.setattr("curation.exporting.CURSOR_ROWS", 1)
    monkeypatch.setattr("curation.exporting.CHUNK_BYTES", 1)
    chunks = Export(version, "messages").chunks()
    first = next(chunks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT is_holdable FROM pg_cursors")
        assert cursor.fetchall() == [(False,)]
    rest = list(chunks)
    assert (
        len(rest) == 2 and json.loads(first)["trajectory_id"] < json.loads(rest[0])["trajectory_id"]
    )
    assert connection.get_autocommit()  # the transaction ended with the stream


def test_the_etag_names_the_content_hash_and_the_format(version):
    assert Export(version, "messages").etag == f'"{version.content_hash}-messages"'
    assert Export(version, "parquet").etag != Export(version, "messages").etag
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        Export(version, "csv")


def test_command_writes_a_file_that_datasets_loads_with_the_same_texts_and_masks(version, tmp_path):
    import datasets

    path = tmp_path / "d-seed.jsonl"
    call_command("export_dataset", "d-seed", "--version", "1", "--output", str(path))
    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    items = list(version.items.order_by("id"))
    assert loaded["trajectory_id"] == [item.trajectory_id for item in items]
    assert [m[2]["content"] for m in loaded["messages"]] == [item.text for item in items]
    assert loaded["mask_spans"] == [item.mask_spans for item in items]
    assert not (tmp_path / "d-seed.jsonl.partial").exists()


def test_command_defaults_to_the_latest_version_on_stdout(version, capsysbinary):
    call_command("export_dataset", "d-seed", "--format", "prompt_completion")
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 3 and "completion" in json.loads(lines[0])


def test_command_names_an_unknown_version(version):
    with pytest.raises(CommandError, match="'d-seed' has no version 7"):
        call_command("export_dataset", "d-seed", "--version", "7")

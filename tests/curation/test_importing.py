"""The importer picks a file's published format from its columns, reports what it does not know,
and refuses a file whose columns match no format (nothing imported)."""

import json

import pytest
from django.core.management import CommandError, call_command

from curation.importing import jsonl_records, problem_set_import
from curation.models import Problem, ProblemSet
from tests.curation.test_problems import GPQA, HUMANEVAL, MATH500, MBPP

pytestmark = pytest.mark.django_db


def lines(*records) -> list[bytes]:
    return [json.dumps(record).encode() + b"\n" for record in records]


def test_a_published_file_is_read_in_its_format_and_unknown_columns_are_reported():
    extra = {**GPQA, "Question": "Another question?", "Annotator mood": "good"}
    report = problem_set_import(name="gpqa", records=jsonl_records(lines(GPQA, extra)))
    assert report.ok, report.summary()
    assert (report.format, report.unknown_columns) == ("gpqa", ["Annotator mood"])
    assert report.summary().endswith(
        "(format gpqa; columns not in the format, kept in metadata: ['Annotator mood'])"
    )
    kept = Problem.objects.get(prompt__startswith="Another question?")
    assert kept.metadata["Annotator mood"] == "good" and kept.domain == "science"
    assert len(kept.choices) == 4 and kept.answer in "ABCD"


def test_code_benchmarks_import_with_their_check_programs():
    report = problem_set_import(name="humaneval", records=jsonl_records(lines(HUMANEVAL)))
    assert report.ok and report.format == "humaneval"
    problem = Problem.objects.get(problem_set__name="humaneval")
    assert problem.external_id == "HumanEval/0" and problem.tests[0]["type"] == "check"
    report = problem_set_import(name="mbpp", records=jsonl_records(lines(MBPP)))
    assert report.ok and report.format == "mbpp"


def test_a_file_whose_columns_match_no_format_is_refused_with_columns_and_formats():
    report = problem_set_import(
        name="mystery", records=jsonl_records(lines({"text": "2+2?", "label": "4"}))
    )
    assert not report.ok and not ProblemSet.objects.filter(name="mystery").exists()
    [(line, why)] = report.errors
    assert line == 1
    assert why.startswith("columns ['label', 'text'] match no known format. Known formats: ")
    assert "gpqa (Idavidrein/gpqa (gpqa_diamond)) needs" in why
    assert "livecodebench (livecodebench/code_generation_lite) needs" in why


def test_an_explicit_format_checks_every_record_against_it():
    report = problem_set_import(
        name="he", records=jsonl_records(lines(MATH500)), format="humaneval"
    )
    assert not report.ok
    assert report.errors == [(1, "canonical_solution: missing: the humaneval format needs it")]
    unknown = problem_set_import(name="he", records=jsonl_records(lines(MATH500)), format="x")
    assert unknown.errors[0][1].startswith("unknown format 'x'; known: ['math500'")


def test_the_command_takes_a_format_and_refuses_unknown_columns(tmp_path):
    path = tmp_path / "math500.jsonl"
    path.write_bytes(b"".join(lines(MATH500)))
    call_command("import_problems", str(path), "--format", "math500", "--split", "test")
    assert Problem.objects.get(problem_set__name="math500").external_id == MATH500["unique_id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines({"text": "?"})))
    with pytest.raises(CommandError, match=r"columns \['text'\] match no known format"):
        call_command("import_problems", str(bad))

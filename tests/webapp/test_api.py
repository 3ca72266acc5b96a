import io
import json

import hypothesis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import schemathesis
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from curation import selectors
from curation.audit import audit_record
from curation.models import (
    AuditAction,
    AuditEvent,
    Candidate,
    ChunkStatus,
    Dataset,
    DatasetKind,
    Flag,
    Problem,
    ProblemSet,
    ReviewStatus,
    Round,
    RoundChunk,
    RoundKind,
    RunStatus,
    SFTJob,
    Trajectory,
)
from curation.review import trajectory_claim
from curation.roles import ANNOTATOR, CURATOR
from curation.trajectory import output_block
from tests.factories import (
    PolicyFactory,
    ProblemFactory,
    ProblemSetFactory,
    RoundFactory,
    TrajectoryFactory,
    UserFactory,
)
from webapp.wsgi import application

pytestmark = pytest.mark.django_db

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."
TEXT = (
    "<think>\nLet me add.\n"
    + HINT
    + "```python\nprint(2 + 2)\n```\n"
    + output_block("4")
    + "So it is 4.\n</think>\n\nThe answer is \\boxed{4}."
)


def _client(role: str | None) -> APIClient:
    """A client authenticated by token as a user in `role` (None: a user without a role)."""
    user = UserFactory()
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


@pytest.fixture
def curator() -> APIClient:
    return _client(CURATOR)


@pytest.fixture
def annotator() -> APIClient:
    return _client(ANNOTATOR)


@pytest.fixture
def nobody() -> APIClient:
    return _client(None)


@pytest.fixture
def frozen(curator):
    """A D_seed dataset with one frozen version of two approved hinted trajectories."""
    round_ = RoundFactory(kind=RoundKind.SEED)
    for correct in (True, False):
        TrajectoryFactory(
            round=round_,
            text=TEXT,
            hints=[HINT],
            is_correct=correct,
            candidate=Candidate.SEED,
            review_status=ReviewStatus.APPROVED,
        )
    Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    response = curator.post("/api/datasets/d-seed/versions/", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- Authentication and errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/problem-sets/",
        "/api/problems/",
        "/api/policies/",
        "/api/rounds/",
        "/api/trajectories/",
        "/api/datasets/",
        "/api/sft-jobs/",
        "/api/audit-events/",
        "/api/evaluations/",
    ],
)
def test_anonymous_requests_get_401_and_roleless_users_403(url, nobody):
    assert APIClient().get(url).status_code == 401
    assert APIClient(HTTP_AUTHORIZATION="Token not-a-token").get(url).status_code == 401
    assert nobody.get(url).status_code == 403


def test_session_authentication_serves_the_browser(annotator):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(annotator.user)
    assert client.get("/api/rounds/").status_code == 200
    # Unsafe methods under a session need the CSRF token.
    assert client.post("/api/datasets/", {"name": "x", "kind": "custom"}).status_code == 403


def test_unexpected_errors_are_a_json_500_without_a_traceback(annotator, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("curation.selectors.round_progress", boom)
    response = annotator.get(f"/api/rounds/{RoundFactory().pk}/progress/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert b"secret" not in response.content and b"Traceback" not in response.content


def test_the_schema_and_the_browsable_api_are_served(annotator):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/datasets/{dataset_name}/versions/{number}/export/" in paths
    page = annotator.get("/api/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"/api/rounds/" in page.content
    assert "script-src 'self'" in page["Content-Security-Policy"]


# --- Problem sets and problems --------------------------------------------------------------------


def _upload(lines: list, name: str = "set.jsonl") -> SimpleUploadedFile:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    return SimpleUploadedFile(name, body, content_type="application/jsonl")


def test_import_jsonl_creates_the_set(curator, annotator):
    lines = [
        {"id": "a", "problem": "1 + 1?", "answer": "2"},
        {"id": "b", "question": "Pick", "choices": ["x", "y"], "answer": 1},
    ]
    response = curator.post(
        "/api/problem-sets/import/", {"file": _upload(lines), "name": "tiny"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "problem_set": "tiny",
        "created": 2,
        "updated": 0,
        "errors": [],
        "format": "generic",
        "unknown_columns": [],
    }
    listed = annotator.get("/api/problem-sets/").json()["results"]
    assert listed[0]["name"] == "tiny" and listed[0]["problem_count"] == 2
    assert annotator.get("/api/problem-sets/tiny/").json()["problem_count"] == 2
    choice = annotator.get("/api/problems/", {"problem_set": "tiny", "domain": "science"})
    assert [p["external_id"] for p in choice.json()["results"]] == ["b"]
    assert choice.json()["results"][0]["answer"] == "B"


def test_a_bad_import_names_every_rejected_line_and_imports_nothing(curator):
    lines = [
        {"id": "a", "problem": "ok", "answer": "1"},
        b"{not json",
        {"id": "c", "answer": "3"},
        b"\xff\xfe bad utf-8",
        {"id": "e", "problem": 5, "answer": "3"},
        {"id": "f", "problem": "a NUL \u0000 here", "answer": "3"},
    ]
    response = curator.post(
        "/api/problem-sets/import/", {"file": _upload(lines), "name": "bad"}, format="multipart"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6]
    assert "invalid JSON" in errors[0]["error"] and "UTF-8" in errors[2]["error"]
    assert "NUL" in errors[4]["error"]
    assert not ProblemSet.objects.filter(name="bad").exists()
    assert Problem.objects.count() == 0


def test_an_import_names_its_format_and_refuses_columns_of_no_known_format(curator):
    row = {"ID": "2024-I-1", "Problem": "Find it.", "Solution": "…", "Answer": 204, "Source": "x"}
    response = curator.post(
        "/api/problem-sets/import/",
        {"file": _upload([row]), "name": "aime", "format": "aime-capitalised"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["format"], body["unknown_columns"]) == ("aime-capitalised", ["Source"])
    assert Problem.objects.get(problem_set__name="aime").metadata["Source"] == "x"

    odd = curator.post(
        "/api/problem-sets/import/",
        {"file": _upload([{"text": "?", "label": "4"}]), "name": "odd"},
        format="multipart",
    )
    assert odd.status_code == 400
    [error] = odd.json()["errors"]
    assert error["line"] == 1
    assert error["error"].startswith("columns ['label', 'text'] match no known format")
    assert "mbpp (google-research-datasets/mbpp (full)) needs" in error["error"]
    assert not ProblemSet.objects.filter(name="odd").exists()


def test_import_reads_parquet(curator, tmp_path):
    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "problem": ["2+2?", "3+3?"], "answer": ["4", "6"]}), buffer
    )
    upload = SimpleUploadedFile("set.parquet", buffer.getvalue())
    response = curator.post(
        "/api/problem-sets/import/", {"file": upload, "name": "pq"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert sorted(Problem.objects.values_list("external_id", flat=True)) == ["p1", "p2"]


def test_import_refuses_a_broken_parquet_file_and_missing_fields(curator):
    upload = SimpleUploadedFile("set.parquet", b"PAR1 not really")
    response = curator.post(
        "/api/problem-sets/import/", {"file": upload, "name": "pq"}, format="multipart"
    )
    assert response.status_code == 400
    assert "cannot read the file" in response.json()["errors"][0]["error"]
    response = curator.post("/api/problem-sets/import/", {"name": "x y"}, format="multipart")
    assert response.status_code == 400 and set(response.json()) == {"file", "name"}


def test_import_needs_the_add_problemset_permission(annotator):
    response = annotator.post(
        "/api/problem-sets/import/",
        {"file": _upload([{"problem": "a"}]), "name": "t"},
        format="multipart",
    )
    assert response.status_code == 403


def test_problem_filters_are_validated(annotator):
    ProblemFactory()
    response = annotator.get("/api/problems/", {"domain": "poetry"})
    assert response.status_code == 400 and "domain" in response.json()
    assert annotator.get("/api/problems/999999/").status_code == 404


# --- Rounds ----------------------------------------------------------------------------------


def _round_body(**overrides) -> dict:
    problem = ProblemFactory()
    return {
        "name": "seed-1",
        "kind": "seed",
        "policy": PolicyFactory().name,
        "problem_sets": [problem.problem_set.name],
        "samples_hinted": 1,
        "samples_plain": 2,
        "temperature": 0.6,
        "top_p": 0.95,
        "max_tokens": 512,
        "hint_config": {"max_hints": 2, "end_repeats": 1},
        "tool_config": {"max_calls": 4, "timeout_s": 5, "notebook": True},
        **overrides,
    }


def test_create_a_round_with_all_settings(curator):
    response = curator.post("/api/rounds/", _round_body(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft" and body["created_by"] == curator.user.username
    assert body["hint_config"]["max_hints"] == 2
    assert body["hint_config"]["conjunctions"] == ["Wait", "Alternatively"]  # defaults filled in
    assert body["tool_config"] == {"max_calls": 4, "timeout_s": 5.0, "notebook": True}
    round_ = Round.objects.get(name="seed-1")
    assert (round_.temperature, round_.top_p, round_.samples_plain) == (0.6, 0.95, 2)


def test_omitted_sampling_settings_take_the_kinds_defaults(curator):
    body = {
        "name": "rft-1",
        "kind": "rft",
        "policy": PolicyFactory().name,
        "problem_sets": [ProblemFactory().problem_set.name],
    }
    response = curator.post("/api/rounds/", body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["samples_hinted"], created["samples_plain"]) == (0, 16)
    assert (created["temperature"], created["top_p"]) == (0.6, 0.95)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"temperature": 5}, "temperature"),
        ({"policy": "no-such-policy"}, "policy"),
        ({"problem_sets": []}, "problem_sets"),
        ({"hint_config": {"hints": ["no-such-hint"]}}, "hint_config"),
        ({"hint_config": {"surprise": 1}}, "hint_config"),
        ({"tool_config": {"max_calls": -1}}, "tool_config"),
        ({"tool_config": {"network": True}}, "tool_config"),
        ({"tool_config": {"run_code": "sometimes"}}, "tool_config"),
        ({"kind": "party"}, "kind"),
        ({"samples_hinted": 0, "samples_plain": 0}, "samples_hinted"),
    ],
)
def test_bad_round_settings_are_a_400_naming_the_field(curator, overrides, field):
    response = curator.post("/api/rounds/", _round_body(**overrides), format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_strings_with_a_nul_character_are_a_400_not_a_database_error(curator):
    response = curator.post("/api/rounds/", _round_body(problem_sets=["a\u0000b"]), format="json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert curator.get("/api/problem-sets/a%00b/").status_code == 404


def test_annotators_see_rounds_but_cannot_create_or_launch_them(annotator):
    round_ = RoundFactory()
    assert annotator.get("/api/rounds/").json()["count"] == 1
    assert annotator.get(f"/api/rounds/{round_.pk}/").status_code == 200
    assert annotator.post("/api/rounds/", _round_body(), format="json").status_code == 403
    for verb in ("launch", "cancel", "rerun-failed", "select-candidates"):
        assert annotator.post(f"/api/rounds/{round_.pk}/{verb}/").status_code == 403


def test_launch_enqueues_chunks_after_commit_and_a_second_launch_is_409(
    curator, django_capture_on_commit_callbacks, settings
):
    settings.ROLLOUT_CHUNK_SIZE = 2
    round_ = RoundFactory(samples_hinted=1, samples_plain=1)
    problem_set = ProblemSetFactory()
    ProblemFactory.create_batch(3, problem_set=problem_set)
    round_.problem_sets.add(problem_set)
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post(f"/api/rounds/{round_.pk}/launch/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["total"] == 6
    assert len(callbacks) == 2  # one task per chunk, sent once the launch commits

    again = curator.post(f"/api/rounds/{round_.pk}/launch/")
    assert again.status_code == 409
    assert "already queued" in again.json()["detail"]


def test_launch_without_problems_is_409_and_unknown_round_404(curator):
    assert curator.post(f"/api/rounds/{RoundFactory().pk}/launch/").status_code == 409
    assert curator.post("/api/rounds/999999/launch/").status_code == 404


def test_progress_cancel_and_rerun_failed(curator, django_capture_on_commit_callbacks):
    round_ = RoundFactory(status=RunStatus.RUNNING, total=4)
    RoundChunk.objects.create(round=round_, index=0, status=ChunkStatus.DONE)
    RoundChunk.objects.create(round=round_, index=1, status=ChunkStatus.FAILED, error="OOM")
    TrajectoryFactory(round=round_, num_tokens=100)
    TrajectoryFactory(round=round_, num_tokens=50, error="engine died")
    progress = curator.get(f"/api/rounds/{round_.pk}/progress/").json()
    assert progress["done"] == 2 and progress["total"] == 4 and progress["fraction"] == 0.5
    assert progress["errors"] == 1 and progress["tokens"] == 150
    assert progress["chunks"] == {"total": 2, "pending": 0, "running": 0, "done": 1, "failed": 1}
    assert progress["chunk_errors"] == ["OOM"]

    assert curator.post(f"/api/rounds/{round_.pk}/cancel/").json()["status"] == "cancelled"
    with django_capture_on_commit_callbacks() as callbacks:
        rerun = curator.post(f"/api/rounds/{round_.pk}/rerun-failed/")
    assert rerun.status_code == 202 and rerun.json() == {"chunks": 1} and len(callbacks) == 1
    assert curator.get(f"/api/rounds/{round_.pk}/").json()["status"] == "queued"


def test_select_candidates_stores_the_funnel(curator):
    round_ = RoundFactory(kind=RoundKind.SEED)
    problem = ProblemFactory()
    TrajectoryFactory(round=round_, problem=problem, hinted=False, is_correct=False)
    TrajectoryFactory(
        round=round_,
        problem=problem,
        hinted=True,
        is_correct=True,
        num_tool_calls=1,
        text=TEXT,
        hints=[HINT],
    )
    body = curator.post(f"/api/rounds/{round_.pk}/select-candidates/").json()
    assert len(body["chosen"]) == 1 and body["funnel"][-1]["count"] == 1
    eval_round = RoundFactory(kind=RoundKind.EVAL)
    assert curator.post(f"/api/rounds/{eval_round.pk}/select-candidates/").status_code == 409


# --- Trajectories ----------------------------------------------------------------------------


def test_trajectory_list_filters(annotator):
    round_ = RoundFactory()
    right = TrajectoryFactory(round=round_, is_correct=True, candidate=Candidate.SEED)
    wrong = TrajectoryFactory(round=round_, is_correct=False, flag_count=2)
    Flag.objects.create(trajectory=wrong, kind="placeholder", message="...", start=0, end=3)
    unscored = TrajectoryFactory(round=round_)
    TrajectoryFactory()  # another round

    def ids(**params):
        response = annotator.get("/api/trajectories/", {"round": round_.pk, **params})
        assert response.status_code == 200, response.content
        return [t["id"] for t in response.json()["results"]]

    assert ids() == [right.pk, wrong.pk, unscored.pk]
    assert ids(is_correct="true") == [right.pk]
    assert ids(is_correct="null") == [unscored.pk]
    assert ids(candidate="d_seed") == [right.pk]
    assert ids(flag="placeholder") == [wrong.pk]
    assert ids(min_flags=1) == [wrong.pk]
    assert ids(hinted="true", review_status="pending") == [right.pk, wrong.pk, unscored.pk]
    assert ids(problem_set=right.problem.problem_set.name) == [right.pk]
    bad = annotator.get("/api/trajectories/", {"round": "first"})
    assert bad.status_code == 400 and list(bad.json()) == ["round"]


def test_the_api_and_the_queue_filter_candidates_alike(annotator):
    round_ = RoundFactory()
    for correct in (True, False, None):
        for candidate in (Candidate.SEED, Candidate.START):
            flagged = TrajectoryFactory(round=round_, is_correct=correct, candidate=candidate)
            Flag.objects.create(trajectory=flagged, kind="placeholder", message=".", start=0, end=1)
            TrajectoryFactory(round=round_, is_correct=correct, candidate=candidate)
    for api_word, queue_word in (("true", "yes"), ("false", "no"), ("null", "unknown")):
        params = {"candidate": "d_seed", "review_status": "pending", "is_correct": api_word}
        for flag in ("", "placeholder"):
            listed = annotator.get(
                "/api/trajectories/", {**params, "flag": flag} if flag else params
            )
            queue = selectors.queue_trajectories(
                filters=selectors.QueueFilters(candidate="d_seed", correct=queue_word, flag=flag)
            )
            assert sorted(t["id"] for t in listed.json()["results"]) == sorted(
                queue.values_list("id", flat=True)
            )


def test_trajectory_detail_has_segments_score_and_flags(annotator):
    trajectory = TrajectoryFactory(
        text=TEXT,
        hints=[HINT],
        is_correct=True,
        extracted_answer="4",
        score_details={"reason": "equal"},
    )
    Flag.objects.create(trajectory=trajectory, kind="repetition", message="loop", start=5, end=9)
    body = annotator.get(f"/api/trajectories/{trajectory.pk}/").json()
    segments = body["segments"]
    assert "".join(s["text"] for s in segments) == TEXT
    assert [s["kind"] for s in segments] == ["think", "hint", "code", "output", "think", "answer"]
    assert all(TEXT[s["start"] : s["end"]] == s["text"] for s in segments)
    assert body["score"] == {"correct": True, "answer": "4", "details": {"reason": "equal"}}
    assert body["flags"] == [
        {"kind": "repetition", "message": "loop", "segment_index": None, "start": 5, "end": 9}
    ]
    assert annotator.get("/api/trajectories/999999/").status_code == 404


def test_deciding_refuses_stale_outputs_and_others_claims_with_a_409(annotator):
    trajectory = TrajectoryFactory(text=TEXT, hints=[HINT], candidate=Candidate.SEED)
    url = f"/api/trajectories/{trajectory.pk}/decide/"
    # The cell changed after it ran, its output did not.
    Trajectory.objects.filter(pk=trajectory.pk).update(text=TEXT.replace("2 + 2", "2 * 3"))
    stale = annotator.post(url, {"decision": "approved", "base_version": 1}, format="json")
    assert stale.status_code == 409
    assert stale.json()["detail"].startswith("output is stale: re-run cell 1")
    no_reason = annotator.post(url, {"decision": "rejected", "base_version": 1}, format="json")
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.json()["reason"][0]

    trajectory_claim(trajectory=trajectory, user=UserFactory(username="bob"))
    body = {"decision": "rejected", "reason": "Wrong final answer", "base_version": 1}
    claimed = annotator.post(url, body, format="json")
    assert claimed.status_code == 409 and claimed.json()["detail"].startswith("claimed by bob")
    Trajectory.objects.filter(pk=trajectory.pk).update(claimed_by=None, claimed_until=None)
    rejected = annotator.post(url, body, format="json")
    assert rejected.status_code == 200
    assert (rejected.json()["review_status"], rejected.json()["version"]) == ("rejected", 2)
    assert annotator.post(url, body, format="json").status_code == 409  # version 1 is gone


# --- Datasets, versions, export --------------------------------------------------------------


def test_freeze_list_and_read_versions(curator, annotator, frozen):
    assert frozen["number"] == 1 and frozen["size"] == 2 and frozen["dataset"] == "d-seed"
    assert len(frozen["content_hash"]) == 64
    listed = annotator.get("/api/datasets/").json()["results"]
    assert listed == [
        {
            "name": "d-seed",
            "kind": "d_seed",
            "description": "",
            "guidelines": "",
            "created_at": listed[0]["created_at"],
            "latest_version": 1,
        }
    ]
    assert annotator.get("/api/datasets/d-seed/versions/").json()["count"] == 1
    assert annotator.get("/api/datasets/d-seed/versions/1/").json() == frozen
    again = curator.post("/api/datasets/d-seed/versions/", {}, format="json")
    assert again.status_code == 409 and "nothing changed" in again.json()["detail"]
    assert annotator.post("/api/datasets/d-seed/versions/", {}).status_code == 403


def test_unknown_datasets_and_versions_are_404(annotator, frozen):
    response = annotator.get("/api/datasets/d-seed/versions/9/")
    assert response.status_code == 404 and "no version 9" in response.json()["detail"]
    assert annotator.get("/api/datasets/d-seed/versions/9/export").status_code == 404
    assert annotator.get("/api/datasets/nope/versions/").status_code == 404
    assert annotator.get("/api/datasets/nope/").status_code == 404


def test_create_a_dataset(curator, annotator):
    body = {"name": "d-start", "kind": "d_start", "description": "RFT"}
    assert annotator.post("/api/datasets/", body, format="json").status_code == 403
    assert curator.post("/api/datasets/", body, format="json").status_code == 201
    again = curator.post("/api/datasets/", body, format="json")
    assert again.status_code == 400 and list(again.json()) == ["name"]


def test_freezing_an_empty_dataset_is_409(curator):
    Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    response = curator.post("/api/datasets/d-start/versions/", {}, format="json")
    assert response.status_code == 409 and "no approved" in response.json()["detail"]


def test_freezing_applies_the_selection_rules_to_the_rounds_given(curator):
    problem = ProblemFactory(prompt="What is 2 + 2?")
    rfts = [RoundFactory(kind=RoundKind.RFT) for _ in range(2)]
    for round_ in rfts:
        TrajectoryFactory(
            round=round_,
            problem=problem,
            text=TEXT,
            hints=[HINT],
            candidate=Candidate.START,
            review_status=ReviewStatus.APPROVED,
        )
    Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    url = "/api/datasets/d-start/versions/"
    pooled = curator.post(url, {"rounds": [r.pk for r in rfts]}, format="json")
    assert pooled.status_code == 409
    assert pooled.json()["detail"].startswith(
        f"d-start: 1 problem has more than one approved trajectory: #{problem.pk} 'What is 2 + 2?'"
    )
    evaluation = RoundFactory(kind=RoundKind.EVAL)
    wrong = curator.post(url, {"rounds": [evaluation.pk]}, format="json")
    assert wrong.status_code == 409 and wrong.json()["detail"] == (
        f"d-start: a D_START version takes rft rounds only, not {evaluation.name} (eval)"
    )
    latest = curator.post(url, {}, format="json")
    assert latest.status_code == 201 and latest.json()["size"] == 1
    version = Dataset.objects.get(name="d-start").versions.get()
    assert list(version.rules["rounds"]) == [rfts[1].name]
    (event,) = AuditEvent.objects.filter(action=AuditAction.DATASET_FROZEN)
    assert event.actor == curator.user and event.target_id == str(version.pk)


def test_diff_between_versions(curator, annotator, frozen):
    item_trajectory = Dataset.objects.get().versions.get().items.first().trajectory
    item_trajectory.text = TEXT.replace("Let me add.", "Let me add the two numbers.")
    item_trajectory.save()
    assert curator.post("/api/datasets/d-seed/versions/", {}, format="json").status_code == 201
    diff = annotator.get("/api/datasets/d-seed/versions/2/diff/", {"against": 1}).json()
    assert diff == {"old": 1, "new": 2, "added": [], "removed": [], "changed": [item_trajectory.pk]}
    missing = annotator.get("/api/datasets/d-seed/versions/2/diff/")
    assert missing.status_code == 400 and list(missing.json()) == ["against"]


def test_export_streams_jsonl_with_etag_and_row_count(annotator, frozen):
    url = "/api/datasets/d-seed/versions/1/export"
    response = annotator.get(url, {"format": "messages"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["ETag"] == f'"{frozen["content_hash"]}-messages"'
    assert response["X-Row-Count"] == "2"
    assert 'filename="d-seed-v1.messages.jsonl"' in response["Content-Disposition"]
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["messages"][2]["content"] for r in rows] == [TEXT, TEXT]
    assert all([TEXT[a:b] for a, b in r["mask_spans"]] == [HINT, output_block("4")] for r in rows)
    assert [r["score"] for r in rows] == [1.0, 0.0]
    assert {r["dataset_version"] for r in rows} == {"d-seed/v1"}

    cached = annotator.get(url, {"format": "messages"}, HTTP_IF_NONE_MATCH=response["ETag"])
    assert cached.status_code == 304
    assert annotator.get(url + "/").status_code == 200  # the trailing slash works too


def test_export_prompt_completion_and_parquet(annotator, frozen):
    url = "/api/datasets/d-seed/versions/1/export/"
    pc = annotator.get(url, {"format": "prompt_completion"})
    row = json.loads(b"".join(pc.streaming_content).splitlines()[0])
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"] == [{"role": "assistant", "content": TEXT}]
    parquet = annotator.get(url, {"format": "parquet"})
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.num_rows == 2 and table.column("messages")[0][2]["content"].as_py() == TEXT


def test_export_refuses_an_unknown_format_and_needs_a_permission(annotator, nobody, frozen):
    url = "/api/datasets/d-seed/versions/1/export"
    response = annotator.get(url, {"format": "csv"})
    assert response.status_code == 400 and list(response.json()) == ["format"]
    assert nobody.get(url).status_code == 403
    assert APIClient().get(url).status_code == 401


def test_export_with_a_token_over_a_real_server(live_server, annotator, frozen):
    import urllib.request

    request = urllib.request.Request(
        f"{live_server.url}/api/datasets/d-seed/versions/1/export?format=messages",
        headers={"Authorization": annotator._credentials["HTTP_AUTHORIZATION"]},
    )
    with urllib.request.urlopen(request) as response:
        lines = response.read().splitlines()
        assert response.headers["X-Row-Count"] == "2"
    assert [json.loads(line)["messages"][2]["content"] for line in lines] == [TEXT, TEXT]


# --- SFT jobs and policies -------------------------------------------------------------------


def _job_body(**overrides) -> dict:
    return {
        "dataset": "d-seed",
        "version": 1,
        "base_policy": PolicyFactory().name,
        "output_name": "start-0",
        "config": {"learning_rate": 1e-5, "num_train_epochs": 2},
        **overrides,
    }


def test_launch_an_sft_job_and_follow_it(curator, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post("/api/sft-jobs/", _job_body(), format="json")
    assert response.status_code == 201, response.content
    assert len(callbacks) == 1
    job = response.json()
    assert job["status"] == "queued" and job["dataset_version"] == "d-seed v1"
    assert job["config"] == {"learning_rate": 1e-5, "num_train_epochs": 2}
    SFTJob.objects.filter(pk=job["id"]).update(
        status=RunStatus.RUNNING,
        step=5,
        total_steps=10,
        history=[{"step": 1, "loss": 2.0, "lr": 1e-5}, {"step": 5, "loss": 1.0, "lr": 1e-5}],
    )
    status = curator.get(f"/api/sft-jobs/{job['id']}/").json()
    assert status["progress"] == 0.5
    metrics = curator.get(f"/api/sft-jobs/{job['id']}/metrics/").json()
    assert [p["loss"] for p in metrics["history"]] == [2.0, 1.0]
    assert curator.post(f"/api/sft-jobs/{job['id']}/cancel/").json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"version": 7}, "version"),
        ({"dataset": "nope"}, "version"),
        ({"base_policy": "nope"}, "base_policy"),
        ({"config": {"learning_rat": 1}}, "config"),
        ({"config": {"learning_rate": -1}}, "config"),
        ({"config": {"num_train_epochs": "many"}}, "config"),
        ({"config": {"output_dir": "/etc"}}, "config"),
        ({"output_name": ""}, "output_name"),
    ],
)
def test_bad_sft_jobs_are_a_400_naming_the_field(curator, frozen, overrides, field):
    response = curator.post("/api/sft-jobs/", _job_body(**overrides), format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_an_sft_job_whose_output_name_is_taken_is_409(curator, frozen):
    PolicyFactory(name="start-0")
    response = curator.post("/api/sft-jobs/", _job_body(), format="json")
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


def test_annotators_cannot_see_or_launch_sft_jobs_or_policies(annotator, frozen):
    assert annotator.get("/api/sft-jobs/").status_code == 403
    assert annotator.post("/api/sft-jobs/", _job_body(), format="json").status_code == 403
    assert annotator.get("/api/policies/").status_code == 403


def test_policies_show_the_job_that_made_them_and_their_parents(curator, frozen):
    base = PolicyFactory(name="qwq")
    start0 = PolicyFactory(name="start-0", parent=base)
    start = PolicyFactory(name="start", parent=start0)
    version = Dataset.objects.get().versions.get()
    job = SFTJob.objects.create(
        dataset_version=version, base_policy=start0, output_name="start", output_policy=start
    )
    body = curator.get(f"/api/policies/{start.pk}/").json()
    assert body["ancestors"] == ["start-0", "qwq"] and body["made_by"] == job.pk
    assert body["parent"] == "start-0"
    names = [p["name"] for p in curator.get("/api/policies/").json()["results"]]
    assert names[-3:] == ["qwq", "start-0", "start"]  # oldest first


def test_listing_trajectories_does_not_read_their_texts(annotator):
    TrajectoryFactory.create_batch(5)
    with CaptureQueriesContext(connection) as captured:
        assert annotator.get("/api/trajectories/").json()["count"] == 5
    (select,) = (
        q["sql"]
        for q in captured.captured_queries
        if 'FROM "curation_trajectory"' in q["sql"] and "COUNT" not in q["sql"]
    )
    assert '"curation_trajectory"."text"' not in select


# --- The OpenAPI schema, fuzzed ----------------------------------------------------------------

# Loaded once at collection from the WSGI app (no server, no database needed to build it).
# schemathesis's lazy `from_fixture` loader does not work with pytest 9 (it reads a removed
# private attribute), hence the module-level schema.
api_schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def fuzz_token(db):
    """A curator's token, some rows to find, and Django's per-request connection closing off:
    the WSGI app runs inside the test's transaction, as the test client does."""
    round_ = RoundFactory(kind=RoundKind.SEED)
    TrajectoryFactory(
        round=round_,
        text=TEXT,
        hints=[HINT],
        candidate=Candidate.SEED,
        review_status=ReviewStatus.APPROVED,
        is_correct=True,
    )
    Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield _client(CURATOR)._credentials["HTTP_AUTHORIZATION"]
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@api_schema.parametrize()
@hypothesis.settings(
    max_examples=8, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_the_api_conforms_to_its_schema_and_never_fails_with_a_500(case, fuzz_token):
    # Every check (no 500s; status codes, content types, headers and bodies as documented) but
    # two: a schema-valid request may still name a policy or a problem set that does not exist
    # (a 400 is right), and DRF accepts JSON values it can coerce ("5" for 5, 5 for "5").
    case.call_and_validate(
        # identity: the checks read bodies as sent, and schemathesis does not undo GZipMiddleware
        headers={"Authorization": fuzz_token, "Accept-Encoding": "identity"},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )


def test_register_a_policy(annotator, curator):
    body = {"name": "qwq-32b", "path": "Qwen/QwQ-32B"}
    assert annotator.post("/api/policies/", body, format="json").status_code == 403
    curator.user.user_permissions.add(Permission.objects.get(codename="add_policy"))
    created = curator.post("/api/policies/", body, format="json")
    assert created.status_code == 201 and created.json()["path"] == "Qwen/QwQ-32B"
    assert curator.post("/api/policies/", body, format="json").status_code == 201  # idempotent
    moved = curator.post("/api/policies/", {**body, "path": "/elsewhere"}, format="json")
    assert moved.status_code == 409 and "another path" in moved.json()["detail"]
    child = {"name": "start-0", "path": "/models/start-0", "parent": "nope"}
    assert list(curator.post("/api/policies/", child, format="json").json()) == ["parent"]


# --- The audit log ----------------------------------------------------------------------------


def test_api_actions_are_recorded_with_their_actor(curator):
    curator.user.user_permissions.add(Permission.objects.get(codename="add_policy"))
    curator.post("/api/policies/", {"name": "qwq", "path": "Qwen/QwQ-32B"}, format="json")
    round_ = RoundFactory(status=RunStatus.RUNNING)
    curator.post(f"/api/rounds/{round_.pk}/cancel/")
    events = AuditEvent.objects.order_by("id")
    assert [(e.action, e.actor) for e in events] == [
        (AuditAction.POLICY_REGISTERED, curator.user),
        (AuditAction.ROUND_CANCELLED, curator.user),
    ]


def test_audit_events_are_listed_for_curators_only_and_filtered(curator, annotator):
    old = audit_record(actor=curator.user, action=AuditAction.ROUND_LAUNCHED, target=RoundFactory())
    AuditEvent.objects.filter(pk=old.pk).update(created_at="2025-01-01T00:00:00Z")
    policy = PolicyFactory(name="qwq")
    audit_record(
        actor=None, action=AuditAction.POLICY_REGISTERED, target=policy, after={"name": "qwq"}
    )
    assert annotator.get("/api/audit-events/").status_code == 403
    listed = curator.get("/api/audit-events/").json()
    assert listed["count"] == 2 and listed["next"] is None
    newest = listed["results"][0]
    assert newest == {
        "id": newest["id"],
        "created_at": newest["created_at"],
        "actor": None,
        "action": "policy_registered",
        "target_type": "curation.policy",
        "target_id": str(policy.pk),
        "target_repr": "qwq",
        "before": None,
        "after": {"name": "qwq"},
    }
    launched = curator.get("/api/audit-events/", {"action": "round_launched"}).json()
    assert [e["actor"] for e in launched["results"]] == [curator.user.username]
    since = curator.get("/api/audit-events/", {"since": "2025-06-01T00:00:00Z"}).json()
    assert [e["action"] for e in since["results"]] == ["policy_registered"]
    bad = curator.get("/api/audit-events/", {"action": "nope", "since": "yesterday"})
    assert bad.status_code == 400 and sorted(bad.json()) == ["action", "since"]


# --- Evaluation ----------------------------------------------------------------------------------


def test_the_evaluation_table_as_json_and_csv(annotator):
    policy = PolicyFactory(name="START")
    problems = ProblemFactory.create_batch(2, problem_set=ProblemSetFactory(name="aime24"))
    for k in (0, 2):
        round_ = RoundFactory(
            kind=RoundKind.EVAL,
            policy=policy,
            samples_hinted=1,
            samples_plain=0,
            hint_config={"end_repeats": k},
        )
        for index, problem in enumerate(problems):
            TrajectoryFactory(
                round=round_,
                problem=problem,
                hinted=True,
                is_correct=index < k,
                num_tool_calls=k,
                num_tokens=50,
            )
    body = annotator.get("/api/evaluations/").json()
    assert body["columns"] == ["aime24"]
    assert [row["setting"]["end_repeats"] for row in body["rows"]] == [0, 2]
    cell = body["rows"][1]["cells"]["aime24"]
    assert (cell["correct"], cell["n"], cell["tool_rate"], cell["mean_calls"]) == (2, 2, 1.0, 2.0)
    assert 0 < cell["ci_low"] < cell["accuracy"] == cell["ci_high"] == 1.0
    [series] = body["scaling"]
    assert series["label"] == "START on aime24"
    assert [p["end_repeats"] for p in series["points"]] == [0, 2]

    csv_body = annotator.get("/api/evaluations/", {"format": "csv"})
    assert csv_body["Content-Type"].startswith("text/csv")
    assert csv_body.content.decode().splitlines()[0].startswith("policy,hinted,tools,samples")

    assert annotator.get("/api/evaluations/", {"policy": "nobody"}).status_code == 400
    other = annotator.get("/api/evaluations/", {"problem_set": ProblemSetFactory().name})
    assert other.json() == {"columns": [], "rows": [], "scaling": []}


def test_launch_an_eval_sweep_over_the_api(curator, annotator, django_capture_on_commit_callbacks):
    problem_set = ProblemSetFactory(name="held-out")
    ProblemFactory.create_batch(2, problem_set=problem_set)
    body = {
        "name": "tts",
        "policy": PolicyFactory(name="START").name,
        "problem_sets": ["held-out"],
        "end_repeats": [0, 1, 2],
        "temperature": 0.6,
    }
    assert annotator.post("/api/evaluations/sweeps/", body, format="json").status_code == 403
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post("/api/evaluations/sweeps/", body, format="json")
    assert response.status_code == 201, response.content
    rounds = response.json()
    assert [r["name"] for r in rounds] == ["tts-end0", "tts-end1", "tts-end2"]
    assert {(r["kind"], r["status"], r["temperature"]) for r in rounds} == {("eval", "queued", 0.6)}
    assert [r["hint_config"]["end_repeats"] for r in rounds] == [0, 1, 2]
    assert len(callbacks) == 3
    again = curator.post("/api/evaluations/sweeps/", body, format="json")
    assert again.status_code == 409 and "tts-end0" in again.json()["detail"]


@pytest.mark.parametrize(
    ("missing", "words"),
    [("policy", "needs a policy"), ("problem_sets", "needs at least one problem set")],
)
def test_a_sweep_without_a_policy_or_problem_set_is_a_400_naming_it(curator, missing, words):
    body = {
        "name": "tts",
        "policy": PolicyFactory().name,
        "problem_sets": [ProblemFactory().problem_set.name],
    }
    del body[missing]
    response = curator.post("/api/evaluations/sweeps/", body, format="json")
    assert response.status_code == 400
    assert words in response.json()[missing][0]
    assert not Round.objects.exists()

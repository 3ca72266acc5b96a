import csv
import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from curation.admin import loss_curve
from curation.audit import audit_record
from curation.datasets import dataset_version_freeze
from curation.models import (
    AuditAction,
    AuditEvent,
    Candidate,
    ChunkStatus,
    Dataset,
    DatasetKind,
    HintTemplate,
    Problem,
    ProblemSet,
    ReviewStatus,
    Round,
    RoundChunk,
    RoundKind,
    RunStatus,
    SFTJob,
)
from curation.roles import ANNOTATOR, CURATOR
from curation.trajectory import output_block
from tests.factories import (
    PolicyFactory,
    ProblemFactory,
    ProblemSetFactory,
    RoundFactory,
    TrajectoryFactory,
    UserFactory,
    eval_round,
)

pytestmark = pytest.mark.django_db

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."
TEXT = (
    "<think>\nLet me add.\n"
    + HINT
    + "```python\nprint(2 + 2)\n```\n"
    + output_block("4")
    + "So it is 4.\n</think>\n\nThe answer is \\boxed{4}."
)
# A <script> without src, or a style attribute: what the enforced CSP would block.
INLINE = re.compile(rb"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>|\sstyle=\"")


def _staff(role: str) -> Client:
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def curator() -> Client:
    return _staff(CURATOR)


@pytest.fixture
def annotator() -> Client:
    return _staff(ANNOTATOR)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- Problem import ----------------------------------------------------------------------------


def test_import_a_jsonl_file_from_the_admin(curator):
    page = curator.get("/admin/curation/problemset/")
    assert b"/admin/curation/problemset/import/" in page.content
    body = (
        b'{"id": "a", "problem": "1 + 1?", "answer": "2"}\n'
        b'{"id": "b", "problem": "2 + 2?", "answer": 4}\n'
    )
    response = curator.post(
        "/admin/curation/problemset/import/",
        {"file": SimpleUploadedFile("arith.jsonl", body), "name": "arith", "split": "train"},
        follow=True,
    )
    problem_set = ProblemSet.objects.get(name="arith")
    assert response.redirect_chain[-1][0].endswith(f"?problem_set__id__exact={problem_set.pk}")
    assert "arith: 2 problems created, 0 updated (format generic)." in _messages(response)
    assert sorted(problem_set.problems.values_list("answer", flat=True)) == ["2", "4"]


def test_a_bad_file_imports_nothing_and_lists_the_rejected_lines(curator):
    body = b'{"id": "a", "problem": "ok", "answer": "1"}\n{oops\n{"id": "c"}\n' + b"\xff\n"
    response = curator.post(
        "/admin/curation/problemset/import/",
        {"file": SimpleUploadedFile("bad.jsonl", body), "name": "bad", "split": "train"},
    )
    assert response.status_code == 200
    report = response.content.decode()
    assert "Nothing imported: 3 rejected lines" in report
    assert [line for line, _ in response.context["errors"]] == [2, 3, 4]
    assert not ProblemSet.objects.filter(name="bad").exists() and not Problem.objects.exists()


def test_import_a_parquet_file_from_the_admin(curator):
    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"question": ["Pick one"], "choices": [["x", "y", "z"]], "answer": [2]}), buffer
    )
    response = curator.post(
        "/admin/curation/problemset/import/",
        {
            "file": SimpleUploadedFile("mc.parquet", buffer.getvalue()),
            "name": "mc",
            "split": "test",
            "domain": "science",
        },
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    problem = Problem.objects.get(problem_set__name="mc")
    assert (problem.answer, problem.split, problem.choices) == ("C", "test", ["x", "y", "z"])


def test_a_file_of_no_known_format_is_refused_with_its_columns_and_the_formats(curator):
    body = b'{"text": "2 + 2?", "label": "4"}\n'
    response = curator.post(
        "/admin/curation/problemset/import/",
        {"file": SimpleUploadedFile("odd.jsonl", body), "name": "odd", "split": "test"},
    )
    assert response.status_code == 200 and not ProblemSet.objects.filter(name="odd").exists()
    [(line, why)] = response.context["errors"]
    assert line == 1 and why.startswith("columns ['label', 'text'] match no known format")
    assert "humaneval (openai/openai_humaneval) needs" in response.content.decode()


def test_a_benchmark_imported_from_the_admin_names_its_format_and_unknown_columns(curator):
    row = {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given "
        "character from the string.",
        "code": "def remove_Occ(s,ch): \r\n    return s ",
        "test_list": ['assert remove_Occ("hello","l") == "heo"'],
        "test_setup_code": "",
        "challenge_test_list": [],
        "reviewer": "someone",
    }
    response = curator.post(
        "/admin/curation/problemset/import/",
        {
            "file": SimpleUploadedFile("mbpp.jsonl", json.dumps(row).encode()),
            "name": "mbpp",
            "split": "test",
            "format": "mbpp",
        },
        follow=True,
    )
    assert (
        "mbpp: 1 problems created, 0 updated (format mbpp; columns not in the format, kept in "
        "metadata: ['reviewer'])." in _messages(response)
    )


def test_annotators_cannot_import(annotator):
    assert annotator.get("/admin/curation/problemset/import/").status_code == 403


# --- Rounds -----------------------------------------------------------------------------------


def _round_form(**overrides) -> dict:
    problem_set = ProblemSetFactory()
    ProblemFactory.create_batch(3, problem_set=problem_set)
    return {
        "name": "seed-admin",
        "kind": "seed",
        "policy": PolicyFactory().pk,
        "problem_sets": [problem_set.pk],
        "split": "",
        "samples_hinted": 2,
        "samples_plain": 1,
        "temperature": 0.6,
        "top_p": 0.95,
        "max_tokens": 1024,
        "hints": ["math_python_check", "math_python_verify"],
        "conjunctions": "Wait, Hmm",
        "conjunction_probability": 0.25,
        "max_hints": 2,
        "end_of_thinking": "on",
        "end_repeats": 2,
        "max_tool_calls": 4,
        "timeout_s": 5,
        "memory_mb": 512,
        "notebook": "on",
        **overrides,
    }


@pytest.fixture
def hint_names():
    from curation.hints import HINTS

    return [h.name for h in HINTS if h.domain == "math"][:2]


def test_create_a_round_with_all_its_settings(curator, hint_names):
    response = curator.post("/admin/curation/round/add/", _round_form(hints=hint_names))
    assert response.status_code == 302, response.context["adminform"].form.errors
    round_ = Round.objects.get(name="seed-admin")
    assert round_.created_by == curator.user and round_.status == RunStatus.DRAFT
    assert (round_.samples_hinted, round_.temperature, round_.top_p) == (2, 0.6, 0.95)
    assert round_.hint_config["hints"] == hint_names
    assert round_.hint_config["conjunctions"] == ["Wait", "Hmm"]
    assert round_.hint_config["end_repeats"] == 2 and round_.hint_config["max_tool_calls"] == 4
    assert round_.tool_config == {
        "max_calls": 4,
        "timeout_s": 5.0,
        "memory_mb": 512,
        "notebook": True,
        "run_code": "all",  # the form's default: every sample runs its code
    }
    # The change form reads the stored configs back into its fields.
    form = curator.get(f"/admin/curation/round/{round_.pk}/change/").context["adminform"].form
    assert form["conjunctions"].initial == "Wait, Hmm" and form["memory_mb"].initial == 512


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hints": []}, "hints"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"conjunction_probability": 2}, "conjunction_probability"),
    ],
)
def test_bad_round_settings_are_form_errors(curator, hint_names, overrides, field):
    form = _round_form(**{"hints": hint_names, **overrides})
    response = curator.post("/admin/curation/round/add/", form)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Round.objects.exists()


def test_launch_action_enqueues_chunks_after_commit(
    curator, hint_names, settings, django_capture_on_commit_callbacks
):
    settings.ROLLOUT_CHUNK_SIZE = 2
    curator.post("/admin/curation/round/add/", _round_form(hints=hint_names))
    round_ = Round.objects.get()
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post(
            "/admin/curation/round/",
            {"action": "launch_rounds", "_selected_action": [round_.pk]},
            follow=True,
        )
    assert len(callbacks) == 2  # 3 problems in chunks of 2
    assert "seed-admin: launched, 9 trajectories planned." in _messages(response)
    round_.refresh_from_db()
    assert round_.status == RunStatus.QUEUED and round_.chunks.count() == 2

    again = curator.post(f"/admin/curation/round/{round_.pk}/launch/", follow=True)
    assert "round 'seed-admin' is already queued" in _messages(again)


def test_annotators_cannot_launch(annotator):
    round_ = RoundFactory()
    assert annotator.post(f"/admin/curation/round/{round_.pk}/launch/").status_code == 403
    changelist = annotator.get("/admin/curation/round/")
    assert b"launch_rounds" not in changelist.content


def test_progress_page_polls_while_the_round_runs(curator):
    round_ = RoundFactory(status=RunStatus.RUNNING, total=4)
    TrajectoryFactory(round=round_, num_tokens=300)
    TrajectoryFactory(round=round_, num_tokens=100, error="engine died")
    RoundChunk.objects.create(round=round_, index=0, status=ChunkStatus.FAILED, error="OOM")
    url = f"/admin/curation/round/{round_.pk}/progress/"

    page = curator.get(url)
    html = page.content.decode()
    assert '<script src="/static/ui/htmx.min.js" defer></script>' in html
    assert f'hx-get="{url}"' in html and 'hx-trigger="every 3s"' in html
    assert '<progress id="round-bar" max="4" value="2">' in html
    assert not INLINE.search(page.content)

    partial = curator.get(url, HTTP_HX_REQUEST="true")
    fragment = partial.content.decode()
    assert fragment.lstrip().startswith('<div id="round-progress"')
    assert "<html" not in fragment and "2 / 4" in fragment and "OOM" in fragment
    assert partial["Vary"] and "HX-Request" in partial["Vary"]
    assert re.search(r'id="round-errors">1<', fragment)

    Round.objects.filter(pk=round_.pk).update(status=RunStatus.DONE)
    done = curator.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-get" not in done  # polling stops once the round ends


def test_cancel_and_rerun_from_the_progress_page(curator, django_capture_on_commit_callbacks):
    round_ = RoundFactory(status=RunStatus.RUNNING)
    RoundChunk.objects.create(round=round_, index=0, status=ChunkStatus.FAILED, error="x")
    curator.post(f"/admin/curation/round/{round_.pk}/cancel/")
    round_.refresh_from_db()
    assert round_.status == RunStatus.CANCELLED
    page = curator.get(f"/admin/curation/round/{round_.pk}/progress/").content.decode()
    assert "Re-run failed chunks" in page and "Launch" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post(f"/admin/curation/round/{round_.pk}/rerun/", follow=True)
    assert len(callbacks) == 1
    assert f"{round_.name}: 1 unfinished chunks enqueued again." in _messages(response)


def test_a_running_round_cannot_be_edited(curator):
    round_ = RoundFactory(status=RunStatus.RUNNING)
    form = curator.get(f"/admin/curation/round/{round_.pk}/change/").context["adminform"]
    assert "temperature" in form.readonly_fields and not form.form.fields


# --- Datasets ---------------------------------------------------------------------------------


@pytest.fixture
def seed_round():
    round_ = RoundFactory(kind=RoundKind.SEED, status=RunStatus.DONE)
    for _ in range(2):
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
    return round_


def test_select_candidates_freeze_and_compare_versions(curator, seed_round):
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    curate = f"/admin/curation/dataset/{dataset.pk}/curate/"
    response = curator.post(
        f"/admin/curation/dataset/{dataset.pk}/select/{seed_round.pk}/", follow=True
    )
    assert f"{seed_round.name}: 2 candidates proposed." in _messages(response)
    page = response.content.decode()
    assert "Candidates: 2" in page and "candidates (one per problem): <strong>2</strong>" in page
    assert not INLINE.search(response.content)

    refused = curator.post(f"/admin/curation/dataset/{dataset.pk}/freeze/", follow=True)
    assert "d-seed: no approved trajectories to freeze" in _messages(refused)

    candidates = seed_round.trajectories.filter(candidate=Candidate.SEED)
    candidates.update(review_status=ReviewStatus.APPROVED)
    frozen = curator.post(f"/admin/curation/dataset/{dataset.pk}/freeze/", follow=True)
    assert any(m.startswith("Froze d-seed v1: 2 items") for m in _messages(frozen))
    assert b"/api/datasets/d-seed/versions/1/export?format=messages" in frozen.content

    dropped = candidates.first()
    dropped.review_status = ReviewStatus.REJECTED
    dropped.save()
    curator.post(f"/admin/curation/dataset/{dataset.pk}/freeze/")
    compared = curator.get(curate, {"old": 1, "new": 2})
    assert compared.context["diff"]["removed"] == [dropped.pk]
    assert f'id="diff-removed"><a href="/t/{dropped.pk}/">#{dropped.pk}</a>' in (
        compared.content.decode()
    )


def test_annotators_see_datasets_but_cannot_freeze(annotator, seed_round):
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    page = annotator.get(f"/admin/curation/dataset/{dataset.pk}/curate/")
    assert page.status_code == 200 and b"Freeze a new version" not in page.content
    assert annotator.post(f"/admin/curation/dataset/{dataset.pk}/freeze/").status_code == 403


def test_versions_are_read_only(curator, seed_round):
    seed_round.trajectories.filter(hinted=True).update(
        candidate=Candidate.SEED, review_status=ReviewStatus.APPROVED
    )
    version = dataset_version_freeze(dataset=Dataset.objects.create(name="d", kind="d_seed"))
    assert curator.get("/admin/curation/datasetversion/add/").status_code == 403
    change = curator.post(f"/admin/curation/datasetversion/{version.pk}/change/", {"size": 0})
    assert change.status_code == 403
    version.refresh_from_db()
    assert version.size == 2


def test_freeze_takes_the_picked_rounds_and_refuses_two_trajectories_for_a_problem(curator):
    problem = ProblemFactory(prompt="What is 2 + 2?")
    first, second = (RoundFactory(kind=RoundKind.RFT) for _ in range(2))
    for round_ in (first, second):
        TrajectoryFactory(
            round=round_,
            problem=problem,
            text=TEXT,
            hints=[HINT],
            candidate=Candidate.START,
            review_status=ReviewStatus.APPROVED,
        )
    RoundFactory(kind=RoundKind.SEED)  # not a round a D_START version draws from
    dataset = Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    page = curator.get(f"/admin/curation/dataset/{dataset.pk}/curate/")
    picker = page.context["freeze"]
    assert list(picker.fields["rounds"].queryset) == [second, first]
    assert picker["rounds"].initial == [second]  # the latest, checked
    assert re.search(rf'value="{second.pk}"[^>]*checked', page.content.decode())
    assert not INLINE.search(page.content)

    freeze = f"/admin/curation/dataset/{dataset.pk}/freeze/"
    refused = curator.post(freeze, {"rounds": [first.pk, second.pk]}, follow=True)
    (message,) = _messages(refused)
    assert message.startswith(
        f"d-start: 1 problem has more than one approved trajectory: #{problem.pk} "
        "'What is 2 + 2?' (trajectories"
    )
    assert message.endswith("reject the extras first")
    assert not dataset.versions.exists()

    frozen = curator.post(freeze, {"rounds": [second.pk]}, follow=True)
    assert any(m.startswith("Froze d-start v1: 1 items") for m in _messages(frozen))
    assert list(dataset.versions.get().rules["rounds"]) == [second.name]


# --- SFT jobs and policies --------------------------------------------------------------------


@pytest.fixture
def version(seed_round):
    seed_round.trajectories.filter(hinted=True).update(
        candidate=Candidate.SEED, review_status=ReviewStatus.APPROVED
    )
    return dataset_version_freeze(dataset=Dataset.objects.create(name="d-seed", kind="d_seed"))


def _job_form(version, **overrides) -> dict:
    return {
        "dataset_version": version.pk,
        "base_policy": PolicyFactory(name="qwq").pk,
        "output_name": "start-0",
        "learning_rate": 1e-5,
        "num_train_epochs": 2,
        "max_steps": -1,
        "max_length": 4096,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 4,
        "warmup_ratio": 0.03,
        "packing": "on",
        "seed": 1,
        "extra_config": '{"lr_scheduler_type": "linear"}',
        **overrides,
    }


def test_launch_an_sft_job_and_watch_its_loss(curator, version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post("/admin/curation/sftjob/add/", _job_form(version))
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = SFTJob.objects.get()
    assert len(callbacks) == 1 and job.status == RunStatus.QUEUED
    assert job.created_by == curator.user
    assert job.config["gradient_accumulation_steps"] == 4
    assert job.config["lr_scheduler_type"] == "linear" and job.config["packing"] is True
    assert response["Location"] == f"/admin/curation/sftjob/{job.pk}/progress/"

    SFTJob.objects.filter(pk=job.pk).update(
        status=RunStatus.RUNNING,
        step=3,
        total_steps=6,
        metrics={"loss": 1.5, "learning_rate": 1e-5, "tokens_per_second": 900.0, "eta_s": 12},
        history=[{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 1.5}],
    )
    page = curator.get(f"/admin/curation/sftjob/{job.pk}/progress/")
    html = page.content.decode()
    assert "<polyline points=" in html and 'hx-trigger="every 3s"' in html
    assert '<progress max="6" value="3">' in html and "Cancel job" in html
    assert not INLINE.search(page.content)
    partial = curator.get(f"/admin/curation/sftjob/{job.pk}/progress/", HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<div id="job-status"')

    curator.post(f"/admin/curation/sftjob/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == RunStatus.CANCELLED


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"learning_rate": -1}, "learning_rate"),
        ({"output_name": "qwq"}, "output_name"),
        ({"extra_config": '{"no_such_key": 1}'}, "__all__"),
        ({"extra_config": '{"output_dir": "/tmp"}'}, "extra_config"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
    ],
)
def test_bad_sft_jobs_are_form_errors(curator, version, overrides, field):
    response = curator.post("/admin/curation/sftjob/add/", _job_form(version, **overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not SFTJob.objects.exists()


def test_loss_curve_scales_points_into_the_box():
    curve = loss_curve(
        [{"step": 0, "loss": 2.0}, {"step": 5, "loss": None}, {"step": 10, "loss": 1.0}],
        width=120,
        height=60,
    )
    assert curve["points"] == "10.0,10.0 110.0,50.0"
    assert (curve["low"], curve["high"], curve["last_loss"]) == (1.0, 2.0, 1.0)
    assert loss_curve([]) is None


def test_policy_page_shows_the_job_that_made_it_and_its_parents(version):
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    base = PolicyFactory(name="qwq-32b")
    start0 = PolicyFactory(name="start-0", parent=base)
    job = SFTJob.objects.create(
        dataset_version=version, base_policy=base, output_name="start-0", output_policy=start0
    )
    page = client.get(f"/admin/curation/policy/{start0.pk}/change/").content.decode()
    assert "start-0 ← qwq-32b" in page
    assert f'<a href="/admin/curation/sftjob/{job.pk}/change/">SFT job {job.pk}</a>' in page


# --- The audit log ----------------------------------------------------------------------------


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(client.user)
    return client


def test_admin_actions_are_recorded_with_their_actor(curator):
    round_ = RoundFactory(status=RunStatus.RUNNING)
    curator.post(f"/admin/curation/round/{round_.pk}/cancel/")
    (event,) = AuditEvent.objects.all()
    assert (event.action, event.actor, event.target_id) == (
        AuditAction.ROUND_CANCELLED,
        curator.user,
        str(round_.pk),
    )


def test_hint_template_edits_in_the_admin_are_recorded(curator, superuser):
    template = HintTemplate.objects.get(name="general")
    form = {
        "name": template.name,
        "domain": template.domain,
        "text": "Let me test it.\n```python\n",
    }
    response = curator.post(f"/admin/curation/hinttemplate/{template.pk}/change/", form)
    assert response.status_code == 302
    (edited,) = AuditEvent.objects.all()
    assert (edited.action, edited.actor, edited.target_repr) == (
        AuditAction.HINT_EDITED,
        curator.user,
        "general",
    )
    assert edited.before["text"] == template.text and edited.after["enabled"] is False

    superuser.post(f"/admin/curation/hinttemplate/{template.pk}/delete/", {"post": "yes"})
    deleted = AuditEvent.objects.first()
    assert (deleted.actor, deleted.after) == (superuser.user, None)
    assert not HintTemplate.objects.filter(pk=template.pk).exists()


def test_a_users_group_change_in_the_admin_is_one_event(superuser):
    user = UserFactory(username="ann", is_staff=True)
    curators = Group.objects.get(name=CURATOR)
    form = {
        "username": "ann",
        "is_active": "on",
        "is_staff": "on",
        "groups": [curators.pk],
        "date_joined_0": "2025-03-01",
        "date_joined_1": "12:00:00",
    }
    response = superuser.post(f"/admin/auth/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    (event,) = AuditEvent.objects.all()
    assert (event.action, event.actor, event.target_repr) == (
        AuditAction.ROLE_CHANGED,
        superuser.user,
        "ann",
    )
    assert (event.before["groups"], event.after["groups"]) == ([], [CURATOR])

    superuser.post(f"/admin/auth/user/{user.pk}/change/", form)  # saved again, unchanged
    assert AuditEvent.objects.count() == 1


def test_creating_an_api_token_in_the_admin_is_recorded_without_its_key(superuser):
    user = UserFactory(username="trainer")
    response = superuser.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk})
    assert response.status_code == 302
    key = Token.objects.get(user=user).key
    (event,) = AuditEvent.objects.all()
    assert (event.action, event.actor, event.target_type, event.target_id) == (
        AuditAction.EXPORT_TOKEN_CREATED,
        superuser.user,
        "auth.user",
        str(user.pk),
    )
    assert event.after == {"user": "trainer"}
    assert key not in str(AuditEvent.objects.values().get())


def test_the_audit_log_page_lists_and_filters_and_is_read_only(curator, annotator):
    policy = PolicyFactory(name="qwq")
    audit_record(actor=curator.user, action=AuditAction.POLICY_REGISTERED, target=policy)
    audit_record(actor=None, action=AuditAction.ROUND_LAUNCHED, target=RoundFactory(name="rft-1"))
    page = curator.get("/admin/curation/auditevent/")
    assert page.status_code == 200 and page.context["cl"].result_count == 2
    assert not INLINE.search(page.content)
    launched = curator.get("/admin/curation/auditevent/", {"action__exact": "round_launched"})
    assert [e.target_repr for e in launched.context["cl"].result_list] == ["rft-1"]
    by_actor = curator.get("/admin/curation/auditevent/", {"actor__id__exact": curator.user.pk})
    assert [e.target_repr for e in by_actor.context["cl"].result_list] == ["qwq"]
    found = curator.get("/admin/curation/auditevent/", {"q": "rft"})
    assert found.context["cl"].result_count == 1
    event = AuditEvent.objects.first()
    assert curator.get("/admin/curation/auditevent/add/").status_code == 403
    change = curator.post(f"/admin/curation/auditevent/{event.pk}/change/", {"action": "x"})
    assert change.status_code == 403
    delete = curator.post(f"/admin/curation/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403 and AuditEvent.objects.count() == 2
    assert annotator.get("/admin/curation/auditevent/").status_code == 403


# --- Trajectories are read-only here ---------------------------------------------------------


def test_the_admin_shows_a_trajectory_and_links_to_the_workbench_but_changes_nothing(curator):
    trajectory = TrajectoryFactory(text=TEXT, original_text=TEXT, is_correct=True)
    url = reverse("admin:curation_trajectory_change", args=[trajectory.pk])
    page = curator.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert reverse("ui:trajectory", args=[trajectory.pk]) in html
    assert 'name="_save"' not in html and "<textarea" not in html
    # A hand-made POST (what the old form allowed) changes neither text, status nor verdict.
    posted = curator.post(
        url, {"text": "edited", "review_status": "approved", "is_correct": "false"}
    )
    assert posted.status_code == 403
    trajectory.refresh_from_db()
    assert (
        trajectory.text,
        trajectory.review_status,
        trajectory.is_correct,
        trajectory.version,
    ) == (
        TEXT,
        "pending",
        True,
        1,
    )
    for model in ("trajectory", "revision", "flag"):
        assert curator.get(reverse(f"admin:curation_{model}_add")).status_code == 403


def test_a_round_made_in_the_admin_gets_its_kinds_defaults_through_the_service(curator, hint_names):
    blank = {"samples_hinted": "", "samples_plain": "", "temperature": "", "top_p": ""}
    form = _round_form(name="rft-admin", kind="rft", hints=hint_names, **blank)
    response = curator.post("/admin/curation/round/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    round_ = Round.objects.get(name="rft-admin")
    assert (round_.samples_hinted, round_.samples_plain) == (0, 16)
    assert (round_.temperature, round_.top_p) == (0.6, 0.95)
    assert round_.created_by == curator.user


@pytest.mark.parametrize("field, value", [("top_p", 0), ("temperature", 2.5), ("max_tokens", 0)])
def test_the_admin_and_the_api_refuse_the_same_settings_with_the_same_words(
    curator, hint_names, field, value
):
    form = curator.post(
        "/admin/curation/round/add/", _round_form(hints=hint_names, **{field: value})
    )
    form_errors = form.context["adminform"].form.errors[field]
    api = curator.post(
        "/api/rounds/",
        {
            "name": "api-round",
            "kind": "seed",
            "policy": PolicyFactory().name,
            "problem_sets": [ProblemFactory().problem_set.name],
            field: value,
        },
        content_type="application/json",
    )
    assert api.status_code == 400
    assert api.json()[field] == form_errors
    assert not Round.objects.exists()


def test_a_launched_rounds_page_shows_the_exact_hint_texts_it_uses(curator, hint_names):
    from curation.models import HintTemplate

    curator.post("/admin/curation/round/add/", _round_form(hints=hint_names[:1]))
    round_ = Round.objects.get()
    page = curator.get(f"/admin/curation/round/{round_.pk}/change/").content.decode()
    assert "Copied from the enabled hint templates when the round is launched." in page
    template = HintTemplate.objects.get(name=hint_names[0])
    template.text = "Rephrased <b>before</b> the launch.```python"
    template.save()
    curator.post(f"/admin/curation/round/{round_.pk}/launch/")
    template.text = "Rephrased after the launch.```python"
    template.save()
    page = curator.get(f"/admin/curation/round/{round_.pk}/change/").content.decode()
    assert "Rephrased &lt;b&gt;before&lt;/b&gt; the launch.```python" in page
    assert "after the launch" not in page


# --- Evaluation --------------------------------------------------------------------------------


def test_the_evaluation_page_shows_the_table_the_chart_and_a_csv(curator):
    policy = PolicyFactory(name="START")
    problems = ProblemFactory.create_batch(4, problem_set=ProblemSetFactory(name="aime24"))
    eval_round(policy, problems, correct=1)
    eval_round(policy, problems, correct=3, temperature=0.6)
    for k, correct in ((0, 1), (1, 2), (2, 3)):
        eval_round(policy, problems, end_repeats=k, correct=correct)

    page = curator.get("/admin/curation/round/")
    assert b"/admin/curation/round/evaluation/" in page.content
    page = curator.get("/admin/curation/round/evaluation/")
    assert page.status_code == 200 and not INLINE.search(page.content)
    table = page.context["table"]
    assert [(row.setting.temperature, row.setting.end_repeats) for row in table.rows] == [
        (0.0, 0),
        (0.6, 0),
        (0.0, 0),
        (0.0, 1),
        (0.0, 2),
    ]
    html = page.content.decode()
    assert "25.0 (4.6–69.9, n=4)" in html and "75.0 (30.1–95.4, n=4)" in html
    assert '<figure id="scaling-chart">' in html and "<polyline" in html
    assert "START on aime24, 2 end hints: 75.0" in html

    response = curator.get("/admin/curation/round/evaluation/", {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["aime24 acc %"] for r in rows] == ["25.0", "75.0", "25.0", "50.0", "75.0"]
    assert rows[3]["end_repeats"] == "1" and rows[3]["aime24 tool_rate %"] == "100.0"

    other = PolicyFactory(name="base")
    eval_round(other, problems, correct=0)
    narrowed = curator.get("/admin/curation/round/evaluation/", {"policy": other.pk})
    assert [row.policy for row in narrowed.context["table"].rows] == ["base"]
    assert (
        narrowed.context["chart"] is None and b"No test-time scaling chart yet" in narrowed.content
    )


def test_one_action_launches_an_eval_sweep(curator, django_capture_on_commit_callbacks):
    problem_set = ProblemSetFactory(name="held-out")
    ProblemFactory.create_batch(2, problem_set=problem_set, split="test")
    policy = PolicyFactory(name="START")
    page = curator.get("/admin/curation/round/evaluation/")
    assert b"/admin/curation/round/sweep/" in page.content
    form = {
        "name": "tts",
        "policy": policy.pk,
        "problem_sets": [problem_set.pk],
        "split": "test",
        "end_repeats": "0, 1, 3",
        "samples": 1,
        "temperature": 0.0,
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator.post("/admin/curation/round/sweep/", form, follow=True)
    assert "Sweep launched: tts-end0, tts-end1, tts-end3." in _messages(response)
    rounds = Round.objects.order_by("name")
    assert [r.hint_config["end_repeats"] for r in rounds] == [0, 1, 3]
    assert {r.status for r in rounds} == {"queued"} and len(callbacks) == 3


@pytest.mark.parametrize(
    ("missing", "field", "words"),
    [
        ("policy", "policy", "an evaluation sweep needs a policy"),
        ("problem_sets", "problem_sets", "needs at least one problem set"),
    ],
)
def test_a_sweep_without_a_policy_or_problem_set_is_refused(curator, missing, field, words):
    form = {
        "name": "tts",
        "policy": PolicyFactory().pk,
        "problem_sets": [ProblemFactory().problem_set.pk],
        "end_repeats": "0, 1",
        "samples": 1,
        "temperature": 0.0,
    }
    del form[missing]
    response = curator.post("/admin/curation/round/sweep/", form)
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])
    assert not Round.objects.exists()


def test_annotators_see_the_evaluation_but_cannot_launch_sweeps(annotator):
    page = annotator.get("/admin/curation/round/evaluation/")
    assert page.status_code == 200 and b"/admin/curation/round/sweep/" not in page.content
    assert annotator.get("/admin/curation/round/sweep/").status_code == 403

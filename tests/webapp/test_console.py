"""The curators' console through Django's test client: pages, forms validated by the same
services as the API, actions offered only where they apply and refused otherwise."""

import html
import io
import re
import shlex

import pytest
from django.core.management import call_command
from django.urls import reverse

from curation.models import (
    ChunkStatus,
    Dataset,
    DatasetKind,
    Policy,
    ProblemSet,
    ReviewStatus,
    Round,
    RoundChunk,
    RoundKind,
    RunStatus,
    SFTJob,
)
from tests.factories import PolicyFactory, ProblemFactory, RoundFactory, eval_round
from tests.webapp import workbench_data as data
from webapp.ui import charts

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(client):
    user = data.curator("cy")
    client.force_login(user)
    return user


@pytest.fixture
def problem_set():
    problem_set = ProblemSet.objects.create(name="sample")
    ProblemFactory(problem_set=problem_set, answer="4", prompt="2 + 2?")
    return problem_set


def test_every_console_page_answers_a_curator_and_refuses_an_annotator(client, curator):
    round_ = RoundFactory()
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    job = _job(round_.policy)
    pages = [
        reverse("console:home"),
        reverse("console:problem_sets"),
        reverse("console:rounds"),
        reverse("console:round_new"),
        reverse("console:round", args=[round_.pk]),
        reverse("console:datasets"),
        reverse("console:dataset", args=[dataset.pk]),
        reverse("console:jobs"),
        reverse("console:job_new"),
        reverse("console:job", args=[job.pk]),
        reverse("console:policies"),
    ]
    for url in pages:
        assert client.get(url).status_code == 200, url
    client.force_login(data.annotator("ann"))
    for url in pages:
        assert client.get(url).status_code == 403, url


def test_the_round_form_starts_on_the_kind_and_the_only_policy(client, curator, problem_set):
    policy = PolicyFactory(name="tiny")
    page = client.get(reverse("console:round_new")).content.decode()
    assert f'<option value="{policy.pk}" selected>tiny</option>' in page
    assert '<option value="seed" selected>' in page
    assert "Create and launch" in page


def test_create_and_launch_enqueues_the_round_s_chunks(
    client, curator, problem_set, django_capture_on_commit_callbacks
):
    policy = PolicyFactory(name="tiny")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("console:round_new"),
            {
                "name": "seed-1",
                "kind": RoundKind.SEED,
                "policy": policy.pk,
                "problem_sets": [problem_set.pk],
                "hints": ["general"],
                "conjunctions": "Wait",
                "conjunction_probability": 0.5,
                "max_hints": 3,
                "end_of_thinking": "on",
                "end_repeats": 1,
                "max_tool_calls": 6,
                "timeout_s": 10,
                "memory_mb": 1024,
                "run_code": "all",
                "reviews_required": 1,
                "max_tokens": 2048,
                "launch": "1",
            },
        )
    assert response.status_code == 302, _errors(response)
    round_ = Round.objects.get(name="seed-1")
    assert response["Location"] == reverse("console:round", args=[round_.pk])
    assert round_.status == RunStatus.QUEUED and round_.total == 2  # 1 hinted + 1 plain
    assert (round_.samples_hinted, round_.samples_plain, round_.temperature) == (1, 1, 0.0)
    assert callbacks, "the chunks are enqueued on commit"
    assert RoundChunk.objects.filter(round=round_).exists()


def _errors(response) -> str:
    """A re-rendered form's error messages, for an assertion's message."""
    return " | ".join(
        re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode())
    )


def test_a_bad_setting_is_shown_on_its_field_and_nothing_is_created(client, curator, problem_set):
    response = client.post(
        reverse("console:round_new"),
        {
            "name": "bad",
            "kind": RoundKind.SEED,
            "policy": PolicyFactory().pk,
            "problem_sets": [problem_set.pk],
            "hints": ["general"],
            "conjunctions": "Wait",
            "conjunction_probability": 0.5,
            "max_hints": 3,
            "end_repeats": 1,
            "max_tool_calls": 6,
            "timeout_s": 10,
            "memory_mb": 1024,
            "run_code": "all",
            "temperature": 7,
            "reviews_required": 1,
        },
    )
    assert response.status_code == 200
    assert "must be in [0.0, 2.0], got 7.0" in response.content.decode()
    assert not Round.objects.filter(name="bad").exists()


def test_clone_fills_the_form_with_the_round_s_settings(client, curator, problem_set):
    source = RoundFactory(
        name="rft-1", kind=RoundKind.RFT, samples_plain=16, temperature=0.6, reviews_required=2
    )
    source.problem_sets.set([problem_set])
    page = client.get(reverse("console:round_new") + f"?from={source.pk}").content.decode()
    assert 'value="rft-1-again"' in page
    assert '<option value="rft" selected>' in page
    assert 'name="temperature" value="0.6"' in page
    assert 'name="reviews_required" value="2"' in page


def test_a_finished_round_offers_no_cancel_and_refuses_one_posted_anyway(client, curator):
    round_ = RoundFactory(status=RunStatus.DONE, total=2)
    page = client.get(reverse("console:round", args=[round_.pk])).content.decode()
    assert "Cancel round" not in page and "hx-trigger" not in page  # no polling either
    response = client.post(reverse("console:round_cancel", args=[round_.pk]), follow=True)
    assert "only a running round cancels" in response.content.decode()
    round_.refresh_from_db()
    assert round_.status == RunStatus.DONE


def test_a_running_round_polls_and_offers_cancel_and_a_failed_chunk_offers_a_rerun(client, curator):
    running = RoundFactory(status=RunStatus.RUNNING, total=4)
    page = client.get(reverse("console:round", args=[running.pk])).content.decode()
    assert "Cancel round" in page and 'hx-trigger="every 2s"' in page
    partial = client.get(reverse("console:round", args=[running.pk]), HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<section id="round-progress"')

    failed = RoundFactory(status=RunStatus.FAILED, total=4)
    RoundChunk.objects.create(round=failed, index=0, status=ChunkStatus.FAILED, error="boom")
    page = client.get(reverse("console:round", args=[failed.pk])).content.decode()
    assert "Re-run failed and stalled chunks" in page and "boom" in page


def _job(policy: Policy, **fields) -> SFTJob:
    from curation.models import DatasetVersion

    dataset, _ = Dataset.objects.get_or_create(name="d-seed", kind=DatasetKind.SEED)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=dataset.versions.count() + 1, size=2, content_hash="ab" * 32
    )
    return SFTJob.objects.create(
        dataset_version=version, base_policy=policy, output_name="start-0", **fields
    )


def test_a_job_page_draws_the_loss_with_axes_a_smoothed_line_and_the_learning_rate(client, curator):
    history = [{"step": s, "loss": 2.0 / s, "lr": 1e-5 * (1 - s / 20)} for s in range(1, 11)]
    job = _job(PolicyFactory(), status=RunStatus.RUNNING, step=10, total_steps=20, history=history)
    page = client.get(reverse("console:job", args=[job.pk])).content.decode()
    assert 'id="loss-chart"' in page
    for label in (">step<", ">loss<", ">learning rate<", ">loss, smoothed<"):
        assert label in page
    assert "Cancel job" in page

    job.status = RunStatus.DONE
    job.save()
    page = client.get(reverse("console:job", args=[job.pk])).content.decode()
    assert "Cancel job" not in page
    response = client.post(reverse("console:job_cancel", args=[job.pk]), follow=True)
    assert "only an active job cancels" in response.content.decode()


def test_loss_chart_ticks_are_round_and_smoothing_starts_at_the_first_value():
    assert charts.nice_ticks(0.13, 1.9) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert charts.ema([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])
    chart = charts.loss_chart([{"step": 1, "loss": 1.0}, {"step": 5, "loss": 0.5}])
    assert chart["x_ticks"][0]["label"] == "1"
    assert chart["y2_label"] == ""  # no learning rate logged: no right axis
    assert charts.loss_chart([]) is None


def test_policies_show_lineage_and_metrics_as_a_table(client, curator):
    base = PolicyFactory(name="base")
    child = PolicyFactory(
        name="start-0", parent=base, metrics={"train_loss": 0.123456, "steps": 40}
    )
    page = client.get(reverse("console:policies")).content.decode()
    assert 'class="lineage-edge"' in page
    assert f'href="#policy-{child.pk}"' in page
    assert '<th scope="row">train_loss</th>' in page and "0.1235" in page
    assert "<textarea" not in page


def test_a_dataset_page_freezes_and_offers_copyable_exports(client, curator, tmp_path, monkeypatch):
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    round_ = RoundFactory(kind=RoundKind.SEED, status=RunStatus.DONE)
    data.candidate(round=round_, review_status=ReviewStatus.APPROVED)
    response = client.post(
        reverse("console:dataset_freeze", args=[dataset.pk]), {"rounds": [round_.pk]}, follow=True
    )
    page = response.content.decode()
    assert "Froze d-seed v1: 1 items" in page
    commands = re.findall(r'<code class="copyable">([^<]*)</code>', page)
    assert commands[:2] == [
        "python manage.py export_dataset d-seed --version 1 --format messages "
        "--output d-seed-v1.jsonl",
        "python manage.py export_dataset d-seed --version 1 --output-dir d-seed-v1 "
        "--file-type parquet --license unknown",
    ]
    assert "data-copy=" in page
    assert "Train on v1" in page
    # The folder command runs as copied: the Hugging Face layout with its dataset card.
    monkeypatch.chdir(tmp_path)
    call_command(*shlex.split(html.unescape(commands[1]))[2:])
    assert (tmp_path / "d-seed-v1" / "README.md").is_file()
    assert list((tmp_path / "d-seed-v1" / "sft").glob("*.parquet"))


def test_a_freeze_the_rules_refuse_says_why(client, curator):
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    response = client.post(
        reverse("console:dataset_freeze", args=[dataset.pk]), {"rounds": []}, follow=True
    )
    assert response.status_code == 200
    assert not dataset.versions.exists()
    assert 'role="alert"' in response.content.decode()


def test_import_shows_its_report_and_a_file_it_cannot_read_loses_nothing(client, curator):
    good = io.BytesIO(b'{"id": "a", "problem": "2+2?", "answer": "4"}\n')
    good.name = "tiny.jsonl"
    response = client.post(
        reverse("console:problem_sets"),
        {"file": good, "name": "tiny", "split": "train", "domain": "math"},
        follow=True,
    )
    assert "tiny: 1 problems created, 0 updated" in response.content.decode()

    bad = io.BytesIO(b"not json at all\n")
    bad.name = "bad.jsonl"
    response = client.post(
        reverse("console:problem_sets"),
        {"file": bad, "name": "bad", "split": "train", "domain": "math"},
    )
    assert "Nothing was imported" in response.content.decode()
    assert not ProblemSet.objects.filter(name="bad").exists()


def test_a_curator_creates_a_dataset_and_a_taken_name_is_a_field_error(client, curator):
    response = client.post(reverse("console:datasets"), {"name": "d-seed", "kind": "d_seed"})
    dataset = Dataset.objects.get(name="d-seed")
    assert response["Location"] == reverse("console:dataset", args=[dataset.pk])
    again = client.post(reverse("console:datasets"), {"name": "d-seed", "kind": "d_seed"})
    assert "Dataset with this Name already exists." in again.content.decode()
    assert Dataset.objects.count() == 1


def test_registering_a_policy_and_the_same_name_with_another_path_is_refused(client, curator):
    url = reverse("console:policies")
    assert client.post(url, {"name": "qwq", "path": "/models/qwq"}).status_code == 302
    refused = client.post(url, {"name": "qwq", "path": "/elsewhere"}).content.decode()
    assert "registered with another path: /models/qwq" in refused
    assert Policy.objects.get(name="qwq").path == "/models/qwq"


def test_the_evaluation_page_shows_the_table_the_scaling_chart_and_a_csv(client, curator):
    policy = PolicyFactory(name="START")
    problems = ProblemFactory.create_batch(4, problem_set=ProblemSet.objects.create(name="aime24"))
    for k, correct in ((0, 1), (1, 2), (2, 3)):
        eval_round(policy, problems, end_repeats=k, correct=correct)
    page = client.get(reverse("console:evaluation")).content.decode()
    assert 'id="evaluation-table"' in page and "75.0 (30.1–95.4, n=4)" in page
    assert '<figure id="scaling-chart">' in page
    response = client.get(reverse("console:evaluation"), {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert "aime24 acc %" in response.content.decode()


def test_a_sweep_without_a_policy_is_refused_on_its_field(client, curator):
    problem_set = ProblemSet.objects.create(name="held-out")
    ProblemFactory(problem_set=problem_set, split="test")
    response = client.post(
        reverse("console:sweep"),
        {
            "name": "sweep",
            "problem_sets": [problem_set.pk],
            "split": "test",
            "end_repeats": "0, 1",
            "samples": 1,
            "temperature": 0,
        },
    )
    assert response.status_code == 200
    assert "an evaluation sweep needs a policy to evaluate" in response.content.decode()
    assert not Round.objects.exists()

"""A curator runs the whole loop from the console, in Chromium, never opening the Django admin:
import → seed round → candidates → freeze → SFT → START-0 → RFT round → D_START → SFT → START →
evaluation. Real worker, vLLM, sandbox and TRL; the annotators' approvals are scripted."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from curation.loop import approve_all_scripted
from curation.models import DatasetKind, Policy, Round, RunStatus
from tests.webapp import workbench_data as data
from tests.webapp.test_browser import ARTIFACTS, open_page

pytestmark = [
    pytest.mark.timeout(2400),  # the whole loop: three rounds and two SFT jobs
    pytest.mark.vllm,
    pytest.mark.worker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

DATA = Path(__file__).resolve().parents[2] / "curation" / "data"
LONG = 900_000  # ms: a round or an SFT job on two loaded cores


def _import(page, url: str, file: str, name: str, split: str) -> None:
    page.goto(f"{url}/console/problem-sets/")
    page.set_input_files("#id_file", str(DATA / file))
    page.fill("#id_name", name)
    page.select_option("#id_split", split)
    page.click("#import button[type=submit]")
    expect(page.locator(".alert-success")).to_contain_text(f"{name}:")


def _round(page, url: str, *, name: str, kind: str, policy: str, problem_set: str, **fields):
    """Create and launch a round from the console's form; wait until its page says Done."""
    page.goto(f"{url}/console/rounds/new/")
    page.fill("#id_name", name)
    page.select_option("#id_kind", kind)
    page.select_option("#id_policy", label=policy)
    page.select_option("#id_problem_sets", label=problem_set)
    for field, value in {"max_tokens": "512", **fields}.items():
        page.fill(f"#id_{field}", value)
    page.click("button:has-text('Create and launch')")
    expect(page.locator("h1")).to_have_text(name)
    expect(page.locator("#round-status")).to_have_text("Done", timeout=LONG)
    return Round.objects.get(name=name)


def _dataset_version(page, url: str, *, name: str, kind: str, round_: Round) -> str:
    """Create the dataset, approve the round's candidates (scripted annotators), freeze it."""
    page.goto(f"{url}/console/datasets/")
    page.fill("#id_name", name)
    page.select_option("#id_kind", kind)
    page.click("#new-dataset button[type=submit]")
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator(".funnel-table").first).to_be_visible()
    approve_all_scripted(round_, kind)
    page.reload()
    page.check(f"input[name=rounds][value='{round_.pk}']")
    page.click("button:has-text('Freeze')")
    expect(page.locator(".alert-success")).to_contain_text(f"Froze {name} v1")
    return page.locator(".commands code").first.inner_text()


def _train(page, *, base: str, output: str) -> None:
    page.click("text=Train on v1")
    page.select_option("#id_base_policy", label=base)
    page.fill("#id_output_name", output)
    page.fill("#id_learning_rate", "0.0001")
    page.fill("#id_num_train_epochs", "3")
    page.click("button:has-text('Launch the job')")
    expect(page.locator("#job-state")).to_have_text("Done", timeout=LONG)
    expect(page.locator("#loss-chart polyline").first).to_be_visible()


def test_a_curator_runs_the_loop_from_the_console(
    browser, live_server, celery_worker, tiny_policy_path
):
    data.curator("cy")
    page = open_page(browser, live_server, "cy")
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))
    url = live_server.url
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{url}/console/policies/")
    page.fill("#id_name", "tiny")
    page.fill("#id_path", str(tiny_policy_path))
    page.click("#register button[type=submit]")
    expect(page.locator(".alert-success")).to_contain_text("tiny: registered")
    _import(page, url, "sample_problems.jsonl", "sample", "train")
    _import(page, url, "sample_eval.jsonl", "sample-eval", "test")

    # Seed round: four sampled hinted tries per problem make D_seed candidates certain in
    # practice whatever the CPU (as in tests/test_loop.py).
    seed = _round(
        page,
        url,
        name="seed",
        kind="seed",
        policy="tiny",
        problem_set="sample",
        samples_hinted="4",
        temperature="0.7",
        top_p="0.95",
    )
    command = _dataset_version(page, url, name="d-seed", kind=DatasetKind.SEED, round_=seed)
    assert command.startswith("python manage.py export_dataset d-seed --version 1")
    _train(page, base="tiny", output="START-0")
    page.screenshot(path=str(ARTIFACTS / "console-loop-job.png"), full_page=True)

    rft = _round(
        page, url, name="rft", kind="rft", policy="START-0", problem_set="sample", samples_plain="2"
    )
    _dataset_version(page, url, name="d-start", kind=DatasetKind.START, round_=rft)
    _train(page, base="tiny", output="START")

    _round(page, url, name="eval-start", kind="eval", policy="START", problem_set="sample-eval")
    page.goto(f"{url}/console/evaluation/")
    expect(page.locator("#evaluation-table")).to_contain_text("START")
    page.goto(f"{url}/console/policies/")
    expect(page.locator(".lineage-node")).to_have_count(3)
    page.screenshot(path=str(ARTIFACTS / "console-loop-policies.png"), full_page=True)

    start = Policy.objects.get(name="START")
    assert start.parent.name == "tiny"
    assert Round.objects.filter(status=RunStatus.DONE).count() == 3
    assert visited and not [u for u in visited if "/admin/" in u]
    # Leaving a page while its status poll is in flight aborts the poll, which htmx logs as
    # an error ("htmx:afterRequest", then "htmx:sendAbort"); anything else is a real error.
    aborted = ("htmx:afterRequest", "htmx:sendAbort")
    assert [e for e in page.console_errors if not e.startswith(aborted)] == []

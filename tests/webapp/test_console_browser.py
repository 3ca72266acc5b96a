"""The curators' console in Chromium: forms, live pages that stop polling, charts drawn under the
strict CSP (a blocked style or script shows as a console error), copyable commands."""

import pytest
from playwright.sync_api import expect

from curation.models import (
    Dataset,
    DatasetKind,
    DatasetVersion,
    ProblemSet,
    Round,
    RunStatus,
    SFTJob,
)
from tests.factories import PolicyFactory, ProblemFactory
from tests.webapp import workbench_data as data
from tests.webapp.test_browser import ARTIFACTS, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_curator_creates_a_round_and_reads_a_job_s_loss_in_the_console(browser, live_server):
    data.curator("cy")
    base = PolicyFactory(name="tiny")
    problem_set = ProblemSet.objects.create(name="sample")
    ProblemFactory(problem_set=problem_set)
    page = open_page(browser, live_server, "cy")
    ARTIFACTS.mkdir(exist_ok=True)

    page.click("nav.nav >> text=Console")
    expect(page.locator("h1")).to_have_text("The loop")
    page.click(".console-nav >> text=Rounds")
    page.click("text=New round")
    # The kind and the only policy are chosen already; blank sampling takes the kind's defaults.
    expect(page.locator("#id_kind")).to_have_value("seed")
    expect(page.locator("#id_policy")).to_have_value(str(base.pk))
    page.fill("#id_name", "seed-browser")
    page.select_option("#id_problem_sets", str(problem_set.pk))
    page.fill("#id_temperature", "9")
    page.click("text=Create as draft")
    expect(page.locator(".field-error .errorlist")).to_contain_text("must be in [0.0, 2.0]")
    page.fill("#id_temperature", "0")
    page.click("text=Create as draft")
    expect(page.locator("h1")).to_have_text("seed-browser")
    expect(page.locator("#round-status")).to_have_text("Draft")
    expect(page.locator("#round-actions")).to_contain_text("Launch")
    expect(page.locator("#round-actions")).not_to_contain_text("Cancel round")
    page.screenshot(path=str(ARTIFACTS / "console-round.png"), full_page=True)
    assert Round.objects.get(name="seed-browser").temperature == 0.0

    # A running job's page polls; when the job ends, the page shows it and stops polling.
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, size=2, content_hash="cd" * 32
    )
    history = [{"step": s, "loss": 2 / s + 0.1, "lr": 2e-5 * (1 - s / 40)} for s in range(1, 21)]
    job = SFTJob.objects.create(
        dataset_version=version,
        base_policy=base,
        output_name="start-0",
        status=RunStatus.RUNNING,
        step=20,
        total_steps=40,
        history=history,
    )
    page.goto(f"{live_server.url}/console/jobs/{job.pk}/")
    expect(page.locator("#loss-chart polyline")).to_have_count(3)
    expect(page.locator("#job-actions")).to_contain_text("Cancel job")
    page.screenshot(path=str(ARTIFACTS / "console-job.png"), full_page=True)
    SFTJob.objects.filter(pk=job.pk).update(status=RunStatus.DONE, step=40)
    expect(page.locator("#job-state")).to_have_text("Done")
    expect(page.locator("#job-actions")).not_to_contain_text("Cancel job")
    assert page.locator("#job-status[hx-trigger]").count() == 0

    page.goto(f"{live_server.url}/console/datasets/{dataset.pk}/")
    expect(page.locator(".commands code").first).to_contain_text("export_dataset d-seed")
    page.goto(f"{live_server.url}/console/policies/")
    expect(page.locator(".lineage-node")).to_have_count(1)
    assert page.console_errors == []

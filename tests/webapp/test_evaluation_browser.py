"""After `make demo`, the evaluation page shows the table and the test-time scaling chart: the
demo's own rounds (`curation.demo.demo_rounds_launch`, what `demo_first_round` calls) run on a
real worker, vLLM and the sandbox, then Chromium opens the admin's and the console's evaluation
pages, reads the table and the chart from the DOM, and saves screenshots in .artifacts/."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from curation import demo
from curation.management.defaults import default_policy
from curation.models import ProblemSet, Round, RunStatus
from tests.conftest import wait_until
from tests.webapp import workbench_data as data
from tests.webapp.test_browser import ARTIFACTS, open_page
from tests.webapp.test_console_loop import DATA

pytestmark = [
    pytest.mark.timeout(1800),  # the demo's four rounds on two loaded cores
    pytest.mark.vllm,
    pytest.mark.worker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

ROUNDS_S = 1500
SETS = {"sample": 40, "sample-eval": 12}  # the problem sets and their sizes


def pass_at_1(n: int) -> re.Pattern:
    """A cell's pass@1 in % with its Wilson interval, over n samples."""
    return re.compile(rf"^\d+\.\d \(\d+\.\d–\d+\.\d, n={n}\)$")


def _demo_rounds(settings, tiny_policy_path) -> demo.DemoRounds:
    """What `make demo` launches, on the problem sets scripts/demo.sh imports."""
    settings.DEFAULT_POLICY_PATH = ""
    call_command("import_problems", str(DATA / "sample_problems.jsonl"), name="sample")
    call_command(
        "import_problems", str(DATA / "sample_eval.jsonl"), name="sample-eval", split="test"
    )
    policy = default_policy()
    assert policy.path == str(tiny_policy_path)
    return demo.demo_rounds_launch(
        name="demo",
        policy=policy,
        train_set=ProblemSet.objects.get(name="sample"),
        eval_set=ProblemSet.objects.get(name="sample-eval"),
    )


def _finished(rounds: list[Round]) -> bool:
    statuses = {r.status for r in Round.objects.filter(pk__in=[r.pk for r in rounds])}
    return not statuses & {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.DRAFT}


def _check_the_page(page, *, policy: str, shot: str) -> None:
    """The table has a row per setting with a filled cell per problem set; the chart a line of
    points per problem set."""
    repeats = demo.DEMO_SWEEP_END_REPEATS
    # The eval round's plain and hinted samples, and one row per sweep round.
    rows = page.locator("#evaluation-table tbody tr")
    expect(rows).to_have_count(2 + len(repeats))
    for index in range(rows.count()):
        row = rows.nth(index)
        expect(row.locator("th")).to_have_text(policy)
        # pass@1 with its Wilson interval, then tool use, calls and tokens.
        for n in SETS.values():
            expect(row.locator("td").filter(has_text=pass_at_1(n))).to_have_count(1)
    end_hints = rows.locator("td:nth-of-type(6)").all_inner_texts()
    assert end_hints[-len(repeats) :] == [str(k) for k in repeats]

    chart = page.locator("#scaling-chart svg")
    lines = chart.locator("g.scaling-series")
    expect(lines).to_have_count(len(SETS))  # one policy, a line per problem set
    legend = sorted(lines.locator("text").all_text_contents())
    assert legend == [f"{policy} on {name}" for name in sorted(SETS)]
    for line in lines.all():
        expect(line.locator("circle")).to_have_count(len(repeats))
        points = line.locator("polyline").get_attribute("points").split()
        assert len(points) == len(repeats)
        xs = [float(point.split(",")[0]) for point in points]
        assert xs == sorted(xs) and len(set(xs)) == len(repeats)
        titles = line.locator("circle title").all_text_contents()
        assert [t.split(", ")[1].split(" ")[0] for t in titles] == [str(k) for k in repeats]
    # The x axis labels the hint counts, left to right (the y axis's labels end-anchored).
    x_labels = chart.locator(":scope > text[text-anchor=middle]")
    expect(x_labels).to_have_text([str(k) for k in repeats])
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)


def test_the_demo_s_rounds_fill_the_evaluation_table_and_the_scaling_chart(
    browser, live_server, celery_worker, tiny_policy_path, settings
):
    user = data.curator("cy")
    user.is_staff = True  # the admin's page too
    user.save()
    rounds = _demo_rounds(settings, tiny_policy_path)
    assert wait_until(lambda: _finished(rounds.all), timeout=ROUNDS_S, interval=2)
    for round_ in rounds.all:
        round_.refresh_from_db()
        assert round_.status == RunStatus.DONE, (round_.name, round_.error)
    policy = rounds.seed.policy.name
    ARTIFACTS.mkdir(exist_ok=True)

    page = open_page(browser, live_server, "cy")
    page.goto(f"{live_server.url}/console/evaluation/")
    expect(page.locator("h1")).to_have_text("Evaluation")
    _check_the_page(page, policy=policy, shot="evaluation-console.png")
    assert page.console_errors == []  # the chart's SVG passes the strict CSP
    # The admin's page (Chromium asks it for a /favicon.ico that Django's admin does not have).
    page.goto(f"{live_server.url}/admin/curation/round/evaluation/")
    _check_the_page(page, policy=policy, shot="evaluation-admin.png")

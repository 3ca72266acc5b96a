"""The curators' admin flow in a real browser (Playwright on Debian's Chromium, live_server):
import a problem file, create a round, launch it, and watch htmx refresh its progress."""

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from curation.hints import HINTS
from curation.models import ChunkStatus, Round, RunStatus
from curation.roles import CURATOR
from tests.factories import PolicyFactory, TrajectoryFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.console_errors.append(r.url))
    yield page
    context.close()


def test_import_create_launch_and_watch_a_round(page, live_server, tmp_path, monkeypatch):
    # Launching enqueues one task per chunk after commit; record them instead of sending them
    # to a broker that other test runs' workers may share.
    enqueued = []
    monkeypatch.setattr(
        "curation.dispatch.send", lambda task, ids: enqueued.append(ids["chunk_id"])
    )
    user = UserFactory(username="cura", is_staff=True)
    user.groups.add(Group.objects.get(name=CURATOR))
    policy = PolicyFactory(name="tiny")
    problems = tmp_path / "arith.jsonl"
    problems.write_text(
        "".join(
            f'{{"id": "q{n}", "problem": "What is {n} + {n}?", "answer": "{2 * n}"}}\n'
            for n in range(3)
        )
    )

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "cura")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # Import a problem set from a file.
    page.goto(f"{live_server.url}/admin/curation/problemset/")
    page.click("text=Import from file")
    page.set_input_files("#id_file", str(problems))
    page.fill("#id_name", "arith")
    page.click("#import-form input[type=submit]")
    expect(page.locator("ul.messagelist")).to_contain_text("3 problems created, 0 updated")

    # Create a round with its settings.
    page.goto(f"{live_server.url}/admin/curation/round/add/")
    page.fill("#id_name", "seed-browser")
    page.select_option("#id_kind", "seed")
    page.select_option("#id_policy", str(policy.pk))
    page.select_option("#id_problem_sets_from", label="arith")
    page.click("#id_problem_sets_add")
    math_hint = next(h.name for h in HINTS if h.domain == "math")
    page.uncheck(f"input[name=hints][value={math_hint}]")  # every hint starts checked
    page.fill("#id_samples_hinted", "2")
    page.fill("#id_temperature", "0.6")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("seed-browser")
    round_ = Round.objects.get(name="seed-browser")
    assert round_.hint_config["hints"] == [h.name for h in HINTS if h.name != math_hint]
    assert (round_.samples_hinted, round_.temperature) == (2, 0.6)

    # Launch it with the changelist action, then open its progress page.
    page.check(f"input[name=_selected_action][value='{round_.pk}']")
    page.select_option("select[name=action]", "launch_rounds")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("9 trajectories planned")
    assert len(enqueued) == round_.chunks.count() >= 1
    page.click(f"a[href='/admin/curation/round/{round_.pk}/progress/']")
    expect(page.locator("#round-done")).to_have_text("0 / 9")

    # A worker stores trajectories: htmx refreshes the numbers without a reload.
    page.evaluate("window.notReloaded = true")
    Round.objects.filter(pk=round_.pk).update(status=RunStatus.RUNNING)
    for index, problem in enumerate(round_.problem_sets.get().problems.all()):
        TrajectoryFactory(round=round_, problem=problem, sample_index=index, num_tokens=500)
    expect(page.locator("#round-done")).to_have_text("3 / 9", timeout=15_000)
    expect(page.locator("#round-status")).to_have_text("Running")
    assert page.evaluate("window.notReloaded") is True

    # The round ends; the last refresh shows it and polling stops.
    round_.chunks.update(status=ChunkStatus.DONE)
    Round.objects.filter(pk=round_.pk).update(status=RunStatus.DONE)
    expect(page.locator("#round-status")).to_have_text("Done", timeout=15_000)
    expect(page.locator("#round-progress[hx-get]")).to_have_count(0)
    # No CSP violation, no script error, no failed request (the browser's /favicon.ico too).
    assert page.console_errors == []


def test_the_evaluation_page_draws_the_table_and_the_scaling_chart(page, live_server):
    from curation.models import RoundKind
    from tests.conftest import ARTIFACTS
    from tests.factories import ProblemFactory, ProblemSetFactory, RoundFactory

    user = UserFactory(username="cura", is_staff=True)
    user.groups.add(Group.objects.get(name=CURATOR))
    policy = PolicyFactory(name="START")
    for name in ("aime24", "amc23"):
        problems = ProblemFactory.create_batch(5, problem_set=ProblemSetFactory(name=name))
        for k in (0, 1, 2, 4):
            round_, _ = Round.objects.get_or_create(
                name=f"tts-end{k}",
                defaults={
                    "kind": RoundKind.EVAL,
                    "policy": policy,
                    "samples_hinted": 1,
                    "samples_plain": 0,
                    "hint_config": {"end_repeats": k},
                },
            )
            for index, problem in enumerate(problems):
                TrajectoryFactory(
                    round=round_, problem=problem, is_correct=index < 1 + k, num_tool_calls=k
                )
    RoundFactory(kind=RoundKind.EVAL, policy=policy)  # a round without trajectories: no row

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "cura")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/curation/round/")
    page.click("text=Evaluation")
    expect(page.locator("#evaluation-table tbody tr")).to_have_count(4)
    expect(page.locator("#evaluation-table")).to_contain_text("100.0 (56.6–100.0, n=5)")
    chart = page.locator("#scaling-chart svg")
    expect(chart).to_be_visible()
    expect(page.locator("#scaling-chart polyline")).to_have_count(2)
    box = chart.bounding_box()
    assert box["width"] > 300 and box["height"] > 150
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "evaluation-page.png"), full_page=True)
    # Nothing the CSP blocked, no failed request.
    assert page.console_errors == []

"""Guidelines (`g`) and comments in a real browser: Markdown renders, markup in them stays inert."""

import pytest
from playwright.sync_api import expect

from curation.models import Comment, Dataset, DatasetKind
from tests.webapp import workbench_data as data
from tests.webapp.test_browser import open_page, settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = (
    "<script>window.__xss = 1; alert(1)</script>\n\n"
    '<img src=x onerror="window.__xss = 2; alert(2)">\n\n'
    "[click me](javascript:window.__xss=3) "
    '<a href="javascript:alert(4)">raw link</a> '
    "{{ 7*7 }} {% csrf_token %} <svg onload=alert(5)>"
)


def test_guidelines_and_comments_render_markdown_and_nothing_runs(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate()
    Dataset.objects.create(
        name="d-seed",
        kind=DatasetKind.SEED,
        guidelines="## Placeholders\n\nReplace `...` with **working code**.\n\n" + HOSTILE,
    )
    page = open_page(browser, live_server, "ann")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")

    page.keyboard.press("g")
    panel = page.locator("#panel")
    expect(panel.locator("h2", has_text="Placeholders")).to_be_visible()
    expect(panel.locator("strong")).to_have_text("working code")
    expect(panel).to_contain_text("<script>window.__xss = 1; alert(1)</script>")
    expect(panel).to_contain_text("{{ 7*7 }} {% csrf_token %}")
    page.keyboard.press("Escape")
    expect(panel).to_be_empty()

    page.fill("#comments textarea", "Cell 2 is *fine*. " + HOSTILE)
    page.select_option("#comments select", label="on cell 2")
    page.click("#comments button[type=submit]")
    comments = page.locator("#comments")
    expect(comments.locator("em")).to_have_text("fine")
    expect(comments).to_contain_text("on cell 2")
    expect(comments).to_contain_text("{{ 7*7 }} {% csrf_token %}")
    settled(page)
    assert Comment.objects.get().body.startswith("Cell 2 is *fine*.")

    page.reload()  # the next reviewer's view of it
    expect(page.locator("#comments em")).to_have_text("fine")
    page.keyboard.press("g")
    expect(page.locator("#panel strong")).to_have_text("working code")
    for where in ("#panel", "#comments"):
        assert page.locator(f"{where} script, {where} img, {where} svg").count() == 0
        assert page.locator(f'{where} a[href^="javascript:"]').count() == 0
    assert page.evaluate("window.__xss") is None
    assert dialogs == [] and page.console_errors == []

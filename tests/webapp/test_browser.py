"""The workbench in a real browser (Playwright driving Debian's Chromium) against live_server:
what only a browser shows — htmx swaps, the editor's keys, shortcuts, conflicts, inert XSS."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from curation import review
from curation.models import ReviewStatus, Trajectory
from tests.webapp import workbench_data as data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"


def open_page(browser, live_server, username):
    """A fresh context logged in through the login form; console errors are collected."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", data.PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def settled(page):
    """Wait until htmx has no request, swap or settle in flight (the editor arrives by a swap)."""
    busy = ".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added"
    page.wait_for_function(f"() => !document.querySelector('{busy}')")


def cell_index(trajectory, number):
    kinds = [s.kind for s in review.trajectory_segments(trajectory)]
    return [i for i, k in enumerate(kinds) if k == "code"][number - 1]


def fresh(trajectory):
    return Trajectory.objects.get(pk=trajectory.pk)


def test_review_a_trajectory_from_claim_to_approval(browser, live_server):
    ann = data.annotator("ann")
    first, second = data.candidate(), data.candidate()
    page = open_page(browser, live_server, "ann")

    # The queue, then "n" claims the first unclaimed item and opens it.
    expect(page.locator("h1")).to_contain_text("2 items")
    page.keyboard.press("n")
    page.wait_for_url(re.compile(rf"/t/{first.pk}/"))
    assert fresh(first).claimed_by == ann
    expect(page.locator("#t-header")).to_contain_text("Claimed by you")

    # Edit cell 1 in the editor: Enter keeps the indentation (and adds one after a colon).
    index = cell_index(first, 1)
    page.click(f"#seg-{index} .seg-actions >> text=Edit")
    editor = page.locator(f"#seg-{index} textarea")
    expect(editor).to_be_focused()
    settled(page)
    editor.fill("for i in range(3):")
    editor.press("End")
    editor.press("Enter")
    page.keyboard.type("print(i * 2)")
    assert editor.input_value() == "for i in range(3):\n    print(i * 2)"
    editor.press("Shift+Tab")  # dedents the line; Tab at its start indents it back
    assert editor.input_value() == "for i in range(3):\nprint(i * 2)"
    editor.press("Home")
    editor.press("Tab")
    assert editor.input_value() == "for i in range(3):\n    print(i * 2)"
    # Ctrl+Enter saves and runs it in the sandbox: the output block shows the real output.
    editor.press("Control+Enter")
    expect(page.locator(f"#seg-{index + 1} .output")).to_have_text("0\n2\n4")
    expect(page.locator("#version")).to_have_attribute("data-version", "2")
    stored = fresh(first)
    assert "for i in range(3):\n    print(i * 2)\n```\n```output\n0\n2\n4\n```" in stored.text
    assert stored.revisions.get().action == "edit_code_run"

    # Rename an identifier: preview every place, then apply.
    page.keyboard.press("i")
    page.keyboard.type("totl_sum")
    page.fill(".rename-form input[name=new]", "total_sum")
    page.click(".rename-form button[type=submit]")
    expect(page.locator("#panel")).to_contain_text("3 places in 1 cell")
    page.click("#rename-apply")
    expect(page.locator("#panel")).to_be_empty()
    expect(page.locator("#version")).to_have_attribute("data-version", "3")
    stored = fresh(first)
    assert "totl_sum = 0" not in stored.text and "total_sum += i * i" in stored.text
    expect(page.locator("#history")).to_contain_text("rename")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "trajectory-page.png"), full_page=True)

    # "?" opens the help overlay; Escape closes it.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()

    # The rename changed code that had run: its output is stale, and approval waits for a re-run.
    renamed = next(
        i
        for i, s in enumerate(review.trajectory_segments(stored))
        if s.kind == "code" and "total_sum" in s.body
    )
    page.click(f"#seg-{renamed} .seg-actions >> text=Run")
    expect(page.locator("#version")).to_have_attribute("data-version", "4")

    # "a" approves and goes on to the next unclaimed item.
    page.keyboard.press("a")
    page.wait_for_url(re.compile(rf"/t/{second.pk}/"))
    stored = fresh(first)
    assert (stored.review_status, stored.reviewed_by, stored.claimed_by) == ("approved", ann, None)
    assert fresh(second).claimed_by == ann
    assert page.console_errors == []


def test_two_annotators_editing_at_once_one_gets_the_conflict(browser, live_server):
    data.annotator("ann")
    data.annotator("bob")
    trajectory = data.candidate()
    index = cell_index(trajectory, 1)
    url = f"{live_server.url}/t/{trajectory.pk}/"
    ann_page, bob_page = (
        open_page(browser, live_server, "ann"),
        open_page(browser, live_server, "bob"),
    )
    for page in (ann_page, bob_page):
        page.goto(url)
        page.click(f"#seg-{index} .seg-actions >> text=Edit")

    ann_page.locator(f"#seg-{index} textarea").fill("print('ann was here')")
    ann_page.locator(f"#seg-{index} textarea").press("Control+Enter")  # saves and runs
    expect(ann_page.locator(f"#seg-{index} .code")).to_contain_text("ann was here")
    expect(ann_page.locator(f"#seg-{index + 1} .output")).to_have_text("ann was here")
    # Her lease ends (released, or expired): the version, not the lease, stops bob's save.
    Trajectory.objects.filter(pk=trajectory.pk).update(claimed_by=None, claimed_until=None)

    bob_page.locator(f"#seg-{index} textarea").fill("print('bob was here')")
    bob_page.click(f"#seg-{index} [data-editor-save]")
    alert = bob_page.locator("#alerts .alert-error")
    expect(alert).to_contain_text(re.compile(r"changed by ann at \d\d:\d\d:\d\d .*reload"))
    expect(bob_page.locator(f"#seg-{index} textarea")).to_have_value("print('bob was here')")
    # The toast leaves "Approve & next" free.
    toast, approve = alert.bounding_box(), bob_page.locator("#approve-next").bounding_box()
    assert not overlap(toast, approve)
    # The merge view: bob's text, ann's version, and their diff.
    panel = bob_page.locator("#panel")
    expect(panel.locator("#merge-yours")).to_have_text("print('bob was here')")
    expect(panel.locator("#merge-theirs")).to_have_text("print('ann was here')")
    expect(panel.locator("#merge-diff .d-add")).to_have_text("+print('bob was here')")

    stored = fresh(trajectory)
    assert "ann was here" in stored.text and "bob was here" not in stored.text
    assert stored.version == 2
    # "Reload" asks before it throws the typed text away; declined, nothing is lost.
    bob_page.once("dialog", lambda dialog: dialog.dismiss())
    alert.locator(".reload").click()
    expect(bob_page.locator(f"#seg-{index} textarea")).to_have_value("print('bob was here')")
    # Bob keeps his: saved over ann's version, on the version he was shown.
    bob_page.click("#merge-save-mine")
    expect(bob_page.locator(f"#seg-{index} .code")).to_contain_text("bob was here")
    expect(bob_page.locator("#version")).to_have_attribute("data-version", "3")
    assert "bob was here" in fresh(trajectory).text
    # The cell changed since it ran: its output is stale until it runs again, then approval.
    bob_page.click(f"#seg-{index} .seg-actions >> text=Run")
    expect(bob_page.locator(f"#seg-{index + 1} .output")).to_have_text("bob was here")
    bob_page.keyboard.press("Shift+A")
    expect(bob_page.locator("#t-header")).to_contain_text("Approved")
    assert fresh(trajectory).review_status == ReviewStatus.APPROVED


def overlap(a, b) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_a_trajectory_full_of_markup_stays_inert(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate(data.XSS_TEXT, hints=[])
    page = open_page(browser, live_server, "ann")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")
    expect(page.locator("#seg-0")).to_contain_text("<script>window.__xss = 1")
    expect(page.locator("#seg-0")).to_contain_text('<img src=x onerror="window.__xss = 2')
    page.hover("#seg-0 .prose")
    page.click(f"#seg-{cell_index(trajectory, 1)} .seg-actions >> text=Edit")
    editor = page.locator("#segments textarea")
    expect(editor).to_have_value(re.compile(r"<script>alert\(4\)</script>"))
    expect(editor).to_be_focused()  # the editor takes focus once swapped in
    settled(page)
    page.keyboard.press("Escape")
    expect(editor).not_to_be_focused()
    page.click("[data-key=d]")  # the diff view renders the markup as text too
    expect(page.locator("#panel")).to_contain_text("No differences")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#segments script, #segments img, #segments svg").count() == 0
    assert page.locator('#segments a[href^="javascript:"]').count() == 0
    assert dialogs == []


def test_a_failure_the_server_does_not_explain_is_shown_not_swallowed(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate()
    index = cell_index(trajectory, 1)
    page = open_page(browser, live_server, "ann")
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")
    page.click(f"#seg-{index} .seg-actions >> text=Edit")
    editor = page.locator(f"#seg-{index} textarea")
    expect(editor).to_be_focused()
    settled(page)
    editor.fill("print('lost?')")

    # Fault injection: the save answers 500, then the network is gone.
    page.route("**/segments/*/edit/**", lambda route: route.fulfill(status=500, body="boom"))
    page.click(f"#seg-{index} [data-editor-save]")
    alert = page.locator("#alerts .alert-error")
    expect(alert).to_contain_text("The server failed (HTTP 500)")
    expect(editor).to_have_value("print('lost?')")  # nothing the annotator typed is lost

    in_place = page.locator(f"#seg-{index} .inline-error")  # beside the editor's buttons
    expect(in_place).to_contain_text("The server failed (HTTP 500)")

    page.unroute("**/segments/*/edit/**")
    page.route("**/segments/*/edit/**", lambda route: route.abort())
    page.click(f"#seg-{index} [data-editor-save]")
    expect(alert).to_contain_text("Could not reach the server")
    expect(in_place).to_contain_text("Could not reach the server")

    # A server that never answers: htmx gives up after its timeout (shortened here).
    page.unroute("**/segments/*/edit/**")
    page.route("**/segments/*/edit/**", lambda route: None)  # never answered
    page.evaluate("htmx.config.timeout = 500")
    page.click(f"#seg-{index} [data-editor-save]")
    expect(alert).to_contain_text("did not answer in time")
    expect(in_place).to_contain_text("did not answer in time")
    expect(editor).to_have_value("print('lost?')")
    assert fresh(trajectory).version == 1

    # Once the server answers again, the save goes through and the messages go.
    page.unroute("**/segments/*/edit/**")
    page.evaluate("htmx.config.timeout = 0")
    page.click(f"#seg-{index} [data-editor-save]")
    expect(page.locator(f"#seg-{index} .code")).to_contain_text("lost?")
    expect(page.locator(".inline-error")).to_have_count(0)
    assert fresh(trajectory).version == 2


def test_the_reject_panel_fits_its_card_from_1024_to_1920_px(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate()
    page = open_page(browser, live_server, "ann")
    parts = (
        "#reject-reason",
        ".reject-form input[name=other]",
        ".reject-form .check",
        ".reject-form button[type=submit]",
    )
    for width in (1024, 1280, 1440, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/t/{trajectory.pk}/")
        page.keyboard.press("r")
        expect(page.locator("#reject-reason")).to_be_focused()
        card = page.locator("#decide").bounding_box()
        right = card["x"] + card["width"]
        for part in parts:
            box = page.locator(part).bounding_box()
            assert card["x"] <= box["x"] and box["x"] + box["width"] <= right + 0.5, (width, part)
        clipped = "(d => d.scrollWidth > d.clientWidth)(document.getElementById('decide'))"
        assert not page.evaluate(clipped), width


def test_e_edits_the_focused_cell_or_text(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate()
    page = open_page(browser, live_server, "ann")
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")
    index = cell_index(trajectory, 2)
    page.click(f"#seg-{index} .code")  # a click focuses the segment
    page.keyboard.press("e")
    editor = page.locator(f"#seg-{index} textarea")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(re.compile(r"^totl_sum = 0"))
    settled(page)
    page.keyboard.press("Escape")  # leaves the text box; Escape again cancels the editor
    page.keyboard.press("Escape")
    expect(page.locator("#segments textarea")).to_have_count(0)

    answer = len(review.trajectory_segments(trajectory)) - 1
    page.click(f"#seg-{answer} .prose")
    page.keyboard.press("e")
    expect(page.locator(f"#seg-{answer} textarea")).to_be_focused()
    settled(page)
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(page.locator("#segments textarea")).to_have_count(0)
    # Output blocks have no editor and no Delete: "e" on one opens nothing.
    output = index + 1
    expect(page.locator(f"#seg-{output} .seg-actions")).not_to_contain_text("Delete")
    page.click(f"#seg-{output} .output")
    page.keyboard.press("e")
    expect(page.locator("#segments textarea")).to_have_count(0)
    assert page.console_errors == []


MATH_TEXT = (
    "<think>\nLet $x^2 = 4$, so \\(x = \\pm 2\\). Then\n$$\\sum_{i=1}^{10} i^2 = 385$$\n"
    "A formula that does not parse: \\(\\frac{1}\\) stays as it is.\n</think>\n\n"
    "The answer is \\boxed{385}."
)


def test_latex_is_typeset_by_katex_and_what_does_not_parse_stays_source(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate(MATH_TEXT, hints=[])
    page = open_page(browser, live_server, "ann")
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")
    think, answer = page.locator("#seg-0 .prose"), page.locator("#seg-1 .prose")
    expect(think.locator(".katex")).to_have_count(3)
    expect(think.locator(".katex-display")).to_have_count(1)
    expect(think).to_contain_text("\\(\\frac{1}\\) stays as it is")  # the source, no error
    expect(answer.locator(".katex .fbox")).to_have_count(1)
    expect(answer.locator(".katex-html")).to_have_text("385")
    assert page.locator(".katex-error").count() == 0
    # Everything came from this site (fonts included), under the strict CSP, without errors.
    assert all(url.startswith(live_server.url) for url in requests), requests
    assert any(url.endswith(".woff2") for url in requests)
    assert page.console_errors == []
    # The editor still holds the source.
    page.click("#seg-1 [data-edit]")
    expect(page.locator("#seg-1 textarea")).to_have_value(re.compile(r"\\boxed\{385\}"))


AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2 A and AA violations on the page as it is (axe is injected by the test
    only; the app never serves it)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {runOnly: ["wcag2a", "wcag2aa"]});
            return result.violations.flatMap(v => v.nodes.map(
                n => `${v.id}: ${n.target.join(" ")}: ${n.failureSummary}`));
        }"""
    )


def test_contrast_and_the_rest_of_wcag_aa_pass_axe(browser, live_server):
    data.annotator("ann")
    trajectory = data.candidate()
    data.candidate()
    page = open_page(browser, live_server, "ann")
    assert axe_violations(page) == []  # the queue
    page.goto(f"{live_server.url}/t/{trajectory.pk}/")
    page.keyboard.press("r")
    expect(page.locator("#reject-reason")).to_be_focused()
    assert axe_violations(page) == []  # the trajectory, the reject panel open
    page.click("[data-key=d]")
    expect(page.locator("#panel")).to_contain_text("No differences")
    assert axe_violations(page) == []
    page.goto(f"{live_server.url}/progress/")
    assert axe_violations(page) == []


def test_the_api_docs_render_from_this_site_under_the_csp(browser, live_server):
    data.annotator("ann")
    page = open_page(browser, live_server, "ann")
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.click("header >> text=API docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/api/rounds/")
    assert all(url.startswith((live_server.url, "data:")) for url in requests), requests
    assert page.console_errors == []

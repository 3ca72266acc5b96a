"""The workbench's views through Django's test client: access, queue, page, edits, conflicts."""

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.urls import resolve, reverse

from curation import review, services
from curation.models import Candidate, Domain, Flag, ReviewStatus, Revision, Trajectory
from tests.factories import ProblemFactory, RoundFactory, UserFactory
from tests.webapp import workbench_data as data
from webapp.ui import urls as ui_urls

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}

# Every endpoint, with the methods it answers and the permission it needs.
ENDPOINTS = {
    "queue": (["GET"], "view"),
    "queue_counts": (["GET"], "view"),
    "next": (["POST"], "review"),
    "bulk": (["POST"], "bulk"),
    "progress": (["GET"], "view"),
    "demo_status": (["GET"], "view"),
    "assign": (["POST"], "assign"),
    "trajectory": (["GET"], "view"),
    "score": (["GET"], "view"),
    "claim": (["POST"], "review"),
    "release": (["POST"], "review"),
    "decide": (["POST"], "review"),
    "segment": (["GET"], "view"),
    "segment_edit": (["GET", "POST"], "change"),
    "segment_run": (["POST"], "change"),
    "segment_delete": (["POST"], "change"),
    "segment_keep": (["POST"], "change"),
    "fix": (["POST"], "change"),
    "rename": (["GET", "POST"], "change"),
    "undo": (["POST"], "change"),
    "diff": (["GET"], "view"),
    "revision": (["GET"], "view"),
    "baselines": (["GET"], "view"),
    "guidelines": (["GET"], "view"),
    "comment": (["POST"], "comment"),
}


@pytest.fixture
def trajectory():
    return data.candidate()


@pytest.fixture
def ann(client):
    user = data.annotator("ann")
    client.force_login(user)
    return user


def url_of(name, trajectory):
    pattern = next(p for p in ui_urls.urlpatterns if p.name == name)
    kwargs = {}
    for key in pattern.pattern.converters:
        kwargs[key] = {"pk": trajectory.pk, "index": 2, "revision_pk": 0}[key]
    if "revision_pk" in kwargs:
        kwargs["revision_pk"] = Revision.objects.create(
            trajectory=trajectory,
            author=data.annotator("someone"),
            action="edit_text",
            before_text="a",
            after_text="b",
            base_version=1,
        ).pk
    return reverse(f"ui:{name}", kwargs=kwargs)


def page_version(response) -> int:
    return int(re.search(rb'data-version="(\d+)"', response.content).group(1))


def test_every_endpoint_is_listed():
    assert {p.name for p in ui_urls.urlpatterns} == set(ENDPOINTS)


def test_anonymous_users_are_sent_to_the_login_page(client, trajectory):
    for name, (methods, _) in ENDPOINTS.items():
        url = url_of(name, trajectory)
        for method in methods:
            response = getattr(client, method.lower())(url)
            assert response.status_code == 302, (name, method)
            assert response["Location"].startswith("/login/?next="), (name, method)
            htmx = getattr(client, method.lower())(url, **HTMX)
            assert htmx.status_code == 200 and htmx["HX-Redirect"].startswith("/login/")


def test_users_without_the_permission_get_403_everywhere(client, trajectory):
    client.force_login(UserFactory(username="nobody"))
    for name, (methods, _) in ENDPOINTS.items():
        url = url_of(name, trajectory)
        for method in methods:
            assert getattr(client, method.lower())(url).status_code == 403, (name, method)
            htmx = getattr(client, method.lower())(url, **HTMX)
            assert htmx.status_code == 403, (name, method)
            assert htmx["HX-Retarget"] == "#alerts"


def test_a_viewer_may_read_but_not_review_or_change(client, trajectory):
    client.force_login(data.viewer())
    for name, (methods, needs) in ENDPOINTS.items():
        url = url_of(name, trajectory)
        for method in methods:
            response = getattr(client, method.lower())(url)
            if needs == "view":  # a segment's own URL redirects to its place on the page
                assert response.status_code in (200, 302), (name, method)
                assert not response.get("Location", "").startswith("/login/")
            else:
                assert response.status_code == 403, (name, method)
    page = client.get(url_of("trajectory", trajectory)).content.decode()
    assert "Approve &amp; next" not in page and ">Edit<" not in page


def test_login_page_and_logging_in_lands_on_the_queue(client):
    data.annotator("ann")
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "ann", "password": data.PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("ui:queue")


# --- Queue ------------------------------------------------------------------------------------


def test_queue_filters_counts_sorting_and_pages(client, ann):
    seed_round, rft_round = RoundFactory(name="seed-1"), RoundFactory(name="rft-1")
    code_problem = ProblemFactory(domain=Domain.CODE)
    for _ in range(3):
        data.candidate(round=seed_round)
    data.candidate(round=rft_round, candidate=Candidate.START, problem=code_problem)
    approved = data.candidate(round=seed_round)
    Trajectory.objects.filter(pk=approved.pk).update(review_status=ReviewStatus.APPROVED)
    data.candidate(round=seed_round, candidate=Candidate.NONE)  # not a candidate: never listed

    page = client.get(reverse("ui:queue")).content.decode()
    assert "4 items" in page  # pending by default
    assert re.search(r'value="pending" selected>Pending<', page)  # counts come next, lazily
    assert f'hx-get="{reverse("ui:queue_counts")}?status=pending' in page

    counts = client.get(reverse("ui:queue_counts"), {"status": "pending"}, **HTMX)
    body = counts.content.decode()
    assert body.strip().startswith('<form class="filters" id="filters"')
    assert re.search(r'value="approved">Approved \(1\)', body)
    assert re.search(r'value="pending" selected>Pending \(4\)', body)
    assert re.search(rf'value="{seed_round.pk}">seed-1 \(3\)', body)
    assert re.search(r'value="code">Code \(1\)', body)
    assert re.search(r'value="placeholder">placeholder \(4\)', body)
    # Without JavaScript the same counts are in the page.
    no_js = client.get(reverse("ui:queue_counts"), {"status": "pending"})
    assert "counts=1" in no_js["Location"]
    assert re.search(r"Pending \(4\)", client.get(no_js["Location"]).content.decode())

    filtered = client.get(reverse("ui:queue"), {"status": "", "round": seed_round.pk}, **HTMX)
    body = filtered.content.decode()
    assert "<html" not in body and 'id="queue"' in body  # the partial
    assert "4 items" in body
    counts = client.get(
        reverse("ui:queue_counts"), {"status": "", "round": seed_round.pk}, **HTMX
    ).content.decode()
    assert re.search(r'value="pending">Pending \(3\)', counts)  # status counts in the round

    by_kind = client.get(reverse("ui:queue"), {"candidate": "d_start"}).content.decode()
    assert "1 item<" in by_kind

    newest = client.get(reverse("ui:queue"), {"sort": "newest", "status": ""}).content.decode()
    ids = [int(i) for i in re.findall(r'<tr>\s*<td><a href="/t/(\d+)/', newest)]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5


def test_queue_paginates_on_the_server(client, ann, monkeypatch):
    monkeypatch.setattr("webapp.ui.views.PAGE_SIZE", 2)
    made = [data.candidate() for _ in range(5)]
    first = client.get(reverse("ui:queue")).content.decode()
    assert "Page 1 of 3" in first
    third = client.get(reverse("ui:queue"), {"status": "pending", "page": 3}).content.decode()
    assert set(re.findall(r'<td><a href="/t/(\d+)/', third)) == {str(made[-1].pk)}


def test_next_claims_the_first_unclaimed_item_and_opens_it(client, ann):
    first, second = data.candidate(), data.candidate()
    review.trajectory_claim(trajectory=first, user=data.annotator("bob"))
    response = client.post(reverse("ui:next") + "?status=pending")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("ui:trajectory", args=[second.pk]))
    second.refresh_from_db()
    assert second.claimed_by == ann
    htmx = client.post(reverse("ui:next") + "?status=pending", **HTMX)
    assert htmx["HX-Redirect"].startswith(reverse("ui:trajectory", args=[second.pk]))


# --- The trajectory page ----------------------------------------------------------------------


def test_trajectory_page_shows_segments_code_flags_and_score(client, ann, trajectory):
    response = client.get(reverse("ui:trajectory", args=[trajectory.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    # Pygments token classes, server side; names and punctuation have no style: no span.
    assert '<span class="nb">sum</span>(i <span class="o">*</span> i' in page
    assert 'class="flag flag-placeholder"' in page and "code left out" in page
    assert "Output of cell 1" in page and "Hint" in page
    assert "✓ correct" in page and "<code>385</code>" in page
    assert page_version(response) == 1
    later = data.candidate()
    assert re.search(
        rf'href="/t/{later.pk}/\?status=pending&amp;sort=oldest" data-key="j"',
        client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode(),
    )
    # Without JavaScript the editor is part of the page.
    editing = client.get(reverse("ui:segment_edit", args=[trajectory.pk, 2])).content.decode()
    assert "<html" in editing and '<textarea name="code"' in editing
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script
    assert " style=" not in page and "<style" not in page  # no inline style


class _HxLinks(HTMLParser):
    """htmx requests that would not work without JavaScript, and every URL htmx may call."""

    def __init__(self):
        super().__init__()
        self.missing = []
        self.urls = []
        self.form_action = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.form_action = attrs.get("action")
        if "hx-get" in attrs:
            self.urls.append(attrs["hx-get"])
            if not attrs.get("href") and not (tag == "form" and attrs.get("action")):
                self.missing.append((tag, attrs["hx-get"]))
        if "hx-post" in attrs:
            self.urls.append(attrs["hx-post"])
            fallback = attrs.get("action") if tag == "form" else None
            if tag == "button":
                fallback = attrs.get("formaction") or self.form_action
            if not fallback:
                self.missing.append((tag, attrs["hx-post"]))

    def handle_endtag(self, tag):
        if tag == "form":
            self.form_action = None


def test_every_htmx_link_also_works_without_javascript(client, ann, trajectory):
    pages = [
        client.get(reverse("ui:trajectory", args=[trajectory.pk])),
        client.get(reverse("ui:queue")),
        client.get(reverse("ui:diff", args=[trajectory.pk])),
        client.get(reverse("ui:rename", args=[trajectory.pk]), {"old": "totl_sum", "new": "x"}),
    ]
    for response in pages:
        parser = _HxLinks()
        parser.feed(response.content.decode())
        assert parser.missing == []
        # URLs the templates build from a prefix resolve to the workbench's views.
        for url in parser.urls:
            assert resolve(urlsplit(url).path).namespace == "ui", url


def test_model_text_is_escaped_everywhere(client, ann):
    trajectory = data.candidate(data.XSS_TEXT, hints=[])
    Trajectory.objects.filter(pk=trajectory.pk).update(extracted_answer="<b onmouseover=x>42</b>")
    for url in (
        reverse("ui:trajectory", args=[trajectory.pk]),
        reverse("ui:segment", args=[trajectory.pk, 0]) + "?full=1",
        reverse("ui:diff", args=[trajectory.pk]),
    ):
        page = client.get(url, **(HTMX if "segments" in url else {})).content.decode()
        assert "<script>" not in page and "<img" not in page and "<svg" not in page
        assert "<b onmouseover" not in page and 'href="javascript:' not in page
        assert "&lt;script&gt;" in page
    page = client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assert "{{ 7*7 }}" in page  # template syntax in model text is text too


def test_long_reasoning_is_collapsed_and_expands_on_demand(client, ann):
    long_text = "<think>\n" + "".join(f"Step {i}: we keep going.\n" for i in range(400))
    trajectory = data.candidate(long_text + "</think>\n\n\\boxed{385}", hints=[])
    page = client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assert "Step 10:" in page and "Step 399:" in page and "Step 200:" not in page
    assert "more characters — show all" in page
    expanded = client.get(
        reverse("ui:segment", args=[trajectory.pk, 0]), {"full": 1}, **HTMX
    ).content.decode()
    assert "Step 200:" in expanded and "<html" not in expanded
    no_js = client.get(reverse("ui:segment", args=[trajectory.pk, 0]))
    assert no_js.status_code == 302 and "expand=0" in no_js["Location"]
    assert "Step 200:" in client.get(no_js["Location"]).content.decode()


# --- Fixing -----------------------------------------------------------------------------------


def cell_index(trajectory, number):
    kinds = [s.kind for s in review.trajectory_segments(trajectory)]
    return [i for i, k in enumerate(kinds) if k == "code"][number - 1]


def test_editing_a_cell_swaps_only_what_changed(client, ann, trajectory):
    index = cell_index(trajectory, 2)
    editor = client.get(reverse("ui:segment_edit", args=[trajectory.pk, index]), **HTMX)
    assert editor.status_code == 200 and "<textarea" in editor.content.decode()
    body = review.trajectory_segments(trajectory)[index].body
    response = client.post(
        reverse("ui:segment_edit", args=[trajectory.pk, index]),
        {"code": body.replace("    ...", "    return value == 385"), "base_version": 1},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    swapped = re.findall(r'<div id="seg-(\d+)"[^>]*hx-swap-oob="true"', html)
    # The edited cell and its output, now stale; the others render the same.
    assert swapped == [str(index), str(index + 1)]
    assert 'id="version" class="muted" data-version="2"' in html
    assert 'id="flags"' in html and "placeholder" not in html.split('id="flags"')[1]
    trajectory.refresh_from_db()
    assert "return value == 385" in trajectory.text and trajectory.version == 2


def test_a_stale_htmx_save_gets_409_with_who_and_when(client, ann, trajectory):
    bob_client = client.__class__()
    bob_client.force_login(data.annotator("bob"))
    index = cell_index(trajectory, 1)
    url = reverse("ui:segment_edit", args=[trajectory.pk, index])
    first = bob_client.post(url, {"code": "print(385)", "base_version": 1}, **HTMX)
    assert first.status_code == 200
    stale = client.post(url, {"code": "print(0)", "base_version": 1}, **HTMX)
    assert stale.status_code == 409
    assert re.search(r"changed by bob at \d\d:\d\d:\d\d \w+ — reload", stale.content.decode())
    assert stale["HX-Retarget"] == "#alerts"
    trajectory.refresh_from_db()
    assert "print(385)" in trajectory.text and "print(0)" not in trajectory.text
    # Opening an editor from a stale page is refused too; without htmx the page reloads.
    assert client.get(url, {"base_version": 1}, **HTMX).status_code == 409
    plain = client.post(url, {"code": "print(0)", "base_version": 1})
    assert plain.status_code == 302


def test_rerun_replaces_the_output_block_with_the_real_output(client, ann, trajectory):
    index = cell_index(trajectory, 1)
    client.post(
        reverse("ui:segment_edit", args=[trajectory.pk, index]),
        {"code": "print(sum(range(100)))", "base_version": 1},
        **HTMX,
    )
    response = client.post(
        reverse("ui:segment_run", args=[trajectory.pk, index]), {"base_version": 2}, **HTMX
    )
    assert response.status_code == 200
    assert re.search(rf'id="seg-{index + 1}"[^>]*hx-swap-oob="true"', response.content.decode())
    assert "4950" in response.content.decode()
    trajectory.refresh_from_db()
    assert review.trajectory_segments(trajectory)[index + 1].body == "4950"


def test_rename_preview_then_apply(client, ann, trajectory):
    preview = client.get(
        reverse("ui:rename", args=[trajectory.pk]),
        {"old": "totl_sum", "new": "total_sum", "base_version": 1},
        **HTMX,
    )
    html = preview.content.decode()
    assert preview.status_code == 200 and 'id="panel"' in html
    assert "3 places in 1 cell" in html
    assert '<mark class="flag flag-rename">total_sum</mark>' in html
    assert "1 mention in strings or comments stay" in html
    assert Trajectory.objects.get(pk=trajectory.pk).version == 1  # a preview changes nothing
    bad = client.get(reverse("ui:rename", args=[trajectory.pk]), {"old": "a b", "new": "c"}, **HTMX)
    assert bad.status_code == 422 and "not a Python identifier" in bad.content.decode()

    applied = client.post(
        reverse("ui:rename", args=[trajectory.pk]),
        {"old": "totl_sum", "new": "total_sum", "base_version": 1},
        **HTMX,
    )
    assert applied.status_code == 200
    assert (
        '<div id="panel" class="panel-slot" hx-swap-oob="true"></div>' in applied.content.decode()
    )
    trajectory.refresh_from_db()
    assert trajectory.text.count("totl_sum") == 1  # the comment stays


def test_quick_fix_undo_and_diff(client, ann, trajectory):
    flag = Flag.objects.get(trajectory=trajectory, kind="placeholder")
    fixed = client.post(
        reverse("ui:fix", args=[trajectory.pk]),
        {"start": flag.start, "end": flag.end, "replacement": "return True", "base_version": 1},
        **HTMX,
    )
    assert fixed.status_code == 200
    diff = client.get(reverse("ui:diff", args=[trajectory.pk]), **HTMX).content.decode()
    assert '<span class="d-del">-    ...</span>' in diff
    assert '<span class="d-add">+    return True</span>' in diff
    undone = client.post(reverse("ui:undo", args=[trajectory.pk]), {"base_version": 2}, **HTMX)
    assert undone.status_code == 200
    trajectory.refresh_from_db()
    assert trajectory.text == trajectory.original_text and trajectory.version == 3
    assert [r.action for r in trajectory.revisions.order_by("id")] == ["fix_placeholder", "undo"]


def test_approve_and_next_goes_on_to_the_next_item(client, ann, trajectory):
    following = data.candidate()
    response = client.post(
        reverse("ui:decide", args=[trajectory.pk]) + "?status=pending",
        {"decision": "approved", "next": "1", "base_version": 1},
        **HTMX,
    )
    assert response["HX-Redirect"].startswith(reverse("ui:trajectory", args=[following.pk]))
    trajectory.refresh_from_db()
    assert (trajectory.review_status, trajectory.reviewed_by) == ("approved", ann)
    rejected = client.post(
        reverse("ui:decide", args=[following.pk]),
        {"decision": "rejected", "reason": "other", "other": "answer is off", "base_version": 1},
        **HTMX,
    )
    assert rejected.status_code == 200
    following.refresh_from_db()
    assert (following.review_status, following.review_reason) == ("rejected", "answer is off")
    empty = client.post(
        reverse("ui:decide", args=[following.pk]),
        {"decision": "rejected", "base_version": 2},
        **HTMX,
    )
    assert empty.status_code == 422 and "needs a reason" in empty.content.decode()


def segment_html(page: str, index: int) -> str:
    return page.split(f'<div id="seg-{index}"')[1].split('<div id="seg-')[0]


def test_a_stale_output_is_flagged_on_its_cell_refuses_approval_and_can_be_kept(
    client, ann, trajectory
):
    index = cell_index(trajectory, 1)
    edited = client.post(
        reverse("ui:segment_edit", args=[trajectory.pk, index]),
        {"code": "print(1 + 1)", "base_version": 1},  # saved, not run
        **HTMX,
    )
    assert edited.status_code == 200
    page = client.get(url_of("trajectory", trajectory)).content.decode()
    output = segment_html(page, index + 1)
    assert "output is stale: re-run the cell" in output
    keep_url = reverse("ui:segment_keep", args=[trajectory.pk, index + 1])
    assert f'hx-post="{keep_url}?' in output and "Keep output" in output

    decide = reverse("ui:decide", args=[trajectory.pk])
    refused = client.post(decide, {"decision": "approved", "base_version": 2}, **HTMX)
    assert refused.status_code == 409 and refused["HX-Retarget"] == "#alerts"
    assert "output is stale: re-run cell 1" in refused.content.decode()
    plain = client.post(decide, {"decision": "approved", "base_version": 2}, follow=True)
    assert "output is stale: re-run cell 1" in plain.content.decode()  # flashed on the page
    trajectory.refresh_from_db()
    assert trajectory.review_status == ReviewStatus.PENDING

    assert client.post(keep_url, {"base_version": 2}, **HTMX).status_code == 422  # no reason
    kept = client.post(
        keep_url, {"reason": "checked by hand: it prints 2", "base_version": 2}, **HTMX
    )
    html = kept.content.decode()
    assert kept.status_code == 200 and "keep stale output" in html
    assert "output is stale" not in html.split('id="flags"')[1]
    approved = client.post(decide, {"decision": "approved", "base_version": 3}, **HTMX)
    assert approved.status_code == 200
    trajectory.refresh_from_db()
    assert trajectory.review_status == ReviewStatus.APPROVED


def test_another_annotators_claim_refuses_edits_and_a_curator_may_take_it_over(
    client, ann, trajectory
):
    review.trajectory_claim(trajectory=trajectory, user=data.annotator("bob"))
    index = cell_index(trajectory, 1)
    refused = client.post(
        reverse("ui:segment_edit", args=[trajectory.pk, index]),
        {"code": "print(1)", "base_version": 1},
        **HTMX,
    )
    assert refused.status_code == 409
    assert re.search(r"claimed by bob until \d\d:\d\d", refused.content.decode())
    page = client.get(url_of("trajectory", trajectory)).content.decode()
    assert "Claimed by bob" in page and "Take over" not in page

    client.force_login(data.curator("cy"))
    page = client.get(url_of("trajectory", trajectory)).content.decode()
    assert "Take over" in page
    claim = reverse("ui:claim", args=[trajectory.pk])
    taken = client.post(claim, {"take_over": "1"}, **HTMX)
    assert taken.status_code == 200
    assert "Claimed by you" in taken.content.decode()
    assert "take over claim" in taken.content.decode()  # in the history
    trajectory.refresh_from_db()
    assert trajectory.claimed_by.username == "cy"
    # An annotator asking to take over is told no.
    client.force_login(ann)
    denied = client.post(claim, {"take_over": "1"}, **HTMX)
    assert denied.status_code == 403 and denied["HX-Retarget"] == "#alerts"


def test_baselines_and_progress(client, ann, trajectory):
    baseline = data.candidate(
        "<think>\nJust guess.\n</think>\n\nThe answer is \\boxed{300}.",
        round=trajectory.round,
        problem=trajectory.problem,
        hinted=False,
        candidate=Candidate.NONE,
        hints=[],
    )
    panel = client.get(reverse("ui:baselines", args=[trajectory.pk]), **HTMX).content.decode()
    assert f"{trajectory.round.name} #{baseline.sample_index}" in panel
    assert "Just guess." in panel and "✗ wrong" in panel
    review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.APPROVED, user=ann, base_version=1
    )
    page = client.get(reverse("ui:progress")).content.decode()
    assert '<rect class="bar-approved"' in page
    assert re.search(r'<th scope="row">ann</th>', page)


def test_previous_and_next_follow_the_queue_order(client, ann):
    made = [data.candidate() for _ in range(4)]
    counts = {made[0].pk: 1, made[1].pk: 3, made[2].pk: 3, made[3].pk: 0}
    for pk, count in counts.items():
        Trajectory.objects.filter(pk=pk).update(flag_count=count)
    # Most flags first, ties by id: 1, 2, 0, 3.
    page = client.get(reverse("ui:trajectory", args=[made[2].pk]), {"sort": "flags"})
    html = page.content.decode()
    assert re.search(rf'href="/t/{made[1].pk}/\?[^"]*sort=flags" data-key="k"', html)
    assert re.search(rf'href="/t/{made[0].pk}/\?[^"]*sort=flags" data-key="j"', html)


def test_a_pending_score_shows_scoring_and_polls_until_it_lands(client, ann):
    problem = ProblemFactory(
        domain=Domain.CODE,
        prompt="Write add(a, b).",
        entry_point="add",
        tests=[{"type": "call", "args": [2, 3], "expected": 5}],
    )
    trajectory = data.candidate("```python\ndef add(a, b):\n    return a + b\n```", problem=problem)
    Trajectory.objects.filter(pk=trajectory.pk).update(
        score_details={"reason": "scoring…", "pending": True}, is_correct=None
    )
    score_url = reverse("ui:score", args=[trajectory.pk])
    page = client.get(url_of("trajectory", trajectory)).content.decode()
    assert "scoring…" in page and f'hx-get="{score_url}"' in page
    assert 'hx-trigger="every 2s"' in page
    services.trajectory_score(trajectory=Trajectory.objects.get(pk=trajectory.pk))  # the queue
    card = client.get(score_url, **HTMX).content.decode()
    assert card.strip().startswith('<div id="score"') and "scoring…" not in card
    assert "hx-trigger" not in card  # landed: polling stops

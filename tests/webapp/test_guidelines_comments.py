"""Guidelines and comments in the workbench (no browser): who sees what, what they render to."""

import pytest
from django.urls import reverse

from curation import review
from curation.models import Comment, Dataset, DatasetKind, Trajectory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
MARKUP = (
    "# Rules\n\nFix **placeholders**; see [the paper](https://arxiv.org/abs/2503.04625).\n\n"
    "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
    "{{ request.user }} {% csrf_token %}"
)


@pytest.fixture
def ann(client):
    client.force_login(data.annotator("ann"))
    return client


def test_guidelines_of_the_datasets_a_trajectory_may_go_into(ann):
    trajectory = data.candidate()  # a D_seed candidate
    Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED, guidelines=MARKUP)
    Dataset.objects.create(name="d-start", kind=DatasetKind.START, guidelines="RFT rules")
    Dataset.objects.create(name="empty", kind=DatasetKind.CUSTOM)
    url = reverse("ui:guidelines", args=[trajectory.pk])
    panel = ann.get(url, **HTMX).content.decode()
    assert "d-seed" in panel and "RFT rules" not in panel and "empty" not in panel
    assert "<h1>Rules</h1>" in panel and "<strong>placeholders</strong>" in panel
    assert '<a href="https://arxiv.org/abs/2503.04625" rel="noopener noreferrer nofollow">' in panel
    # HTML shows as text, the javascript: link stays text, template syntax is not evaluated.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel and "<script>alert" not in panel
    assert "<img" not in panel and 'href="javascript' not in panel
    assert "{{ request.user }} {% csrf_token %}" in panel and "csrfmiddlewaretoken" not in panel
    # Without htmx the same URL is the whole page with the panel open; `g` is its shortcut.
    page = ann.get(url).content.decode()
    assert "<h1>Rules</h1>" in page and 'data-key="g"' in page


def test_no_guidelines_says_where_curators_write_them(ann):
    trajectory = data.candidate()
    panel = ann.get(reverse("ui:guidelines", args=[trajectory.pk]), **HTMX).content.decode()
    assert "No dataset this trajectory may go into has guidelines yet" in panel


def test_a_comment_on_a_cell_is_shown_to_the_next_reviewer(ann, client):
    trajectory = data.candidate()
    cell = [i for i, s in enumerate(review.trajectory_segments(trajectory)) if s.kind == "code"][1]
    url = reverse("ui:comment", args=[trajectory.pk])
    body = {"body": "Cell 2 **repeats** cell 1. " + MARKUP, "segment_index": cell}
    card = ann.post(url, {**body, "base_version": 1}, **HTMX)
    assert card.status_code == 200
    html = card.content.decode()
    assert 'id="comments"' in html and "<strong>repeats</strong>" in html
    assert f'<a href="#seg-{cell}">on cell 2</a>' in html
    assert "<script>alert" not in html and "<img" not in html and 'href="javascript' not in html
    comment = Comment.objects.get()
    assert (comment.author.username, comment.segment_index, comment.version) == ("ann", cell, 1)
    assert Trajectory.objects.get(pk=trajectory.pk).version == 1  # nobody's page goes stale

    # The next reviewer sees it on the page.
    client.force_login(data.annotator("bob"))
    page = client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assert "<strong>repeats</strong>" in page and "ann," in page


def test_a_bad_or_stale_comment_is_refused_and_nothing_is_lost(ann):
    trajectory = data.candidate()
    url = reverse("ui:comment", args=[trajectory.pk])
    blank = ann.post(url, {"body": "   ", "base_version": 1}, **HTMX)
    assert blank.status_code == 422 and blank["HX-Retarget"] == "#alerts"
    Trajectory.objects.filter(pk=trajectory.pk).update(version=2)
    stale = ann.post(url, {"body": "a note", "base_version": 1}, **HTMX)
    assert stale.status_code == 409 and "reload" in stale.content.decode()
    assert not Comment.objects.exists()
    # Without JavaScript: a redirect back to the page, the message flashed there.
    plain = ann.post(url, {"body": "a note", "base_version": 1})
    assert plain.status_code == 302


def test_a_suggestion_shows_in_the_decide_card_and_decides_nothing(ann):
    trajectory = data.candidate()
    judge = data.curator("judge-bot")
    review.trajectory_suggest(
        trajectory=trajectory,
        decision="rejected",
        reason="the boxed answer <b>is</b> wrong",
        source="judge-7b",
        author=judge,
        base_version=1,
    )
    page = ann.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assert 'id="suggestion"' in page and "Suggested: <strong>reject</strong>" in page
    assert "by judge-bot (judge-7b)" in page and "&lt;b&gt;is&lt;/b&gt;" in page
    assert "the text changed since" not in page
    assert Trajectory.objects.get(pk=trajectory.pk).review_status == "pending"
    Trajectory.objects.filter(pk=trajectory.pk).update(version=3)
    page = ann.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assert "for v1 — the text changed since" in page


def test_curators_write_guidelines_on_the_datasets_admin_page(client):
    curator = data.curator("cy")
    curator.is_staff = True
    curator.save()
    client.force_login(curator)
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    url = reverse("admin:curation_dataset_change", args=[dataset.pk])
    assert 'name="guidelines"' in client.get(url).content.decode()
    fields = {"name": "d-seed", "kind": "d_seed", "description": "", "guidelines": "# Fix `...`"}
    assert client.post(url, fields).status_code == 302
    assert Dataset.objects.get().guidelines == "# Fix `...`"

"""The workbench's rough edges, through Django's test client: output blocks only come from
running a cell, a conflict keeps the typed edit in a merge view, KaTeX is served by the app."""

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from curation import review
from curation.models import Trajectory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def trajectory():
    return data.candidate()


@pytest.fixture
def ann(client):
    user = data.annotator("ann")
    client.force_login(user)
    return user


def index_of(trajectory, kind, number=1):
    kinds = [s.kind for s in review.trajectory_segments(trajectory)]
    return [i for i, k in enumerate(kinds) if k == kind][number - 1]


def segment_html(page: str, index: int) -> str:
    start = page.index(f'id="seg-{index}"')
    return page[start : page.index('<div id="seg-', start + 1)]


def test_an_output_block_offers_no_edit_or_delete_only_its_cell_runs(client, ann, trajectory):
    page = client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    output = segment_html(page, index_of(trajectory, "output"))
    assert "Delete" not in output and "data-edit" not in output
    cell = segment_html(page, index_of(trajectory, "code"))
    assert "Delete" in cell and "data-edit" in cell and ">Run<" in cell


def test_deleting_an_output_block_by_hand_is_refused_with_the_reason(client, ann, trajectory):
    index = index_of(trajectory, "output")
    url = reverse("ui:segment_delete", args=[trajectory.pk, index])
    htmx = client.post(url, {"base_version": 1}, **HTMX)
    assert htmx.status_code == 422 and htmx["HX-Retarget"] == "#alerts"
    assert "output block comes from running its cell" in htmx.content.decode()
    plain = client.post(url, {"base_version": 1}, follow=True)
    assert "output block comes from running its cell" in plain.content.decode()
    assert Trajectory.objects.get(pk=trajectory.pk).text == data.SAMPLE_TEXT
    with pytest.raises(ValueError, match="running its cell"):
        review.trajectory_delete_segment(
            trajectory=trajectory, segment_index=index, author=ann, base_version=1
        )


def test_a_text_edit_may_not_write_or_remove_an_output_block(client, ann, trajectory):
    think = index_of(trajectory, "think", 2)  # "So the sum is 385. Let me double check..."
    url = reverse("ui:segment_edit", args=[trajectory.pk, think])
    forged = "So it is 385.\n```python\nprint(1)\n```\n```output\n1\n```\nDone.\n"
    response = client.post(url, {"text": forged, "base_version": 1}, **HTMX)
    assert response.status_code == 422
    assert "output block comes from running its cell" in response.content.decode()
    assert Trajectory.objects.get(pk=trajectory.pk).version == 1
    # A plain text edit is still fine.
    fine = client.post(url, {"text": "So the sum is 385.\n", "base_version": 1}, **HTMX)
    assert fine.status_code == 200


def test_a_conflict_keeps_the_typed_edit_beside_theirs_with_the_diff(client, ann, trajectory):
    bob = client.__class__()
    bob.force_login(data.annotator("bob"))
    index = index_of(trajectory, "code")
    url = reverse("ui:segment_edit", args=[trajectory.pk, index])
    assert bob.post(url, {"code": "print('bob')", "base_version": 1}, **HTMX).status_code == 200

    stale = client.post(url, {"code": "print('ann')\nprint(2)", "base_version": 1}, **HTMX)
    assert stale.status_code == 409 and stale["HX-Retarget"] == "#alerts"
    html = stale.content.decode()
    assert re.search(r"changed by bob at \d\d:\d\d:\d\d", html)
    assert '<div id="panel" class="panel-slot" hx-swap-oob="true">' in html
    assert re.search(r'id="merge-yours">print\(&#x27;ann&#x27;\)\nprint\(2\)</pre>', html)
    assert re.search(r'id="merge-theirs">print\(&#x27;bob&#x27;\)</pre>', html)
    assert '<span class="d-del">-print(&#x27;bob&#x27;)</span>' in html
    assert '<span class="d-add">+print(&#x27;ann&#x27;)</span>' in html
    # "Save mine over theirs" posts the typed text on the version it was shown against (once
    # bob's lease is over: his save had claimed the item).
    Trajectory.objects.filter(pk=trajectory.pk).update(claimed_by=None, claimed_until=None)
    form = re.search(r'<form method="post" action="([^"]+)" class="panel-actions">', html)
    assert 'name="base_version" value="2" data-fixed' in html
    saved = client.post(form.group(1), {"code": "print('ann')\nprint(2)", "base_version": 2})
    assert saved.status_code == 302
    stored = Trajectory.objects.get(pk=trajectory.pk)
    assert stored.version == 3 and "print('ann')\nprint(2)" in stored.text


def test_katex_is_served_by_the_app_on_the_trajectory_page(client, ann, trajectory):
    page = client.get(reverse("ui:trajectory", args=[trajectory.pk])).content.decode()
    assets = re.findall(r'(?:src|href)="/static/(vendor/katex/[^"]+)"', page)
    assert sorted(assets) == [
        "vendor/katex/contrib/auto-render.min.js",
        "vendor/katex/katex.min.css",
        "vendor/katex/katex.min.js",
    ]
    assert all(finders.find(asset) for asset in assets)
    css = Path(finders.find("vendor/katex/katex.min.css")).read_text(encoding="utf-8")
    fonts = set(re.findall(r"url\((fonts/[^)]+)\)", css))
    assert fonts and all(finders.find(f"vendor/katex/{font}") for font in fonts)

"""The write API: the workbench's edits, runs, renames, decisions, comments and pre-annotations
over REST, each carrying the version it started from (409 when stale, and nothing changes)."""

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from curation import review
from curation.models import Comment, ReviewStatus, Revision, Suggestion, Trajectory
from curation.roles import ANNOTATOR, CURATOR
from tests.factories import UserFactory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def ann() -> APIClient:
    return _client(data.annotator("ann"))


@pytest.fixture
def judge() -> APIClient:
    """A script account that may only read trajectories and pre-annotate them."""
    user = UserFactory(username="judge-bot")
    for codename in ("view_trajectory", "add_suggestion"):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="curation", codename=codename)
        )
    return _client(user)


def _cells(trajectory) -> list[int]:
    segments = review.trajectory_segments(Trajectory.objects.get(pk=trajectory.pk))
    return [i for i, s in enumerate(segments) if s.kind == "code"]


def _unchanged(trajectory, *, version: int = 1) -> None:
    stored = Trajectory.objects.get(pk=trajectory.pk)
    assert (stored.text, stored.version) == (trajectory.text, version)


def test_edit_run_rename_and_approve_as_the_workbench_does(ann):
    trajectory = data.candidate()
    url = f"/api/trajectories/{trajectory.pk}"
    first, second = _cells(trajectory)

    edited = ann.post(
        f"{url}/edit/",
        {"segment_index": first, "text": "print(6 * 7)", "rerun": True, "base_version": 1},
        format="json",
    )
    assert edited.status_code == 200, edited.content
    assert edited.json()["version"] == 2
    stored = Trajectory.objects.get(pk=trajectory.pk)
    assert "```python\nprint(6 * 7)\n```\n```output\n42\n```" in stored.text
    assert stored.claimed_by.username == "ann"  # an edit claims, as in the workbench

    prose = ann.post(
        f"{url}/edit/",
        {"segment_index": first + 2, "text": "So it is 42.\n", "base_version": 2},
        format="json",
    )
    assert prose.status_code == 200 and prose.json()["version"] == 3

    renamed = ann.post(
        f"{url}/rename/", {"old": "totl_sum", "new": "total_sum", "base_version": 3}, format="json"
    )
    assert renamed.status_code == 200 and renamed.json()["version"] == 4
    # The rename made cell 2's output stale: approving waits for a re-run.
    stale = ann.post(f"{url}/decide/", {"decision": "approved", "base_version": 4}, format="json")
    assert stale.status_code == 409 and "output is stale" in stale.json()["detail"]
    rerun = ann.post(f"{url}/rerun/", {"segment_index": second, "base_version": 4}, format="json")
    assert rerun.status_code == 200 and rerun.json()["version"] == 5
    approved = ann.post(
        f"{url}/decide/", {"decision": "approved", "base_version": 5}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["review_status"] == "approved"
    actions = list(
        Revision.objects.filter(trajectory=trajectory)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["edit_code_run", "edit_text", "rename", "rerun", "decide_approved"]


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("edit", {"segment_index": 2, "text": "print(1)"}),
        ("edit", {"segment_index": 2, "text": "print(1)", "rerun": True}),
        ("rerun", {"segment_index": 2}),
        ("rename", {"old": "totl_sum", "new": "total_sum"}),
        ("decide", {"decision": "rejected", "reason": "Wrong final answer"}),
        ("comments", {"body": "a note"}),
    ],
)
def test_a_stale_version_is_a_409_and_changes_nothing(ann, action, body):
    trajectory = data.candidate()
    Trajectory.objects.filter(pk=trajectory.pk).update(version=2)  # someone saved since
    response = ann.post(
        f"/api/trajectories/{trajectory.pk}/{action}/", {**body, "base_version": 1}, format="json"
    )
    assert response.status_code == 409, response.content
    assert "reload" in response.json()["detail"]
    _unchanged(trajectory, version=2)
    assert not Revision.objects.filter(trajectory=trajectory).exists()
    assert not Comment.objects.filter(trajectory=trajectory).exists()
    assert Trajectory.objects.get(pk=trajectory.pk).claimed_by is None


def test_another_annotators_claim_refuses_writes_but_not_comments(ann):
    trajectory = data.candidate()
    review.trajectory_claim(trajectory=trajectory, user=data.annotator("bob"))
    url = f"/api/trajectories/{trajectory.pk}"
    cell = _cells(trajectory)[0]
    edit = ann.post(
        f"{url}/edit/", {"segment_index": cell, "text": "x = 1", "base_version": 1}, format="json"
    )
    assert edit.status_code == 409 and edit.json()["detail"].startswith("claimed by bob")
    _unchanged(trajectory)
    note = ann.post(
        f"{url}/comments/", {"body": "bob, cell 2 looks off", "base_version": 1}, format="json"
    )
    assert note.status_code == 201


def test_bad_input_is_a_400_naming_the_field(ann):
    trajectory = data.candidate()
    url = f"/api/trajectories/{trajectory.pk}"
    cell = _cells(trajectory)[0]
    cases = [
        ("edit", {"segment_index": 99, "text": "x"}, "segment_index", "no segment 99"),
        ("edit", {"segment_index": cell + 1, "text": "x"}, "segment_index", "is output"),
        ("edit", {"segment_index": 0, "text": "x", "rerun": True}, "rerun", "only a code cell"),
        ("rerun", {"segment_index": 0}, "segment_index", "not code"),
        ("rename", {"old": "totl_sum", "new": "1bad"}, "new", ""),
        ("edit", {"text": "x"}, "segment_index", "required"),
        ("comments", {"body": "  "}, "body", "blank"),
        ("comments", {"body": "x", "start": 5}, "non_field_errors", "both its start and"),
        ("comments", {"body": "x", "start": 5, "end": 10**6}, "non_field_errors", "not inside"),
    ]
    for action, body, field, words in cases:
        response = ann.post(f"{url}/{action}/", {**body, "base_version": 1}, format="json")
        assert response.status_code == 400, (action, body, response.content)
        assert words in " ".join(response.json()[field]), (action, body, response.json())
    _unchanged(trajectory)
    assert not Comment.objects.exists()


def test_comments_on_the_trajectory_a_cell_or_a_span(ann):
    trajectory = data.candidate()
    url = f"/api/trajectories/{trajectory.pk}/comments/"
    cell = _cells(trajectory)[1]
    assert (
        ann.post(url, {"body": "Looks right.", "base_version": 1}, format="json").status_code == 201
    )
    on_cell = ann.post(
        url,
        {"body": "This cell repeats the first.", "segment_index": cell, "base_version": 1},
        format="json",
    )
    assert on_cell.status_code == 201 and on_cell.json()["segment_index"] == cell
    span = ann.post(url, {"body": "typo", "start": 5, "end": 12, "base_version": 1}, format="json")
    assert span.status_code == 201
    listed = ann.get(url).json()
    assert [c["body"] for c in listed] == ["Looks right.", "This cell repeats the first.", "typo"]
    assert all(c["author"] == "ann" and c["version"] == 1 for c in listed)
    # Comments change neither the text nor the version: nobody's page goes stale.
    _unchanged(trajectory)
    detail = ann.get(f"/api/trajectories/{trajectory.pk}/").json()
    assert [c["body"] for c in detail["comments"]] == [c["body"] for c in listed]


def test_a_judge_suggests_and_the_human_decides(judge, ann):
    trajectory = data.candidate()
    url = f"/api/trajectories/{trajectory.pk}"
    body = {"decision": "approved", "reason": "answer 385 checks", "source": "judge-7b"}
    response = judge.post(f"{url}/suggest/", {**body, "base_version": 1}, format="json")
    assert response.status_code == 201, response.content
    stored = Trajectory.objects.get(pk=trajectory.pk)
    # Never an approval: the review status, claim and version are as they were.
    assert (stored.review_status, stored.version, stored.claimed_by) == ("pending", 1, None)
    assert Suggestion.objects.get().decision == "approved"
    suggestion = ann.get(f"{url}/").json()["suggestion"]
    assert suggestion["decision"] == "approved" and suggestion["author"] == "judge-bot"
    assert (suggestion["source"], suggestion["version"]) == ("judge-7b", 1)

    listed = ann.get("/api/trajectories/", {"suggested": "true"}).json()["results"]
    assert [t["id"] for t in listed] == [trajectory.pk]
    assert ann.get("/api/trajectories/", {"suggested": "false"}).json()["results"] == []

    # The judge can neither decide nor edit; a suggestion for an older version is a 409.
    decide = judge.post(f"{url}/decide/", {"decision": "approved", "base_version": 1})
    assert decide.status_code == 403
    skipped = {"decision": "skipped", "base_version": 1}
    assert judge.post(f"{url}/suggest/", skipped, format="json").status_code == 400
    Trajectory.objects.filter(pk=trajectory.pk).update(version=2)
    stale = judge.post(f"{url}/suggest/", {**body, "base_version": 1}, format="json")
    assert stale.status_code == 409
    assert Suggestion.objects.count() == 1
    assert Trajectory.objects.get(pk=trajectory.pk).review_status == ReviewStatus.PENDING
    # The text moved on: the suggestion was about an older version, so it is left to judge.
    unjudged = ann.get("/api/trajectories/", {"suggested": "false"}).json()["results"]
    assert [t["id"] for t in unjudged] == [trajectory.pk]


def test_write_permissions_by_role():
    trajectory = data.candidate()
    viewer = _client(data.viewer())
    url = f"/api/trajectories/{trajectory.pk}"
    for action, body in (
        ("edit", {"segment_index": 0, "text": "x"}),
        ("rerun", {"segment_index": 2}),
        ("rename", {"old": "a", "new": "b"}),
        ("comments", {"body": "x"}),
        ("suggest", {"decision": "approved"}),
    ):
        response = viewer.post(f"{url}/{action}/", {**body, "base_version": 1}, format="json")
        assert response.status_code == 403, action
    assert viewer.get(f"{url}/comments/").status_code == 403
    annotator = Group.objects.get(name=ANNOTATOR).permissions.values_list("codename", flat=True)
    curator = Group.objects.get(name=CURATOR).permissions.values_list("codename", flat=True)
    assert {"add_comment", "view_comment", "view_suggestion"} <= set(annotator)
    assert "add_suggestion" not in annotator and "add_suggestion" in curator


def test_an_id_that_is_no_number_is_a_404_everywhere(ann):
    for action in ("", "comments/", "edit/", "suggest/"):
        response = ann.get(f"/api/trajectories/null,null/{action}")
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}

"""Teams in the workbench and the API: the progress page's agreement, time on task and
assignments; assigning; overlap on the trajectory page."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from curation import review
from curation.models import Assignment, ReviewStatus
from tests.factories import RoundFactory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


def decide(trajectory, user, decision, reason=""):
    trajectory.refresh_from_db()
    return review.trajectory_decide(
        trajectory=trajectory,
        decision=decision,
        user=user,
        base_version=trajectory.version,
        reason=reason,
    )


def test_the_progress_page_shows_agreement_time_on_task_and_assignments(client):
    ann, bob, cy = data.annotator("ann"), data.annotator("bob"), data.curator("cy")
    round_ = RoundFactory(reviews_required=2)
    for second in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
        trajectory = data.candidate(round=round_)
        review.trajectory_claim(trajectory=trajectory, user=ann)
        decide(trajectory, ann, ReviewStatus.APPROVED)
        review.trajectory_claim(trajectory=trajectory, user=bob)
        decide(trajectory, bob, second, "Wrong final answer")
    client.force_login(cy)

    response = client.post(
        reverse("ui:assign"), {"annotator": ann.pk, "round": round_.pk, "quota": 20}
    )
    assert response.status_code == 302
    assert Assignment.objects.get().filters["round"] == round_.pk

    page = client.get(reverse("ui:progress")).content.decode()
    assert "2 items reviewed by two or more annotators" in page
    assert "ann · bob" in page
    assert 'aria-label="Decisions per hour, per annotator"' in page
    assert "0 / 20" in page
    assert 'href="/?status=disputed"' in page


def test_an_annotator_cannot_assign_and_a_viewer_gets_no_form(client):
    ann = data.annotator("ann")
    client.force_login(ann)
    response = client.post(reverse("ui:assign"), {"annotator": ann.pk, "quota": 5})
    assert response.status_code == 403
    assert "Assign</button>" not in client.get(reverse("ui:progress")).content.decode()
    assert not Assignment.objects.exists()


def test_a_bad_quota_is_refused_with_the_field_s_error(client):
    client.force_login(data.curator("cy"))
    response = client.post(
        reverse("ui:assign"), {"annotator": data.annotator("ann").pk, "quota": 0}, follow=True
    )
    assert "greater than or equal to 1" in response.content.decode()
    assert not Assignment.objects.exists()


def test_the_trajectory_page_shows_the_overlap_and_only_curators_see_who_decided(client):
    ann, bob, cy = data.annotator("ann"), data.annotator("bob"), data.curator("cy")
    trajectory = data.candidate(round=RoundFactory(reviews_required=2))
    decide(trajectory, ann, ReviewStatus.APPROVED)
    url = reverse("ui:trajectory", args=[trajectory.pk])

    client.force_login(bob)
    page = client.get(url).content.decode()
    assert "1 of 2 reviews" in page and "ann: approve" not in page
    decide(trajectory, bob, ReviewStatus.REJECTED, "Wrong final answer")

    page = client.get(url).content.decode()
    assert "Disputed:" in page and "a curator decides" in page
    assert "Approve &amp; next" not in page

    client.force_login(cy)
    page = client.get(url).content.decode()
    assert "your decision settles it" in page
    assert "ann: approve" in page and "bob: reject — Wrong final answer" in page
    assert "Approve &amp; next" in page


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_creates_assignments_and_refuses_a_user_who_is_not_an_annotator():
    cy, ann = data.curator("cy"), data.annotator("ann")
    round_ = RoundFactory()
    api = _api(cy)
    created = api.post(
        "/api/assignments/", {"annotator": "ann", "round": round_.pk, "quota": 3}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["filters"]["round"] == round_.pk
    assert api.get("/api/assignments/").json()[0]["done"] == 0

    refused = api.post(
        "/api/assignments/",
        {"annotator": data.viewer("viewer").username, "quota": 3},
        format="json",
    )
    assert refused.status_code == 400
    assert "viewer is not an annotator" in refused.json()["annotator"][0]
    unknown = api.post(
        "/api/assignments/",
        {"annotator": "ann", "quota": 3, "filters": {"colour": "red"}},
        format="json",
    )
    assert unknown.status_code == 400 and "colour" in unknown.json()["filters"][0]
    assert _api(ann).post("/api/assignments/", {}, format="json").status_code == 403
    assert Assignment.objects.count() == 1


def test_the_api_reports_agreement():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    round_ = RoundFactory(reviews_required=2)
    trajectory = data.candidate(round=round_)
    decide(trajectory, ann, ReviewStatus.APPROVED)
    decide(trajectory, bob, ReviewStatus.APPROVED)
    body = _api(data.curator("cy")).get(f"/api/agreement/?round={round_.pk}").json()
    assert body["items"] == 1
    assert body["pairs"][0]["agreement"] == 1.0 and body["alpha"] is None
    assert _api(ann).get("/api/agreement/").status_code == 403

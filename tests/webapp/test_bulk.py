"""Curators' bulk actions (curation.bulk) through the service, the queue page and the API; and
search through the queue page and the API."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from curation import bulk, review, selectors
from curation.bulk import BulkAction
from curation.models import ReviewStatus, Revision, Trajectory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db

STALE_OUTPUT = data.SAMPLE_TEXT.replace("print(total_sum)\n", "print(total_sum * 2)\n", 1)


@pytest.fixture
def cy():
    return data.curator("cy")


@pytest.fixture
def items():
    """Three free candidates, one held by another annotator, one whose output is stale."""
    free = [data.candidate() for _ in range(3)]
    held = data.candidate()
    review.trajectory_claim(trajectory=held, user=data.annotator("ann"))
    stale = data.candidate()
    Trajectory.objects.filter(pk=stale.pk).update(text=STALE_OUTPUT)
    return {"free": free, "held": held, "stale": stale}


def status_of(*trajectories) -> list[str]:
    return [Trajectory.objects.get(pk=t.pk).review_status for t in trajectories]


def test_bulk_approve_skips_held_and_refused_items_and_says_why(cy, items):
    ids = [t.pk for t in items["free"]] + [items["held"].pk, items["stale"].pk, 999_999]
    result = bulk.trajectories_bulk_act(action=BulkAction.APPROVE, trajectory_ids=ids, user=cy)
    assert result.done == sorted(t.pk for t in items["free"])
    assert result.held == [items["held"].pk]
    assert list(result.refused) == [items["stale"].pk]
    assert "stale" in result.refused[items["stale"].pk]
    assert result.missing == [999_999] and result.skipped == 3
    assert result.summary() == (
        "approve: 3 done, 1 skipped (held by another annotator), 1 skipped (refused), 1 not found"
    )
    assert status_of(*items["free"]) == [ReviewStatus.APPROVED] * 3
    assert status_of(items["held"], items["stale"]) == [ReviewStatus.PENDING] * 2
    # Each approval is the single action's revision, by the curator.
    revisions = Revision.objects.filter(action="decide_approved")
    assert sorted(revisions.values_list("trajectory_id", flat=True)) == result.done
    assert set(revisions.values_list("author__username", flat=True)) == {"cy"}


def test_bulk_reject_needs_a_reason_and_records_it(cy, items):
    ids = [t.pk for t in items["free"]]
    with pytest.raises(ValueError, match="needs a reason"):
        bulk.trajectories_bulk_act(action="reject", trajectory_ids=ids, user=cy, reason="  ")
    assert status_of(*items["free"]) == [ReviewStatus.PENDING] * 3
    result = bulk.trajectories_bulk_act(
        action="reject", trajectory_ids=ids, user=cy, reason="Wrong final answer"
    )
    assert len(result.done) == 3
    assert set(Trajectory.objects.filter(pk__in=ids).values_list("review_reason", flat=True)) == {
        "Wrong final answer"
    }


def test_reassign_frees_held_items_or_leases_them_to_an_annotator(cy, items):
    held = items["held"]
    result = bulk.trajectories_bulk_act(action="reassign", trajectory_ids=[held.pk], user=cy)
    assert result.done == [held.pk] and result.skipped == 0
    held.refresh_from_db()
    assert held.claimed_by is None and held.claimed_until is None
    revision = Revision.objects.get(trajectory=held, action=bulk.RELEASE_ACTION)
    assert revision.reason == "reassigned the claim of ann back to the queue (bulk)"

    bo = data.annotator("bo")
    bulk.trajectories_bulk_act(action="reassign", trajectory_ids=[held.pk], user=cy, assignee=bo)
    held.refresh_from_db()
    assert held.claimed_by == bo and held.claimed_until > timezone.now() + timedelta(minutes=20)
    with pytest.raises(ValueError, match="is not an annotator"):
        bulk.trajectories_bulk_act(
            action="reassign", trajectory_ids=[held.pk], user=cy, assignee=data.viewer()
        )


def test_rescore_writes_a_revision_and_the_score(cy, items):
    target = items["free"][0]
    Trajectory.objects.filter(pk=target.pk).update(is_correct=None)
    result = bulk.trajectories_bulk_act(
        action="rescore", trajectory_ids=[target.pk, items["held"].pk], user=cy
    )
    assert result.done == [target.pk] and result.held == [items["held"].pk]
    assert Trajectory.objects.get(pk=target.pk).is_correct is True
    assert Revision.objects.filter(trajectory=target, action=bulk.RESCORE_ACTION).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "delete"}, "unknown bulk action"),
        ({"trajectory_ids": []}, "at least one"),
        ({"trajectory_ids": range(1, bulk.MAX_SELECTION + 2)}, "at most 1000"),
        ({"assignee": "ann"}, "only a reassignment names an annotator"),
    ],
)
def test_bad_bulk_requests_are_refused_before_anything_changes(cy, items, kwargs, message):
    if kwargs.get("assignee"):
        kwargs["assignee"] = data.annotator("ann")
    arguments = {"action": "approve", "trajectory_ids": [items["free"][0].pk], "user": cy}
    with pytest.raises(ValueError, match=message):
        bulk.trajectories_bulk_act(**{**arguments, **kwargs})
    assert status_of(items["free"][0]) == [ReviewStatus.PENDING]


def test_only_curators_act_in_bulk(items):
    with pytest.raises(PermissionDenied):
        bulk.trajectories_bulk_act(
            action="approve", trajectory_ids=[items["free"][0].pk], user=data.annotator("al")
        )


# --- The queue page ----------------------------------------------------------------------------


def test_the_queue_offers_bulk_actions_to_curators_only(client, cy, items):
    client.force_login(data.annotator("al"))
    page = client.get(reverse("ui:queue")).content.decode()
    assert 'id="bulk"' not in page and 'name="ids"' not in page
    response = client.post(reverse("ui:bulk"), {"action": "approve", "ids": [items["free"][0].pk]})
    assert response.status_code == 403
    client.force_login(cy)
    page = client.get(reverse("ui:queue")).content.decode()
    assert 'id="bulk"' in page
    assert f'name="ids" value="{items["free"][0].pk}" form="bulk"' in page


def test_a_bulk_action_from_the_queue_reports_done_and_skipped(client, cy, items):
    client.force_login(cy)
    ids = [t.pk for t in items["free"]] + [items["held"].pk]
    response = client.post(
        f"{reverse('ui:bulk')}?status=pending&sort=newest",
        {"action": "reject", "ids": ids, "reason": "Truncated: the trajectory never finishes"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == f"{reverse('ui:queue')}?status=pending&sort=newest"
    page = response.content.decode()
    assert "reject: 3 done, 1 skipped (held by another annotator)" in page
    assert status_of(*items["free"]) == [ReviewStatus.REJECTED] * 3
    # A rejection without a reason changes nothing and says why.
    page = client.post(
        reverse("ui:bulk"), {"action": "reject", "ids": [items["stale"].pk]}, follow=True
    ).content.decode()
    assert "a rejection needs a reason" in page
    assert status_of(items["stale"]) == [ReviewStatus.PENDING]


def test_the_queue_searches_and_says_when_a_search_cannot_match(client, cy, items):
    other = data.candidate(data.SAMPLE_TEXT.replace("Both agree.", "Both agree: a tetrahedron."))
    client.force_login(cy)
    page = client.get(reverse("ui:queue"), {"status": "", "search": "tetrahedrons"})
    body = page.content.decode()
    assert f'value="{other.pk}" form="bulk"' in body and "1 item" in body
    assert 'value="tetrahedrons"' in body  # the search box keeps it
    counts = client.get(
        reverse("ui:queue_counts"), {"status": "", "search": "tetrahedrons"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Pending (1)" in counts
    past_the_end = client.get(reverse("ui:queue"), {"status": "", "search": "sum", "page": 9})
    assert "Page 1 of 1" in past_the_end.content.decode()  # the last page, with its rows
    assert f'value="{other.pk}" form="bulk"' in past_the_end.content.decode()
    body = client.get(reverse("ui:queue"), {"search": "the of"}).content.decode()
    assert "has no words to search for" in body and "Nothing matches" in body


def test_a_broad_search_is_counted_up_to_a_cap_and_not_per_filter(client, cy, items, monkeypatch):
    monkeypatch.setattr(selectors, "SEARCH_COUNT_CAP", 2)
    client.force_login(cy)
    body = client.get(reverse("ui:queue"), {"status": "", "search": "sum"}).content.decode()
    assert "2+ items" in body
    assert body.count('name="ids"') == 2  # a page of rows, walked in the queue's order
    counts = client.get(
        reverse("ui:queue_counts"), {"status": "", "search": "sum"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Too many matches to count each filter value" in counts and "Pending (" not in counts
    narrow = client.get(reverse("ui:queue"), {"status": "", "search": "sum", "round": 10**6})
    assert "0 items" in narrow.content.decode()  # under the cap again: counted exactly


# --- The API ------------------------------------------------------------------------------------


def api(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_the_api_acts_in_bulk_and_lists_what_it_skipped(cy, items):
    url = reverse("api:trajectory-bulk")
    ids = [items["free"][0].pk, items["held"].pk, items["stale"].pk]
    response = api(cy).post(url, {"action": "approve", "ids": ids}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["done"] == [items["free"][0].pk]
    assert body["held"] == [items["held"].pk] and body["skipped"] == 2
    assert list(body["refused"]) == [str(items["stale"].pk)]
    response = api(cy).post(
        url, {"action": "reassign", "ids": ids[1:2], "assignee": "ann"}, format="json"
    )
    assert response.status_code == 200 and response.json()["done"] == ids[1:2]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"action": "reject", "ids": [1]}, "detail"),  # no reason
        ({"action": "approve", "ids": []}, "ids"),
        ({"action": "approve", "ids": ["x"]}, "ids"),
        ({"action": "merge", "ids": [1]}, "action"),
        ({"action": "reassign", "ids": [1], "assignee": "nobody-here"}, "assignee"),
    ],
)
def test_the_api_refuses_bad_bulk_requests_with_400(cy, items, payload, field):
    payload["ids"] = [items["free"][0].pk if i == 1 else i for i in payload["ids"]]
    response = api(cy).post(reverse("api:trajectory-bulk"), payload, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert status_of(items["free"][0]) == [ReviewStatus.PENDING]


def test_annotators_get_403_from_the_bulk_api(items):
    response = api(data.annotator("al")).post(
        reverse("api:trajectory-bulk"), {"action": "approve", "ids": [1]}, format="json"
    )
    assert response.status_code == 403


def test_the_api_searches_with_its_filters(cy, items):
    other = data.candidate(data.SAMPLE_TEXT.replace("Both agree.", "Both agree: a tetrahedron."))
    client = api(cy)
    url = reverse("api:trajectory-list")
    found = client.get(url, {"search": "tetrahedron", "review_status": "pending"}).json()
    assert [row["id"] for row in found["results"]] == [other.pk]
    assert (
        client.get(url, {"search": "tetrahedron", "review_status": "approved"}).json()["results"]
        == []
    )
    bad = client.get(url, {"search": "the"})
    assert bad.status_code == 400 and "no words to search for" in bad.json()["search"][0]
    assert client.get(url, {"search": "x" * 201}).status_code == 400

"""Review by teams: overlap (k reviews), adjudication, assignments, agreement, time on task."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from curation import review, selectors
from curation.models import Review, ReviewStatus, Trajectory
from curation.selectors import QueueFilters
from tests.factories import RoundFactory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db

APPROVED, REJECTED = ReviewStatus.APPROVED, ReviewStatus.REJECTED


def decide(trajectory: Trajectory, user, decision: str, reason: str = "") -> Trajectory:
    trajectory.refresh_from_db()
    return review.trajectory_decide(
        trajectory=trajectory,
        decision=decision,
        user=user,
        base_version=trajectory.version,
        reason=reason or ("Wrong final answer" if decision == REJECTED else ""),
    )


def pending_queue():
    return selectors.queue_trajectories(filters=QueueFilters())


# --- Overlap and adjudication ------------------------------------------------------------------


def test_with_two_reviews_required_an_item_stays_pending_until_both_agree():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate(round=RoundFactory(reviews_required=2))

    after_one = decide(trajectory, ann, APPROVED)
    assert after_one.review_status == ReviewStatus.PENDING
    assert after_one.reviewed_by is None and after_one.claimed_by is None
    # The queue never hands it back to its first reviewer, but it does to the next one.
    assert review.trajectory_claim_next(user=ann, queue=pending_queue()) is None
    assert review.trajectory_claim_next(user=bob, queue=pending_queue()).pk == trajectory.pk

    settled = decide(trajectory, bob, APPROVED)
    assert settled.review_status == APPROVED
    assert settled.reviewed_by == bob
    assert list(settled.reviews.values_list("annotator__username", "decision")) == [
        ("ann", APPROVED),
        ("bob", APPROVED),
    ]


def test_disagreeing_reviews_dispute_an_item_and_a_curator_settles_it_for_good():
    ann, bob, cy = data.annotator("ann"), data.annotator("bob"), data.curator("cy")
    trajectory = data.candidate(round=RoundFactory(reviews_required=2))
    decide(trajectory, ann, APPROVED)
    disputed = decide(trajectory, bob, REJECTED, "Code errors were never fixed")
    assert disputed.review_status == ReviewStatus.DISPUTED
    # Not in the annotators' pending queue; annotators cannot settle it.
    assert review.trajectory_claim_next(user=data.annotator("dee"), queue=pending_queue()) is None
    with pytest.raises(PermissionDenied, match="curator"):
        decide(trajectory, ann, APPROVED)

    settled = decide(trajectory, cy, REJECTED, "Code errors were never fixed")
    assert settled.review_status == REJECTED
    assert settled.reviews.get(adjudication=True).annotator == cy
    # The adjudication is final: annotators can no longer change the outcome.
    with pytest.raises(PermissionDenied):
        decide(trajectory, bob, APPROVED)


def test_nobody_can_decide_disputed_directly():
    trajectory = data.candidate()
    with pytest.raises(ValueError, match="unknown decision 'disputed'"):
        decide(trajectory, data.curator("cy"), ReviewStatus.DISPUTED)


def test_deciding_again_replaces_one_s_own_review():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate(round=RoundFactory(reviews_required=2))
    decide(trajectory, ann, REJECTED)
    decide(trajectory, ann, APPROVED)  # ann changed her mind: still one review of two
    assert decide(trajectory, bob, APPROVED).review_status == APPROVED
    live = trajectory.reviews.filter(superseded=False)
    assert sorted(live.values_list("annotator__username", "decision")) == [
        ("ann", APPROVED),
        ("bob", APPROVED),
    ]


def test_reopening_supersedes_the_reviews_and_a_single_review_settles_as_before():
    ann = data.annotator("ann")
    trajectory = data.candidate()
    assert decide(trajectory, ann, APPROVED).review_status == APPROVED
    reopened = decide(trajectory, ann, ReviewStatus.PENDING)
    assert reopened.review_status == ReviewStatus.PENDING
    assert not reopened.reviews.filter(superseded=False).exists()
    assert decide(trajectory, ann, REJECTED).review_status == REJECTED


# --- Assignments -------------------------------------------------------------------------------


def test_assigned_items_come_first_up_to_the_quota():
    cy, ann = data.curator("cy"), data.annotator("ann")
    first_round, assigned_round = RoundFactory(), RoundFactory()
    data.candidate(round=first_round)  # the oldest item: the plain queue's first
    assigned = [data.candidate(round=assigned_round) for _ in range(2)]
    review.assignment_create(
        annotator=ann, filters=QueueFilters(round=assigned_round.pk), quota=1, user=cy
    )

    chosen = review.trajectory_claim_next(
        user=ann, queue=pending_queue(), assigned=selectors.assigned_queues(user=ann)
    )
    assert chosen.pk == assigned[0].pk
    decide(chosen, ann, APPROVED)
    # The quota of one is met: the queue's own order again.
    assert selectors.assigned_queues(user=ann) == []
    following = review.trajectory_claim_next(
        user=ann, queue=pending_queue(), assigned=selectors.assigned_queues(user=ann)
    )
    assert following.round_id == first_round.pk
    [row] = selectors.assignments_progress()
    assert (row["done"], row["assignment"].quota) == (1, 1)


def test_an_assignment_needs_a_curator_an_annotator_and_a_quota():
    cy, ann = data.curator("cy"), data.annotator("ann")
    with pytest.raises(ValueError, match="viewer is not an annotator"):
        review.assignment_create(
            annotator=data.viewer("viewer"), filters=QueueFilters(), quota=5, user=cy
        )
    with pytest.raises(PermissionDenied, match="only a curator"):
        review.assignment_create(annotator=ann, filters=QueueFilters(), quota=5, user=ann)
    with pytest.raises(ValueError, match="at least 1"):
        review.assignment_create(annotator=ann, filters=QueueFilters(), quota=0, user=cy)


def test_an_assignment_never_lets_anyone_past_another_s_lease():
    cy, ann, bob = data.curator("cy"), data.annotator("ann"), data.annotator("bob")
    round_ = RoundFactory()
    held = data.candidate(round=round_)
    review.trajectory_claim(trajectory=held, user=bob)
    review.assignment_create(annotator=ann, filters=QueueFilters(round=round_.pk), quota=5, user=cy)
    assert (
        review.trajectory_claim_next(
            user=ann, queue=pending_queue(), assigned=selectors.assigned_queues(user=ann)
        )
        is None
    )


# --- Agreement and time on task ---------------------------------------------------------------


def test_agreement_per_pair_with_cohen_s_kappa_and_krippendorff_s_alpha_overall():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    round_ = RoundFactory(reviews_required=2)
    # ann and bob agree on three items of four: approve, approve, reject; differ on the last.
    for first, second in [
        (APPROVED, APPROVED),
        (APPROVED, APPROVED),
        (REJECTED, REJECTED),
        (APPROVED, REJECTED),
    ]:
        trajectory = data.candidate(round=round_)
        decide(trajectory, ann, first)
        decide(trajectory, bob, second)

    agreement = selectors.review_agreement(round_id=round_.pk)
    assert agreement["items"] == 4
    [pair] = agreement["pairs"]
    assert (pair["a"], pair["b"], pair["items"]) == ("ann", "bob", 4)
    assert pair["agreement"] == pytest.approx(0.75)
    # Cohen: observed 0.75; by chance 0.75 * 0.5 + 0.25 * 0.5 = 0.5 (ann 3:1, bob 2:2).
    assert pair["kappa"] == pytest.approx((0.75 - 0.5) / (1 - 0.5))
    # Krippendorff pools the 8 values (5 approve, 3 reject): expected disagreement 30/56,
    # observed 2/8 (one unit of two values that differ).
    assert agreement["alpha"] == pytest.approx(1 - (2 / 8) / (30 / 56))


def test_agreement_is_undefined_not_an_error_when_everybody_approved():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    round_ = RoundFactory(reviews_required=2)
    trajectory = data.candidate(round=round_)
    decide(trajectory, ann, APPROVED)
    decide(trajectory, bob, APPROVED)
    agreement = selectors.review_agreement(round_id=round_.pk)
    assert agreement["alpha"] is None
    assert agreement["pairs"][0]["kappa"] is None
    assert agreement["pairs"][0]["agreement"] == 1.0


def test_time_on_task_runs_from_the_claim_to_the_decision():
    ann = data.annotator("ann")
    round_ = RoundFactory()
    for minutes in (1, 3, 5):
        trajectory = data.candidate(round=round_)
        review.trajectory_claim(trajectory=trajectory, user=ann)
        Trajectory.objects.filter(pk=trajectory.pk).update(
            claimed_at=timezone.now() - timedelta(minutes=minutes)
        )
        decide(trajectory, ann, APPROVED)
    unclaimed = data.candidate(round=round_)  # decided without a claim: not timed
    decide(unclaimed, ann, APPROVED)

    figures = selectors.time_on_task(round_id=round_.pk)
    [row] = figures["annotators"]
    assert row["decisions"] == 3
    assert row["median_s"] == pytest.approx(180, abs=5)
    assert row["per_hour"] == pytest.approx(3 / (9 / 60), rel=0.05)  # 3 items in 9 minutes
    assert sum(n for _, n in figures["hourly"]["ann"]) == 3
    assert Review.objects.filter(started_at__isnull=True).count() == 1


def test_renewing_a_lease_keeps_its_start():
    ann = data.annotator("ann")
    trajectory = data.candidate()
    first = review.trajectory_claim(trajectory=trajectory, user=ann).claimed_at
    again = review.trajectory_claim(trajectory=trajectory, user=ann).claimed_at
    assert again == first

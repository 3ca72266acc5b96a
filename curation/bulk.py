"""Curators' bulk actions on a selection of trajectories: approve, reject with a reason, reassign
(release their leases, or lease them to one annotator), re-score.

One call, one transaction: the rows are locked in id order (two bulk calls never deadlock), and
each item goes through the same path as a single action, so it writes the same Revision: a
decision is `review.trajectory_decide`; a released or reassigned lease and a re-score are
revisions with the text unchanged (undo passes over them). An item another annotator holds is
skipped, except by a reassignment, whose purpose is to free it; an item a single action would
refuse (approving a stale output) is skipped with the reason. The result says what was done and
what was skipped, and why.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from curation import review
from curation.models import ReviewStatus, Revision, Trajectory
from curation.services import ConflictError, trajectory_score

BULK_PERMISSION = "curation.bulk_review_trajectory"
MAX_SELECTION = 1000
RELEASE_ACTION = "release_claim"
RESCORE_ACTION = "rescore"


class BulkAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REASSIGN = "reassign"
    RESCORE = "rescore"


@dataclass
class BulkResult:
    action: str
    done: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # another annotator holds a live lease
    refused: dict[int, str] = field(default_factory=dict)  # what a single action would say
    missing: list[int] = field(default_factory=list)  # no such trajectory

    @property
    def skipped(self) -> int:
        return len(self.held) + len(self.refused) + len(self.missing)

    def summary(self) -> str:
        parts = [f"{self.action}: {len(self.done)} done"]
        if self.held:
            parts.append(f"{len(self.held)} skipped (held by another annotator)")
        if self.refused:
            parts.append(f"{len(self.refused)} skipped (refused)")
        if self.missing:
            parts.append(f"{len(self.missing)} not found")
        return ", ".join(parts)


def trajectories_bulk_act(
    *,
    action: str,
    trajectory_ids: Collection[int],
    user,
    reason: str = "",
    assignee=None,
) -> BulkResult:
    """Apply `action` to each selected trajectory, as one transaction. Locks the rows.

    Curators only (BULK_PERMISSION). `reason` is required to reject; `assignee` (reassign only,
    someone who may review) receives the leases, otherwise they are released.
    """
    if not user.has_perm(BULK_PERMISSION):
        raise PermissionDenied("only a curator may act on many trajectories at once")
    if action not in BulkAction.__members__.values():
        raise ValueError(f"unknown bulk action {action!r}")
    ids = sorted(set(trajectory_ids))
    if not ids:
        raise ValueError("select at least one trajectory")
    if len(ids) > MAX_SELECTION:
        raise ValueError(f"at most {MAX_SELECTION} trajectories at once ({len(ids)} selected)")
    reason = reason.strip()
    if action == BulkAction.REJECT and not reason:
        raise ValueError("a rejection needs a reason")
    if assignee is not None and action != BulkAction.REASSIGN:
        raise ValueError("only a reassignment names an annotator")
    if assignee is not None and not assignee.has_perm("curation.review_trajectory"):
        raise ValueError(f"{assignee} is not an annotator: they cannot review")
    result = BulkResult(action=str(action))
    now = timezone.now()
    rescored = []
    with transaction.atomic():
        rows = Trajectory.objects.select_for_update(of=("self",)).select_related(
            "claimed_by", "problem", "round"
        )
        locked = {t.pk: t for t in rows.filter(pk__in=ids).order_by("pk")}
        result.missing = [pk for pk in ids if pk not in locked]
        for pk, trajectory in locked.items():
            if action == BulkAction.REASSIGN:
                _reassign(trajectory, user=user, assignee=assignee, now=now)
                result.done.append(pk)
                continue
            if review._claimed_by_other(trajectory, user, now):
                result.held.append(pk)
                continue
            try:
                with transaction.atomic():  # a refusal rolls back this item only
                    if action == BulkAction.RESCORE:
                        _record(trajectory, user, RESCORE_ACTION, "re-scored in bulk")
                        rescored.append(trajectory)
                    else:
                        review.trajectory_decide(
                            trajectory=trajectory,
                            decision=ReviewStatus.APPROVED
                            if action == BulkAction.APPROVE
                            else ReviewStatus.REJECTED,
                            reason=reason,
                            user=user,
                            base_version=trajectory.version,
                        )
            except ConflictError as exc:
                result.refused[pk] = str(exc)
                continue
            result.done.append(pk)
    # Scores are written after the row locks go (a code problem's tests run on the sandbox
    # queue); each write is guarded by the version it scored.
    for trajectory in rescored:
        trajectory_score(trajectory=trajectory, defer_code=True)
    return result


def _record(trajectory: Trajectory, user, action: str, reason: str) -> None:
    Revision.objects.create(
        trajectory=trajectory,
        author=user,
        action=action,
        reason=reason,
        before_text=trajectory.text,
        after_text=trajectory.text,
        base_version=trajectory.version,
    )


def _reassign(trajectory: Trajectory, *, user, assignee, now) -> None:
    """Release the lease (anyone's), or lease the item to `assignee`; a revision says whose
    lease it was."""
    held = trajectory.claimed_until is not None and trajectory.claimed_until > now
    previous = f"the claim of {trajectory.claimed_by}" if held else "an unclaimed item"
    target = f"to {assignee}" if assignee is not None else "back to the queue"
    _record(trajectory, user, RELEASE_ACTION, f"reassigned {previous} {target} (bulk)")
    trajectory.claimed_by = assignee
    trajectory.claimed_until = now + review.CLAIM_LEASE if assignee is not None else None
    trajectory.save(update_fields=["claimed_by", "claimed_until"])

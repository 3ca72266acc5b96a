"""The annotator's work on a trajectory: claim it, fix it, decide on it.

Every writer here takes the trajectory's row lock (`select_for_update`) inside a transaction and,
where it changes content or review state, checks the caller's `base_version` under that lock: a
stale save raises `StaleVersionError` ("changed by X at T"), so no update is ever lost. Each text
change is a `Revision` (before/after, author, base version) and bumps `version`; checks re-run on
the new text before the lock is released, so flags always match the text; a code problem's tests
run later on the sandbox queue (the score reads "scoring…" until then). Cells re-run *before*
the lock is taken: the sandbox can take seconds, and no row stays locked for foreign work.
Claims (leases) neither check nor bump the version, but while one is live every other user's
edit or decision is refused ("claimed by X until HH:MM"); a curator may take a lease over.
Editing a free item claims it for its author, so that "next" sends the others elsewhere.
An output block is true only while its cell reads as it ran (`checks.output_sources`): an edit
without a re-run leaves it stale, and approval waits until the cell is re-run or the annotator
keeps the output, with a reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from curation import checks
from curation import trajectory as fmt
from curation.execution import CodeRunner, Limits
from curation.models import (
    Assignment,
    Comment,
    Flag,
    Review,
    ReviewStatus,
    Revision,
    Suggestion,
    Trajectory,
)
from curation.renaming import rename_plan
from curation.selectors import QueueFilters
from curation.services import (
    ConflictError,
    code_runner,
    trajectory_score,
    trajectory_true_outputs,
)

CLAIM_LEASE = timedelta(minutes=30)

# The short list offered when rejecting; free text is accepted too.
REJECT_REASONS = (
    "Wrong final answer",
    "Code errors were never fixed",
    "Placeholder code the annotator cannot repair",
    "Reasoning is repetitive or degenerate",
    "Truncated: the trajectory never finishes",
    "The hint gives the answer away",
)

# Revisions that record a decision (the text is unchanged) carry this action prefix.
DECISION_PREFIX = "decide_"
# Revisions, the text unchanged, of a curator taking over a lease and of a stale output kept.
TAKE_OVER_ACTION = "take_over_claim"
KEEP_OUTPUT_ACTION = "keep_stale_output"
TAKE_OVER_PERMISSION = "curation.take_over_claim"
ADJUDICATE_PERMISSION = "curation.adjudicate_trajectory"
REVIEW_PERMISSION = "curation.review_trajectory"
ASSIGN_PERMISSION = "curation.add_assignment"
# What a user may decide; "disputed" is where disagreeing reviews leave a trajectory.
DECISIONS = tuple(status for status in ReviewStatus.values if status != ReviewStatus.DISPUTED)

# A rephrased hint is recognised by its text wherever it occurs: a short one would match prose.
MIN_HINT_CHARS = 20

# Flag kinds whose span the quick fix may replace or delete.
FIXABLE_KINDS = frozenset({"placeholder"})


class StaleVersionError(ConflictError):
    """The trajectory changed since the caller read it."""


class RunFailed(Exception):
    """The sandbox could not run a cell (not the cell's own error, which becomes its output)."""


# --- Reading helpers --------------------------------------------------------------------------


def trajectory_segments(trajectory: Trajectory, text: str | None = None) -> list[fmt.Segment]:
    """The parse of the trajectory's text (or `text`), with the hints its rollout inserted."""
    return fmt.parse(trajectory.text if text is None else text, hints=trajectory.hints)


def trajectory_last_change(*, trajectory: Trajectory) -> tuple[str, datetime]:
    """Who made the latest change (an edit or a decision: both are revisions) and when."""
    revision = (
        Revision.objects.filter(trajectory_id=trajectory.pk)
        .exclude(action=TAKE_OVER_ACTION)
        .select_related("author")
        .order_by("-id")
        .first()
    )
    if revision is None:
        return "someone", trajectory.updated_at
    return revision.author.get_username(), revision.created_at


def stale_message(trajectory: Trajectory) -> str:
    """What a user whose page shows an older version is told."""
    who, at = trajectory_last_change(trajectory=trajectory)
    when = timezone.localtime(at).strftime("%H:%M:%S %Z").strip()
    return f"changed by {who} at {when} — reload"


def _locked(trajectory: Trajectory | int, base_version: int | None) -> Trajectory:
    """The row, locked for the rest of the transaction; StaleVersionError if it moved on."""
    pk = trajectory if isinstance(trajectory, int) else trajectory.pk
    locked = (
        Trajectory.objects.select_for_update(of=("self",))
        .select_related("problem", "round")
        .get(pk=pk)
    )
    if base_version is not None and locked.version != base_version:
        raise StaleVersionError(stale_message(locked))
    return locked


def _lease_for(trajectory: Trajectory, user, now: datetime, lease: timedelta) -> None:
    """Lease to `user`; a renewal keeps the start of the lease (time on task counts from it)."""
    renewal = (
        trajectory.claimed_by_id == user.pk
        and trajectory.claimed_until is not None
        and trajectory.claimed_until > now
    )
    if not renewal or trajectory.claimed_at is None:
        trajectory.claimed_at = now
    trajectory.claimed_by = user
    trajectory.claimed_until = now + lease


def _claimed_by_other(trajectory: Trajectory, user, now: datetime) -> bool:
    return (
        trajectory.claimed_by_id is not None
        and trajectory.claimed_by_id != user.pk
        and trajectory.claimed_until is not None
        and trajectory.claimed_until > now
    )


def _check_lease(trajectory: Trajectory, user, now: datetime) -> None:
    """Refuse a write while another user's lease is live."""
    if _claimed_by_other(trajectory, user, now):
        until = timezone.localtime(trajectory.claimed_until).strftime("%H:%M")
        raise ConflictError(f"claimed by {trajectory.claimed_by} until {until}")


# --- Claims -----------------------------------------------------------------------------------


def trajectory_claim(
    *, trajectory: Trajectory, user, lease: timedelta = CLAIM_LEASE, take_over: bool = False
) -> Trajectory:
    """Lease the trajectory to `user` (or renew their lease). Takes the row lock.

    A live lease of another annotator is a ConflictError; an expired one is taken over. With
    `take_over` a curator (TAKE_OVER_PERMISSION) takes a live one too, for an annotator who left
    with items claimed; a revision (text unchanged) names the previous holder.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(trajectory, None)
        if take_over and _claimed_by_other(locked, user, now):
            if not user.has_perm(TAKE_OVER_PERMISSION):
                raise PermissionDenied("only a curator may take over another annotator's claim")
            until = timezone.localtime(locked.claimed_until).strftime("%H:%M")
            Revision.objects.create(
                trajectory=locked,
                author=user,
                action=TAKE_OVER_ACTION,
                reason=f"took over the claim of {locked.claimed_by} (until {until})",
                before_text=locked.text,
                after_text=locked.text,
                base_version=locked.version,
            )
        else:
            _check_lease(locked, user, now)
        _lease_for(locked, user, now, lease)
        locked.save(update_fields=["claimed_by", "claimed_until", "claimed_at"])
    return locked


def trajectory_release(*, trajectory: Trajectory, user) -> Trajectory:
    """Give up `user`'s lease, if they hold it. Takes the row lock."""
    with transaction.atomic():
        locked = _locked(trajectory, None)
        if locked.claimed_by_id == user.pk:
            locked.claimed_by = None
            locked.claimed_until = None
            locked.claimed_at = None
            locked.save(update_fields=["claimed_by", "claimed_until", "claimed_at"])
    return locked


def trajectory_claim_next(
    *,
    user,
    queue: QuerySet[Trajectory],
    lease: timedelta = CLAIM_LEASE,
    assigned: Sequence[QuerySet[Trajectory]] = (),
) -> Trajectory | None:
    """Lease the first pending item of the ordered `queue` that nobody else holds.

    The user's own live claim in the queue comes first (they resume it); then the user's open
    assignments (`assigned`, oldest first, see `assignment_queues`); then the queue. An item
    the user already reviewed is never handed back to them (overlap needs other annotators).
    The first unclaimed row is locked with `SKIP LOCKED`, so concurrent callers each get a
    different item and never wait for one another.
    """
    now = timezone.now()

    reviewed = Review.objects.filter(trajectory=OuterRef("pk"), annotator=user, superseded=False)

    def open_items(items: QuerySet[Trajectory]) -> QuerySet[Trajectory]:
        return items.filter(review_status=ReviewStatus.PENDING).exclude(Exists(reviewed))

    with transaction.atomic():
        chosen = (
            open_items(queue)
            .filter(claimed_by=user, claimed_until__gt=now)
            .select_for_update(of=("self",), skip_locked=True)
            .first()
        )
        for items in (*assigned, queue):
            if chosen is not None:
                break
            chosen = (
                open_items(items)
                .unclaimed(now)
                .select_for_update(of=("self",), skip_locked=True)
                .first()
            )
        if chosen is None:
            return None
        _lease_for(chosen, user, now, lease)
        Trajectory.objects.filter(pk=chosen.pk).update(
            claimed_by=user, claimed_until=chosen.claimed_until, claimed_at=chosen.claimed_at
        )
    return chosen


# --- Edits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditResult:
    trajectory: Trajectory
    revision: Revision | None  # None when the edit changed nothing


def _save_text(
    locked: Trajectory,
    new_text: str,
    *,
    author,
    action: str,
    reason: str = "",
    hints: list[str] | None = None,
    outputs_of: Sequence[int] = (),
) -> EditResult:
    """Store a new text under the caller's lock: Revision, version bump, re-score.

    Refused while another user's lease is live. `outputs_of`: code cells (segment indices in the
    locked text) whose output blocks in the new text are true, just run or kept by the author;
    their digests are recorded, so a re-run that printed the same text still clears staleness.
    An edit reopens a decided trajectory (the decision was about the old text) and renews the
    editor's lease.
    """
    now = timezone.now()
    _check_lease(locked, author, now)
    proven = _new_true_outputs(locked, new_text, outputs_of)
    if new_text == locked.text and hints is None and not proven:
        return EditResult(locked, None)
    revision = Revision.objects.create(
        trajectory=locked,
        author=author,
        action=action,
        reason=reason,
        before_text=locked.text,
        after_text=new_text,
        base_version=locked.version,
    )
    locked.text = new_text
    locked.version += 1
    fields = ["text", "version", "updated_at"]
    if hints is not None:
        locked.hints = hints
        fields.append("hints")
    if proven:
        locked.output_sources = [*locked.output_sources, *proven]
        fields.append("output_sources")
    if locked.review_status not in (ReviewStatus.PENDING, ReviewStatus.DISPUTED):
        # The decision was about another text: the new one is reviewed from scratch.
        locked.reviews.filter(superseded=False).update(superseded=True)
        locked.review_status = ReviewStatus.PENDING
        locked.reviewed_by = None
        locked.reviewed_at = None
        locked.review_reason = ""
        fields += ["review_status", "reviewed_by", "reviewed_at", "review_reason"]
    _lease_for(locked, author, now, CLAIM_LEASE)
    fields += ["claimed_by", "claimed_until", "claimed_at"]
    locked.save(update_fields=fields)
    trajectory_score(trajectory=locked, defer_code=True)
    return EditResult(locked, revision)


def _new_true_outputs(locked: Trajectory, new_text: str, cells: Sequence[int]) -> list[str]:
    """The digests, not yet known to be true, of the outputs that answer `cells` (segment
    indices in the locked text) in `new_text`."""
    if not cells:
        return []
    before = [i for i, s in enumerate(trajectory_segments(locked)) if s.kind == "code"]
    segments = trajectory_segments(locked, new_text)
    after = [i for i, s in enumerate(segments) if s.kind == "code"]
    wanted = {after[before.index(cell)] for cell in cells}  # a run adds or removes no cell
    known = trajectory_true_outputs(trajectory=locked)
    sources = checks.output_sources(segments, shared_state=locked.round.notebook)
    return sorted({s.digest for s in sources if s.cell in wanted} - known)


def _segment(segments: Sequence[fmt.Segment], index: int, *kinds: str) -> fmt.Segment:
    if not 0 <= index < len(segments):
        raise ValueError(f"there is no segment {index}")
    segment = segments[index]
    if kinds and segment.kind not in kinds:
        raise ValueError(f"segment {index} is {segment.kind}, not {' or '.join(kinds)}")
    return segment


def trajectory_edit_segment(
    *, trajectory: Trajectory, segment_index: int, text: str, author, base_version: int
) -> EditResult:
    """Replace a prose segment (reasoning, answer) or rephrase a hint. Takes the row lock.

    `text` is the segment's whole new text. A rephrased hint is added to the trajectory's hint
    texts, so that it still parses as a hint (and stays out of the training loss).
    """
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        segments = trajectory_segments(locked)
        segment = _segment(segments, segment_index, "think", "hint", "answer")
        new_segments = fmt.replace_segment(segments, segment_index, text)
        new_text = fmt.render(new_segments)
        _refuse_hand_made_outputs(segments, trajectory_segments(locked, new_text))
        hints = None
        action = "edit_text"
        if segment.kind == "hint" and text != segment.text:
            action = "rephrase_hint"
            if len(text.strip()) < MIN_HINT_CHARS:
                raise ValueError(
                    f"a hint needs at least {MIN_HINT_CHARS} characters (delete it instead)"
                )
            hints = [*locked.hints, text + fmt.CODE_FENCE]
            before = sum(s.kind == "hint" for s in segments)
            after = sum(s.kind == "hint" for s in fmt.parse(new_text, hints=hints))
            if after != before:
                raise ValueError("the new hint text also occurs elsewhere: make it more specific")
        return _save_text(locked, new_text, author=author, action=action, hints=hints)


HAND_MADE_OUTPUT = (
    "an output block comes from running its cell: edit the cell and run it again "
    "(deleting the cell deletes its output too)"
)


def _refuse_hand_made_outputs(before: Sequence[fmt.Segment], after: Sequence[fmt.Segment]) -> None:
    """Text edits may not write output blocks, nor remove one: only running a cell does."""
    if [s.text for s in before if s.kind == "output"] != [
        s.text for s in after if s.kind == "output"
    ]:
        raise ValueError(HAND_MADE_OUTPUT)


def trajectory_delete_segment(
    *, trajectory: Trajectory, segment_index: int, author, base_version: int
) -> EditResult:
    """Delete one segment; a code cell goes with the output block that follows it. Row lock."""
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        segments = trajectory_segments(locked)
        segment = _segment(segments, segment_index)
        if segment.kind == "output":
            raise ValueError(HAND_MADE_OUTPUT)
        end = segment_index + 1
        if segment.kind == "code" and end < len(segments) and segments[end].kind == "output":
            end += 1
        kept = [*segments[:segment_index], *segments[end:]]
        action = "delete_hint" if segment.kind == "hint" else f"delete_{segment.kind}"
        return _save_text(locked, fmt.render(kept), author=author, action=action)


# --- Running cells ----------------------------------------------------------------------------


def _run_cells(
    trajectory: Trajectory,
    segments: list[fmt.Segment],
    targets: Sequence[int],
    runner: CodeRunner | None,
) -> list[fmt.Segment]:
    """Run the code segments `targets` (in order) and put each one's output block after it.

    Holds no lock: callers run first, then lock and check the version. In a notebook round the
    cells share a fresh session, replaying the earlier executed cells first, as the rollout ran
    them (the session expires in the sandbox when idle); otherwise each cell runs alone.
    """
    runner = runner or code_runner()
    options = trajectory.round.tool_config or {}
    limits = Limits.from_tool_config(options)  # the limits the round's rollout used
    notebook = bool(options.get("notebook", False))
    session = f"review-{trajectory.pk}-{uuid.uuid4().hex}" if notebook else None
    executed = [
        i
        for i, s in enumerate(segments)
        if s.kind == "code" and i + 1 < len(segments) and segments[i + 1].kind == "output"
    ]
    to_run = sorted(set(targets))
    if notebook:
        to_run = sorted({i for i in executed if i < to_run[0]} | set(to_run))
    outputs: dict[int, str] = {}
    for index in to_run:
        kwargs: dict[str, Any] = {"limits": limits}
        if session:
            kwargs["session"] = session
        try:
            execution = runner(segments[index].body, **kwargs)
        except Exception as exc:  # the sandbox's own failures (unavailable, broken pool)
            raise RunFailed(f"the sandbox could not run cell code: {exc}") from exc
        if index in targets:
            outputs[index] = fmt.output_block(execution.as_output_block_text())
    result: list[fmt.Segment] = []
    for i, segment in enumerate(segments):
        if i > 0 and segment.kind == "output" and (i - 1) in outputs:
            continue  # replaced below, right after its cell
        result.append(segment)
        if i in outputs:
            result.append(fmt.Segment("output", outputs[i]))
    return result


def _cells_from(segments: Sequence[fmt.Segment], index: int, following: bool) -> list[int]:
    """The cell at `index`, and with `following` every later cell that had been executed."""
    later = [
        i
        for i in range(index + 1, len(segments))
        if segments[i].kind == "code" and i + 1 < len(segments) and segments[i + 1].kind == "output"
    ]
    return [index, *later] if following else [index]


def _read(trajectory: Trajectory | int, base_version: int, author) -> Trajectory:
    """The row as the caller saw it, unlocked, before a cell runs: StaleVersionError if it moved
    on already, ConflictError if another's lease holds it (no sandbox run for a refused save).
    Both are checked again under the lock."""
    pk = trajectory if isinstance(trajectory, int) else trajectory.pk
    current = Trajectory.objects.select_related("problem", "round").get(pk=pk)
    if current.version != base_version:
        raise StaleVersionError(stale_message(current))
    _check_lease(current, author, timezone.now())
    return current


def trajectory_edit_code(
    *,
    trajectory: Trajectory,
    segment_index: int,
    code: str,
    author,
    base_version: int,
    rerun: bool = False,
    runner: CodeRunner | None = None,
) -> EditResult:
    """Replace a code cell's body; with `rerun`, run it and replace its output.

    The cell runs first, without a lock; then the row is locked and the version checked again,
    so a save that landed during the run makes this one stale (its output would not be true).
    """
    current = _read(trajectory, base_version, author)
    segments = trajectory_segments(current)
    _segment(segments, segment_index, "code")
    segments = fmt.replace_segment(segments, segment_index, code)
    if rerun:
        segments = _run_cells(current, segments, [segment_index], runner)
    with transaction.atomic():
        locked = _locked(current, base_version)
        action = "edit_code_run" if rerun else "edit_code"
        ran = [segment_index] if rerun else []
        return _save_text(
            locked, fmt.render(segments), author=author, action=action, outputs_of=ran
        )


def trajectory_rerun_cell(
    *,
    trajectory: Trajectory,
    segment_index: int,
    author,
    base_version: int,
    following: bool = False,
    runner: CodeRunner | None = None,
) -> EditResult:
    """Run a code cell again and replace its output block (with `following`, every later
    executed cell's too). Runs first, then locks and checks the version, as edits do."""
    current = _read(trajectory, base_version, author)
    segments = trajectory_segments(current)
    _segment(segments, segment_index, "code")
    targets = _cells_from(segments, segment_index, following)
    segments = _run_cells(current, segments, targets, runner)
    with transaction.atomic():
        locked = _locked(current, base_version)
        action = "rerun_following" if following else "rerun"
        return _save_text(
            locked, fmt.render(segments), author=author, action=action, outputs_of=targets
        )


# --- Stale outputs ----------------------------------------------------------------------------


def _stale_outputs(
    trajectory: Trajectory, segments: Sequence[fmt.Segment]
) -> list[checks.OutputSource]:
    return checks.stale_outputs(
        segments,
        true_outputs=trajectory_true_outputs(trajectory=trajectory),
        shared_state=trajectory.round.notebook,
    )


def _refuse_stale_outputs(trajectory: Trajectory) -> None:
    segments = trajectory_segments(trajectory)
    stale = _stale_outputs(trajectory, segments)
    numbers = [sum(s.kind == "code" for s in segments[: o.cell + 1]) for o in stale]
    if numbers:
        cells = ", ".join(f"cell {n}" for n in numbers)
        raise ConflictError(f"output is stale: re-run {cells} (or keep its output, with a reason)")


def trajectory_keep_output(
    *, trajectory: Trajectory, segment_index: int, reason: str, author, base_version: int
) -> EditResult:
    """Keep a stale output block as it is, for a reason the author gives (a rename that cannot
    change what the cell prints, a cell too slow to run again). Row lock.

    The text stays the same; the revision records who vouched for the output and why, and the
    output counts as true from then on.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("keeping a stale output needs a reason")
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        segments = trajectory_segments(locked)
        _segment(segments, segment_index, "output")
        stale = {s.output: s for s in _stale_outputs(locked, segments)}
        if segment_index not in stale:
            raise ValueError("that output is not stale: its cell has not changed since it ran")
        return _save_text(
            locked,
            locked.text,
            author=author,
            action=KEEP_OUTPUT_ACTION,
            reason=reason,
            outputs_of=[stale[segment_index].cell],
        )


# --- Quick fix of a flagged span --------------------------------------------------------------


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", max(end - 1, start))
    return line_start, len(text) if line_end < 0 else line_end + 1


def trajectory_fix_span(
    *,
    trajectory: Trajectory,
    start: int,
    end: int,
    replacement: str,
    author,
    base_version: int,
    delete_lines: bool = False,
) -> EditResult:
    """Replace the text of a flagged placeholder (or delete its whole lines). Row lock.

    Only the span of a current fixable flag may be changed this way; the result must keep the
    span inside its code cell (no fence lines).
    """
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        flagged = Flag.objects.filter(
            trajectory=locked, start=start, end=end, kind__in=FIXABLE_KINDS
        ).exists()
        if not flagged:
            raise ValueError("no fixable flag at that span (the flags changed: reload)")
        text = locked.text
        if delete_lines:
            start, end = _line_bounds(text, start, end)
            replacement = ""
        if "```" in replacement:
            raise ValueError("a replacement cannot contain a code fence")
        new_text = text[:start] + replacement + text[end:]
        action = "fix_delete_lines" if delete_lines else "fix_placeholder"
        return _save_text(locked, new_text, author=author, action=action)


# --- Renaming an identifier across cells ------------------------------------------------------


def trajectory_rename_identifier(
    *, trajectory: Trajectory, old: str, new: str, author, base_version: int, in_text: bool = False
) -> EditResult:
    """Rename an identifier in every code cell, as `rename_plan` previews it. Row lock.

    The plan is recomputed on the locked text; the version check guarantees it is the text the
    preview was made from.
    """
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        segments = trajectory_segments(locked)
        plan = rename_plan(segments=segments, old=old, new=new, in_text=in_text)
        reason = f"{plan.old} → {plan.new} ({plan.count} places)"
        return _save_text(
            locked, fmt.render(plan.apply(segments)), author=author, action="rename", reason=reason
        )


# --- Undo -------------------------------------------------------------------------------------


def undoable_revision(*, trajectory: Trajectory) -> Revision | None:
    """The revision an undo would revert: the latest one not already undone.

    Undos stack: each "undo" revision cancels the newest earlier revision not yet cancelled.
    Revisions that left the text as it was are not undone: decisions (reopen instead), kept
    outputs, take-overs.
    """
    pending_undos = 0
    revisions = Revision.objects.filter(trajectory_id=trajectory.pk).exclude(
        before_text=F("after_text")
    )
    for pk, action in revisions.order_by("-id").values_list("id", "action"):
        if action == "undo":
            pending_undos += 1
        elif pending_undos:
            pending_undos -= 1
        else:
            return Revision.objects.select_related("author").get(pk=pk)
    return None


def trajectory_undo(*, trajectory: Trajectory, author, base_version: int) -> EditResult:
    """Revert the last change that is not undone yet (an undo is itself a revision). Row lock."""
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        target = undoable_revision(trajectory=locked)
        if target is None:
            raise ValueError("nothing to undo")
        if target.after_text != locked.text:
            raise ConflictError("the text changed without a revision; undo is not safe — reload")
        reason = f"undo {target.action} by {target.author} (revision {target.pk})"
        return _save_text(locked, target.before_text, author=author, action="undo", reason=reason)


# --- Decisions --------------------------------------------------------------------------------


def trajectory_decide(
    *, trajectory: Trajectory, decision: str, user, base_version: int, reason: str = ""
) -> Trajectory:
    """Approve, reject (a reason is required), skip, or reopen (back to pending). Row lock.

    The decision is about the text the user saw, hence the version check; another user's live
    lease refuses it, and so does approving while an output is stale. It is recorded as a
    revision with the text unchanged (undo passes over it), bumps the version and releases the
    claim; reopening claims the trajectory for the user instead and supersedes its reviews.
    Approving and rejecting are reviews (`_review`): with overlap the trajectory stays pending
    until the round's k annotators have decided.
    """
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {str(decision)!r}: one of {', '.join(DECISIONS)}")
    reason = reason.strip()
    if decision == ReviewStatus.REJECTED and not reason:
        raise ValueError("a rejection needs a reason")
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        _check_lease(locked, user, now)
        if decision == ReviewStatus.APPROVED:
            _refuse_stale_outputs(locked)
        reopening = decision == ReviewStatus.PENDING
        status = decision
        if decision in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
            status, reason = _review(locked, decision, user=user, reason=reason)
        elif reopening:
            locked.reviews.filter(superseded=False).update(superseded=True)
        settled = status not in (ReviewStatus.PENDING, ReviewStatus.DISPUTED)
        Revision.objects.create(
            trajectory=locked,
            author=user,
            action=DECISION_PREFIX + decision,
            reason=reason,
            before_text=locked.text,
            after_text=locked.text,
            base_version=locked.version,
        )
        locked.review_status = status
        locked.reviewed_by = user if settled else None
        locked.reviewed_at = now if settled else None
        locked.review_reason = reason if settled else ""
        if reopening:
            _lease_for(locked, user, now, CLAIM_LEASE)
        else:
            locked.claimed_by = None
            locked.claimed_until = None
            locked.claimed_at = None
        locked.version += 1
        locked.save(
            update_fields=[
                "review_status",
                "reviewed_by",
                "reviewed_at",
                "review_reason",
                "claimed_by",
                "claimed_until",
                "claimed_at",
                "version",
                "updated_at",
            ]
        )
    return locked


def _review(locked: Trajectory, decision: str, *, user, reason: str) -> tuple[str, str]:
    """Record `user`'s review of the locked trajectory; the status and reason it settles on.

    One live review per annotator: deciding again replaces theirs. Once the round's
    `reviews_required` annotators have decided, agreement settles the trajectory (their
    reasons joined) and disagreement disputes it. A disputed or adjudicated trajectory is a
    curator's to decide (ADJUDICATE_PERMISSION), and their adjudication is final.
    """
    live = locked.reviews.filter(superseded=False)
    adjudicating = locked.review_status == ReviewStatus.DISPUTED or (
        live.filter(adjudication=True).exists()
    )
    if adjudicating and not user.has_perm(ADJUDICATE_PERMISSION):
        raise PermissionDenied("a disputed trajectory is settled by a curator's adjudication")
    live.filter(annotator=user, adjudication=adjudicating).update(superseded=True)
    Review.objects.create(
        trajectory=locked,
        annotator=user,
        decision=decision,
        reason=reason,
        version=locked.version,
        adjudication=adjudicating,
        started_at=locked.claimed_at if locked.claimed_by_id == user.pk else None,
    )
    if adjudicating:
        return decision, reason
    reviews = list(live.filter(adjudication=False).values_list("decision", "reason"))
    if len(reviews) < locked.round.reviews_required:
        return ReviewStatus.PENDING, ""
    if len({decided for decided, _ in reviews}) > 1:
        return ReviewStatus.DISPUTED, ""
    return decision, "; ".join(dict.fromkeys(why for _, why in reviews if why))


# --- Assignments ------------------------------------------------------------------------------


def assignment_create(*, annotator, filters: QueueFilters, quota: int, user) -> Assignment:
    """Give `annotator` up to `quota` decisions among the queue's items under `filters` (the
    workbench's queue filters, their order included; see `selectors.assigned_queues`)."""
    if not user.has_perm(ASSIGN_PERMISSION):
        raise PermissionDenied("only a curator assigns work")
    if not annotator.is_active or not annotator.has_perm(REVIEW_PERMISSION):
        raise ValueError(f"{annotator} is not an annotator: give them the annotator role first")
    if quota < 1:
        raise ValueError("a quota is at least 1 item")
    return Assignment.objects.create(
        annotator=annotator, filters=asdict(filters), quota=quota, created_by=user
    )


# --- Comments and suggestions -----------------------------------------------------------------

COMMENT_MAX_CHARS = 10_000


def trajectory_comment(
    *,
    trajectory: Trajectory,
    body: str,
    author,
    base_version: int,
    segment_index: int | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Comment:
    """A comment on the trajectory, on one segment (`segment_index`), or on a span of its text
    (`start`, `end`: characters of the version the author read). Row lock.

    The version check makes a span or a segment number mean what the author saw; the comment
    changes neither the text nor the version, so it makes nobody else's page stale, and another
    annotator's lease does not refuse it (notes are for others to read).
    """
    body = body.strip()
    if not body:
        raise ValueError("a comment needs some text")
    if len(body) > COMMENT_MAX_CHARS:
        raise ValueError(f"a comment has at most {COMMENT_MAX_CHARS} characters")
    if (start is None) != (end is None):
        raise ValueError("a span needs both its start and its end")
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        if segment_index is not None:
            _segment(trajectory_segments(locked), segment_index)
        if start is not None and not 0 <= start < end <= len(locked.text):
            raise ValueError(f"the span {start}-{end} is not inside the text")
        return Comment.objects.create(
            trajectory=locked,
            author=author,
            body=body,
            version=locked.version,
            segment_index=segment_index,
            start=start,
            end=end,
        )


def trajectory_suggest(
    *,
    trajectory: Trajectory,
    decision: str,
    author,
    base_version: int,
    reason: str = "",
    source: str = "",
) -> Suggestion:
    """Pre-annotate: propose approving or rejecting the version a script or judge read. Row lock.

    Never a decision: the review status, the claim and the version stay as they are; the human
    sees the suggestion in the workbench and decides. A suggestion for an older version is a
    StaleVersionError, like any write.
    """
    if decision not in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
        raise ValueError(f"a suggestion approves or rejects, not {decision!r}")
    with transaction.atomic():
        locked = _locked(trajectory, base_version)
        return Suggestion.objects.create(
            trajectory=locked,
            author=author,
            decision=decision,
            reason=reason.strip(),
            source=source.strip(),
            version=locked.version,
        )


def trajectory_suggestion(*, trajectory: Trajectory) -> Suggestion | None:
    """The latest suggestion (it may be about an older version: compare `version`)."""
    return (
        Suggestion.objects.filter(trajectory_id=trajectory.pk)
        .select_related("author")
        .order_by("-id")
        .first()
    )

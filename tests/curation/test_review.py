"""The review services: claims, edits with revisions and version checks, re-runs, rename, undo."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from curation import renaming, review, services
from curation import trajectory as fmt
from curation.dispatch import Task
from curation.execution import Execution
from curation.models import Domain, Flag, ReviewStatus, Revision, Trajectory
from curation.services import ConflictError
from tests.factories import ProblemFactory, RoundFactory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


def code_index(trajectory: Trajectory, number: int) -> int:
    """The segment index of the `number`-th code cell (1-based)."""
    cells = [i for i, s in enumerate(review.trajectory_segments(trajectory)) if s.kind == "code"]
    return cells[number - 1]


def segment(trajectory: Trajectory, index: int) -> fmt.Segment:
    trajectory.refresh_from_db()
    return review.trajectory_segments(trajectory)[index]


# --- Claims -----------------------------------------------------------------------------------


def test_claim_leases_to_one_annotator_and_expires():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate()
    review.trajectory_claim(trajectory=trajectory, user=ann)
    trajectory.refresh_from_db()
    assert trajectory.claimed_by == ann
    assert trajectory.claimed_until > timezone.now() + timedelta(minutes=20)
    with pytest.raises(ConflictError, match="claimed by ann"):
        review.trajectory_claim(trajectory=trajectory, user=bob)
    # An abandoned lease expires: then anyone may take it over.
    Trajectory.objects.filter(pk=trajectory.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert review.trajectory_claim(trajectory=trajectory, user=bob).claimed_by == bob


def test_claim_next_gives_each_annotator_another_item_and_resumes_their_own():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    first, second = data.candidate(), data.candidate()
    queue = Trajectory.objects.candidates().order_by("id")
    assert review.trajectory_claim_next(user=ann, queue=queue) == first
    assert review.trajectory_claim_next(user=bob, queue=queue) == second
    assert review.trajectory_claim_next(user=ann, queue=queue) == first  # resumes its claim
    assert review.trajectory_claim_next(user=data.annotator("cy"), queue=queue) is None
    Trajectory.objects.filter(pk=first.pk).update(claimed_until=timezone.now())
    assert review.trajectory_claim_next(user=bob, queue=queue.exclude(pk=second.pk)) == first


@pytest.mark.django_db(transaction=True)
def test_claim_next_skips_a_row_another_transaction_has_locked():
    ann = data.annotator("ann")
    first, second = data.candidate(), data.candidate()
    locked, release = threading.Event(), threading.Event()

    def hold_first():
        with transaction.atomic():
            Trajectory.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert locked.wait(10)
        queue = Trajectory.objects.candidates().order_by("id")
        assert review.trajectory_claim_next(user=ann, queue=queue) == second  # no waiting
    finally:
        release.set()
        holder.join()


# --- Edits, versions, revisions -----------------------------------------------------------------


def test_editing_a_cell_records_a_revision_bumps_the_version_and_rescoring_updates_flags():
    ann = data.annotator()
    trajectory = data.candidate()
    index = code_index(trajectory, 2)
    assert Flag.objects.filter(trajectory=trajectory, kind="placeholder").exists()
    before = trajectory.text
    new_code = segment(trajectory, index).body.replace("    ...\n", "    return value == 385\n")

    result = review.trajectory_edit_code(
        trajectory=trajectory, segment_index=index, code=new_code, author=ann, base_version=1
    )

    trajectory.refresh_from_db()
    assert trajectory.version == 2
    assert "return value == 385" in trajectory.text
    assert trajectory.original_text == before
    revision = result.revision
    assert (revision.author, revision.action, revision.base_version) == (ann, "edit_code", 1)
    assert (revision.before_text, revision.after_text) == (before, trajectory.text)
    assert not Flag.objects.filter(trajectory=trajectory, kind="placeholder").exists()
    assert trajectory.is_correct is True
    assert trajectory.claimed_by == ann  # editing a free item claims it


def test_a_stale_save_is_refused_with_who_changed_it_and_when():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate()
    index = code_index(trajectory, 1)
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=index, code="print(385)", author=ann, base_version=1
    )
    with pytest.raises(review.StaleVersionError, match=r"changed by ann at \d\d:\d\d:\d\d"):
        review.trajectory_edit_code(
            trajectory=trajectory, segment_index=index, code="print(1)", author=bob, base_version=1
        )
    trajectory.refresh_from_db()
    assert segment(trajectory, index).body == "print(385)"  # bob's stale save lost nothing
    assert Revision.objects.filter(trajectory=trajectory).count() == 1


def test_edit_code_and_rerun_replaces_the_output_with_the_sandbox_result():
    ann = data.annotator()
    trajectory = data.candidate()
    index = code_index(trajectory, 1)
    review.trajectory_edit_code(
        trajectory=trajectory,
        segment_index=index,
        code="print(sum(i ** 3 for i in range(1, 11)))",
        author=ann,
        base_version=1,
        rerun=True,
    )
    output = segment(trajectory, index + 1)
    assert output.kind == "output"
    assert output.body == "3025"
    assert trajectory.text.count("```output") == 2
    assert Revision.objects.get(trajectory=trajectory).action == "edit_code_run"


def test_rerun_following_cells_and_a_cell_without_output_gets_one():
    ann = data.annotator()
    text = (
        "<think>\nFirst.\n```python\nprint(6 * 7)\n```\n```output\nstale\n```\n"
        "Then.\n```python\nprint('second')\n```\n```output\nold\n```\n"
        "Last.\n```python\nprint('never ran')\n```\n</think>\n\nThe answer is \\boxed{42}."
    )
    trajectory = data.candidate(text, hints=[])
    first = code_index(trajectory, 1)
    review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=first, author=ann, base_version=1, following=True
    )
    trajectory.refresh_from_db()
    bodies = [s.body for s in review.trajectory_segments(trajectory) if s.kind == "output"]
    assert bodies == ["42", "second"]  # the last cell had no output and is not "later executed"
    third = code_index(trajectory, 3)
    review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=third, author=ann, base_version=2
    )
    assert segment(trajectory, third + 1).body == "never ran"


def test_rerun_in_a_notebook_round_replays_the_earlier_cells():
    ann = data.annotator()
    text = (
        "<think>\n```python\nx = 40\n```\n```output\n\n```\n"
        "```python\nprint(x + 2)\n```\n```output\nold\n```\n</think>\n\\boxed{42}"
    )
    trajectory = data.candidate(text, hints=[])
    trajectory.round.tool_config = {"notebook": True}
    trajectory.round.save()
    second = code_index(trajectory, 2)
    review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=second, author=ann, base_version=1
    )
    assert segment(trajectory, second + 1).body == "42"


def test_edit_prose_and_rephrase_a_hint_keeps_it_a_hint():
    ann = data.annotator()
    trajectory = data.candidate()
    hint_index = next(
        i for i, s in enumerate(review.trajectory_segments(trajectory)) if s.kind == "hint"
    )
    new_hint = "Let me verify this numerically with a short Python program."
    review.trajectory_edit_segment(
        trajectory=trajectory, segment_index=hint_index, text=new_hint, author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    hint = segment(trajectory, hint_index)
    assert (hint.kind, hint.text) == ("hint", new_hint)
    assert Revision.objects.get(trajectory=trajectory).action == "rephrase_hint"
    with pytest.raises(ValueError, match="at least"):
        review.trajectory_edit_segment(
            trajectory=trajectory,
            segment_index=hint_index,
            text="Wait,",
            author=ann,
            base_version=2,
        )
    review.trajectory_edit_segment(
        trajectory=trajectory,
        segment_index=0,
        text="<think>\nWe need the sum of squares. ",
        author=ann,
        base_version=2,
    )
    assert segment(trajectory, 0).text == "<think>\nWe need the sum of squares. "


def test_delete_a_hint_and_a_cell_with_its_output():
    ann = data.annotator()
    trajectory = data.candidate()
    kinds = [s.kind for s in review.trajectory_segments(trajectory)]
    review.trajectory_delete_segment(
        trajectory=trajectory, segment_index=kinds.index("hint"), author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    assert "perform complex calculations" not in trajectory.text
    cell = code_index(trajectory, 2)
    review.trajectory_delete_segment(
        trajectory=trajectory, segment_index=cell, author=ann, base_version=2
    )
    trajectory.refresh_from_db()
    assert "totl_sum" not in trajectory.text
    assert trajectory.text.count("```output") == 1
    assert [r.action for r in trajectory.revisions.order_by("id")] == ["delete_hint", "delete_code"]


def test_quick_fix_replaces_a_flagged_placeholder_or_deletes_its_line():
    ann = data.annotator()
    trajectory = data.candidate()
    flag = Flag.objects.get(trajectory=trajectory, kind="placeholder")
    assert trajectory.text[flag.start : flag.end] == "..."
    review.trajectory_fix_span(
        trajectory=trajectory,
        start=flag.start,
        end=flag.end,
        replacement="return value == 385",
        author=ann,
        base_version=1,
    )
    trajectory.refresh_from_db()
    assert "    return value == 385\n" in trajectory.text
    with pytest.raises(ValueError, match="no fixable flag"):
        review.trajectory_fix_span(
            trajectory=trajectory, start=0, end=5, replacement="", author=ann, base_version=2
        )

    other = data.candidate()
    flag = Flag.objects.get(trajectory=other, kind="placeholder")
    review.trajectory_fix_span(
        trajectory=other,
        start=flag.start,
        end=flag.end,
        replacement="",
        delete_lines=True,
        author=ann,
        base_version=1,
    )
    other.refresh_from_db()
    assert "def check(value):\nprint(totl_sum)" in other.text


# --- Rename -----------------------------------------------------------------------------------


def test_rename_preview_lists_every_place_and_leaves_strings_and_comments():
    trajectory = data.candidate()
    plan = renaming.rename_plan(
        segments=review.trajectory_segments(trajectory), old="totl_sum", new="total_sum"
    )
    assert plan.count == 3
    assert plan.skipped_mentions == 1  # the comment "# totl_sum should match"
    assert plan.new_name_in_use == [1]
    [cell] = plan.cells
    changes = plan.line_changes(cell)
    assert [c.line for c in changes] == [1, 3, 6]
    assert changes[2].after == "print(total_sum)  # totl_sum should match"
    assert changes[2].columns == ((6, 15),)
    with pytest.raises(ValueError, match="not a Python identifier"):
        renaming.rename_plan(segments=review.trajectory_segments(trajectory), old="x", new="1x")
    with pytest.raises(ValueError, match="does not occur"):
        renaming.rename_plan(segments=review.trajectory_segments(trajectory), old="nope", new="x")


def test_rename_handles_fstrings_attributes_and_broken_cells():
    segments = fmt.parse(
        "```python\nclass A:\n    def f(self, n):\n        return self.n + n\n"
        "print(f'{n!r:>{n}} n', \"n\")\n```\n```python\nm = n(\n```\n",
        hints=(),
    )
    plan = renaming.rename_plan(segments=segments, old="n", new="count")
    first, second = plan.cells
    assert plan.renamed_body(first) == (
        "class A:\n    def f(self, count):\n        return self.count + count\n"
        "print(f'{count!r:>{count}} n', \"n\")"
    )
    assert plan.renamed_body(second) == "m = count("
    assert "could not read all of it" in second.error
    with_text = renaming.rename_plan(segments=segments, old="n", new="count", in_text=True)
    assert with_text.renamed_body(with_text.cells[0]).endswith(
        "print(f'{count!r:>{count}} count', \"count\")"
    )


def test_rename_applies_in_one_revision_and_rescoring_clears_the_twin_flag():
    ann = data.annotator()
    trajectory = data.candidate()
    assert Flag.objects.filter(trajectory=trajectory, kind="identifier_twin").exists()
    review.trajectory_rename_identifier(
        trajectory=trajectory, old="totl_sum", new="total_sum", author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    assert "totl_sum = 0" not in trajectory.text
    assert "# totl_sum should match" in trajectory.text
    assert trajectory.revisions.get().reason == "totl_sum → total_sum (3 places)"
    assert not Flag.objects.filter(trajectory=trajectory, kind="identifier_twin").exists()


# --- Undo and decisions -------------------------------------------------------------------------


def test_undo_reverts_changes_one_at_a_time_and_passes_over_decisions():
    ann = data.annotator()
    trajectory = data.candidate()
    original = trajectory.text
    cell = code_index(trajectory, 1)
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=cell, code="print(1)", author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    after_first = trajectory.text
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=cell, code="print(2)", author=ann, base_version=2
    )
    review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.SKIPPED, user=ann, base_version=3
    )
    review.trajectory_undo(trajectory=trajectory, author=ann, base_version=4)
    trajectory.refresh_from_db()
    assert trajectory.text == after_first
    assert trajectory.review_status == ReviewStatus.PENDING  # an edit reopens a decided item
    review.trajectory_undo(trajectory=trajectory, author=ann, base_version=5)
    trajectory.refresh_from_db()
    assert trajectory.text == original
    with pytest.raises(ValueError, match="nothing to undo"):
        review.trajectory_undo(trajectory=trajectory, author=ann, base_version=6)


def test_decisions_need_the_current_version_and_rejection_a_reason():
    ann = data.annotator()
    trajectory = data.candidate()
    review.trajectory_claim(trajectory=trajectory, user=ann)
    with pytest.raises(ValueError, match="needs a reason"):
        review.trajectory_decide(
            trajectory=trajectory, decision=ReviewStatus.REJECTED, user=ann, base_version=1
        )
    approved = review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.APPROVED, user=ann, base_version=1
    )
    assert (approved.review_status, approved.reviewed_by, approved.claimed_by) == (
        ReviewStatus.APPROVED,
        ann,
        None,
    )
    assert approved.version == 2
    with pytest.raises(review.StaleVersionError):
        review.trajectory_decide(
            trajectory=trajectory,
            decision=ReviewStatus.REJECTED,
            reason="x",
            user=ann,
            base_version=1,
        )
    reopened = review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.PENDING, user=ann, base_version=2
    )
    assert (reopened.review_status, reopened.reviewed_by) == (ReviewStatus.PENDING, None)
    assert [r.action for r in trajectory.revisions.order_by("id")] == [
        "decide_approved",
        "decide_pending",
    ]


# --- Outputs stay true, leases hold -------------------------------------------------------------


def stale_flags(trajectory: Trajectory) -> list[Flag]:
    return list(Flag.objects.filter(trajectory=trajectory, kind="stale_output"))


def approve(trajectory: Trajectory, user, base_version: int) -> Trajectory:
    return review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.APPROVED, user=user, base_version=base_version
    )


def test_a_cell_saved_without_a_rerun_has_a_stale_output_until_it_runs_again():
    ann = data.annotator()
    trajectory = data.candidate()
    index = code_index(trajectory, 1)
    assert stale_flags(trajectory) == []  # the generated outputs are true by construction
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=index, code="print(1 + 1)", author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    [flag] = stale_flags(trajectory)
    assert (flag.level, flag.message) == ("error", "output is stale: re-run the cell")
    assert flag.segment_index == index + 1
    assert trajectory.text[flag.start : flag.end] == fmt.output_block("385")
    with pytest.raises(ConflictError, match="output is stale: re-run cell 1"):
        approve(trajectory, ann, 2)
    assert trajectory.revisions.count() == 1  # the refusal recorded nothing

    review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=index, author=ann, base_version=2
    )
    assert segment(trajectory, index + 1).body == "2"
    assert stale_flags(trajectory) == []
    assert approve(trajectory, ann, 3).review_status == ReviewStatus.APPROVED


def test_a_rerun_that_prints_the_same_output_clears_it_too_and_undo_passes_over_it():
    ann = data.annotator()
    trajectory = data.candidate()
    index = code_index(trajectory, 1)
    original = trajectory.text
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=index, code="print(385)", author=ann, base_version=1
    )
    trajectory.refresh_from_db()
    edited = trajectory.text
    assert len(stale_flags(trajectory)) == 1
    result = review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=index, author=ann, base_version=2
    )
    trajectory.refresh_from_db()
    assert (trajectory.text, trajectory.version) == (edited, 3)
    assert result.revision.before_text == result.revision.after_text
    assert stale_flags(trajectory) == []
    # Running it again proves nothing new: no revision.
    again = review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=index, author=ann, base_version=3
    )
    assert again.revision is None
    review.trajectory_undo(trajectory=trajectory, author=ann, base_version=3)
    trajectory.refresh_from_db()
    assert trajectory.text == original and stale_flags(trajectory) == []


def test_keeping_a_stale_output_needs_a_reason_and_is_a_revision():
    ann = data.annotator()
    trajectory = data.candidate()
    review.trajectory_rename_identifier(
        trajectory=trajectory, old="totl_sum", new="total_sum", author=ann, base_version=1
    )
    [flag] = stale_flags(trajectory)  # the renamed cell's output: it prints the same, but unrun
    with pytest.raises(ValueError, match="needs a reason"):
        review.trajectory_keep_output(
            trajectory=trajectory,
            segment_index=flag.segment_index,
            reason="  ",
            author=ann,
            base_version=2,
        )
    reason = "a rename cannot change what the cell prints"
    result = review.trajectory_keep_output(
        trajectory=trajectory,
        segment_index=flag.segment_index,
        reason=reason,
        author=ann,
        base_version=2,
    )
    revision = result.revision
    assert (revision.action, revision.reason, revision.author) == ("keep_stale_output", reason, ann)
    assert revision.before_text == revision.after_text
    assert result.trajectory.version == 3
    assert stale_flags(trajectory) == []
    with pytest.raises(ValueError, match="not stale"):
        review.trajectory_keep_output(
            trajectory=trajectory,
            segment_index=flag.segment_index,
            reason=reason,
            author=ann,
            base_version=3,
        )
    assert approve(trajectory, ann, 3).review_status == ReviewStatus.APPROVED


def test_in_a_notebook_round_a_changed_cell_makes_every_later_output_stale():
    ann = data.annotator()
    text = (
        "<think>\n```python\nx = 40\n```\n```output\n\n```\n"
        "```python\nprint(x + 2)\n```\n```output\n42\n```\n</think>\n\\boxed{42}"
    )
    trajectory = data.candidate(text, hints=[], round=RoundFactory(tool_config={"notebook": True}))
    assert stale_flags(trajectory) == []
    first = code_index(trajectory, 1)
    review.trajectory_edit_code(
        trajectory=trajectory, segment_index=first, code="x = 41", author=ann, base_version=1
    )
    assert len(stale_flags(trajectory)) == 2
    with pytest.raises(ConflictError, match="re-run cell 1, cell 2"):
        approve(trajectory, ann, 2)
    review.trajectory_rerun_cell(
        trajectory=trajectory, segment_index=first, author=ann, base_version=2, following=True
    )
    assert segment(trajectory, code_index(trajectory, 2) + 1).body == "43"
    assert stale_flags(trajectory) == []


def test_a_live_lease_refuses_everyone_else_s_edits_and_decisions():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate()
    review.trajectory_claim(trajectory=trajectory, user=bob)
    index = code_index(trajectory, 1)
    review.trajectory_edit_code(  # bob's own edit: something to undo, an output to keep
        trajectory=trajectory, segment_index=index, code="print(1 + 1)", author=bob, base_version=1
    )
    placeholder = Flag.objects.get(trajectory=trajectory, kind="placeholder")

    def never(code, **kwargs):  # a refused save must not cost a sandbox run
        pytest.fail("the cell ran for a save that is refused")

    writes = {
        "edit code": lambda: review.trajectory_edit_code(
            trajectory=trajectory, segment_index=index, code="print(3)", author=ann, base_version=2
        ),
        "edit text": lambda: review.trajectory_edit_segment(
            trajectory=trajectory, segment_index=0, text="<think>\nHm.", author=ann, base_version=2
        ),
        "re-run": lambda: review.trajectory_rerun_cell(
            trajectory=trajectory, segment_index=index, author=ann, base_version=2, runner=never
        ),
        "delete": lambda: review.trajectory_delete_segment(
            trajectory=trajectory, segment_index=index, author=ann, base_version=2
        ),
        "fix": lambda: review.trajectory_fix_span(
            trajectory=trajectory,
            start=placeholder.start,
            end=placeholder.end,
            replacement="return True",
            author=ann,
            base_version=2,
        ),
        "rename": lambda: review.trajectory_rename_identifier(
            trajectory=trajectory, old="totl_sum", new="total_sum", author=ann, base_version=2
        ),
        "undo": lambda: review.trajectory_undo(trajectory=trajectory, author=ann, base_version=2),
        "keep output": lambda: review.trajectory_keep_output(
            trajectory=trajectory,
            segment_index=index + 1,
            reason="same",
            author=ann,
            base_version=2,
        ),
        "reject": lambda: review.trajectory_decide(
            trajectory=trajectory,
            decision=ReviewStatus.REJECTED,
            reason="Wrong final answer",
            user=ann,
            base_version=2,
        ),
        "skip": lambda: review.trajectory_decide(
            trajectory=trajectory, decision=ReviewStatus.SKIPPED, user=ann, base_version=2
        ),
    }
    for what, write in writes.items():
        with pytest.raises(ConflictError, match=r"^claimed by bob until \d\d:\d\d$"):
            write()
            pytest.fail(f"{what} went through")
    trajectory.refresh_from_db()
    assert (trajectory.version, trajectory.claimed_by) == (2, bob)
    assert trajectory.revisions.count() == 1
    # Once the lease is gone, so is the refusal.
    review.trajectory_release(trajectory=trajectory, user=bob)
    review.trajectory_decide(
        trajectory=trajectory, decision=ReviewStatus.SKIPPED, user=ann, base_version=2
    )


def test_a_curator_may_take_over_a_lease_and_the_take_over_is_recorded():
    ann, bob, cy = data.annotator("ann"), data.annotator("bob"), data.curator("cy")
    trajectory = data.candidate()
    review.trajectory_claim(trajectory=trajectory, user=ann)
    with pytest.raises(ConflictError, match="claimed by ann"):
        review.trajectory_claim(trajectory=trajectory, user=cy)  # only when asked for
    with pytest.raises(PermissionDenied):
        review.trajectory_claim(trajectory=trajectory, user=bob, take_over=True)

    taken = review.trajectory_claim(trajectory=trajectory, user=cy, take_over=True)
    assert taken.claimed_by == cy and taken.version == 1  # a lease is not content
    revision = trajectory.revisions.get()
    assert (revision.action, revision.author) == ("take_over_claim", cy)
    assert revision.reason.startswith("took over the claim of ann (until ")
    assert review.undoable_revision(trajectory=trajectory) is None
    with pytest.raises(ConflictError, match="claimed by cy"):
        approve(trajectory, ann, 1)
    assert approve(trajectory, cy, 1).reviewed_by == cy


# --- The sandbox outside the lock and the request's critical path ------------------------------

CODE_TEXT = (
    "<think>\nAdd them.\n```python\ndef add(a, b):\n    return a - b\n```\n"
    "</think>\n\n```python\ndef add(a, b):\n    return a - b\n```"
)


def code_candidate() -> Trajectory:
    problem = ProblemFactory(
        domain=Domain.CODE,
        prompt="Write add(a, b).",
        entry_point="add",
        tests=[{"type": "call", "args": [2, 3], "expected": 5}],
    )
    return data.candidate(CODE_TEXT, problem=problem)


def last_cell(trajectory: Trajectory) -> int:
    return [i for i, s in enumerate(review.trajectory_segments(trajectory)) if s.kind == "code"][-1]


def test_a_code_problem_edit_is_scored_later_on_the_sandbox_queue(
    django_capture_on_commit_callbacks, monkeypatch
):
    trajectory = code_candidate()
    assert trajectory.is_correct is False
    with django_capture_on_commit_callbacks() as callbacks:
        review.trajectory_edit_code(
            trajectory=trajectory,
            segment_index=last_cell(trajectory),
            code="def add(a, b):\n    return a + b",
            author=data.annotator(),
            base_version=1,
        )
    trajectory.refresh_from_db()
    # Saved at once; the tests have not run in the request.
    assert "return a + b" in trajectory.text
    assert trajectory.score_details == {"reason": services.SCORING_PENDING, "pending": True}
    assert trajectory.is_correct is None
    sent = []
    monkeypatch.setattr("curation.dispatch.send", lambda task, ids: sent.append((task, ids)))
    for callback in callbacks:
        callback()
    assert sent == [(Task.RESCORE_TRAJECTORY, {"trajectory_id": trajectory.pk})]
    # What the sandbox queue's task does with it.
    services.trajectory_score(trajectory=trajectory)
    trajectory.refresh_from_db()
    assert trajectory.is_correct is True and "pending" not in trajectory.score_details


def test_a_sandbox_that_is_down_leaves_the_score_pending_until_it_returns():
    trajectory = code_candidate()

    def down(code, **kwargs):
        raise OSError("sandbox pool is gone")

    services.trajectory_score(trajectory=trajectory, runner=down)
    trajectory.refresh_from_db()
    assert trajectory.score_details["pending"] is True
    assert trajectory.score_details["reason"].startswith("runner error")
    services.trajectory_score(trajectory=trajectory)  # back again
    trajectory.refresh_from_db()
    assert trajectory.is_correct is False and "pending" not in trajectory.score_details


def test_cells_run_outside_any_transaction_and_a_save_meanwhile_wins():
    ann, bob = data.annotator("ann"), data.annotator("bob")
    trajectory = data.candidate()
    index = code_index(trajectory, 1)
    outside = len(connection.atomic_blocks)  # the test's own transaction
    seen = []

    def runner(code, **kwargs):
        seen.append(len(connection.atomic_blocks) - outside)  # opened by the service
        # Bob saves while ann's cell runs: ann's output would belong to an older text.
        review.trajectory_edit_code(
            trajectory=trajectory, segment_index=index, code="print(2)", author=bob, base_version=1
        )
        return sandbox_like(stdout="1\n")

    with pytest.raises(review.StaleVersionError, match="changed by bob"):
        review.trajectory_rerun_cell(
            trajectory=trajectory, segment_index=index, author=ann, base_version=1, runner=runner
        )
    assert seen == [0]
    trajectory.refresh_from_db()
    assert trajectory.version == 2 and segment(trajectory, index).body == "print(2)"


def test_a_stale_score_of_an_older_text_is_dropped():
    trajectory = data.candidate()
    old = Trajectory.objects.get(pk=trajectory.pk)
    review.trajectory_edit_code(
        trajectory=trajectory,
        segment_index=code_index(trajectory, 1),
        code="print(1)",
        author=data.annotator(),
        base_version=1,
    )
    old.text = "<think>\nnothing\n</think> \\boxed{7}"  # what a slow scorer saw
    services.trajectory_score(trajectory=old)
    trajectory.refresh_from_db()
    assert trajectory.extracted_answer == "385"


def sandbox_like(*, stdout: str) -> Execution:
    return Execution(stdout=stdout, stderr="", exit_code=0, reason=None, wall_s=0.0, cpu_s=0.0)

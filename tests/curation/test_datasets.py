import pytest

from curation.datasets import (
    dataset_version_diff,
    dataset_version_freeze,
    select_seed_candidates,
    select_start_candidates,
)
from curation.models import Candidate, Dataset, DatasetKind, Flag, ReviewStatus, RoundKind
from curation.trajectory import output_block
from tests.factories import ProblemFactory, RoundFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."
TEXT = (
    "<think>\nLet me add.\n" + HINT + "```python\nprint(2 + 2)\n```\n" + output_block("4")
    + "So it is 4.\n</think>\n\nThe answer is \\boxed{4}."
)  # fmt: skip


@pytest.fixture
def seed_round():
    round_ = RoundFactory(kind=RoundKind.SEED)
    solved_with_hints, solved_anyway = ProblemFactory(), ProblemFactory()
    for problem, baseline_correct in ((solved_with_hints, False), (solved_anyway, True)):
        TrajectoryFactory(round=round_, problem=problem, hinted=False, is_correct=baseline_correct)
        TrajectoryFactory(
            round=round_, problem=problem, hinted=True, is_correct=True, num_tool_calls=1,
            text=TEXT, hints=[HINT],
        )  # fmt: skip
    return round_, solved_with_hints


def test_seed_selection_marks_candidates_and_stores_the_funnel(seed_round):
    round_, problem = seed_round
    selection = select_seed_candidates(round=round_)
    candidates = round_.trajectories.filter(candidate=Candidate.SEED)
    assert [t.problem for t in candidates] == [problem]
    assert all(t.hinted for t in candidates)
    round_.refresh_from_db()
    assert round_.selection == selection
    assert selection["funnel"][0] == {"step": "problems sampled", "count": 2}
    assert selection["funnel"][-1] == {"step": "candidates (one per problem)", "count": 1}


def test_selection_sees_flags_from_the_database(seed_round):
    round_, _ = seed_round
    hinted = round_.trajectories.get(
        candidate="", hinted=True, problem__trajectories__is_correct=False
    )
    Flag.objects.create(trajectory=hinted, kind="repetition", message="loop", start=0, end=5)
    assert select_seed_candidates(round=round_)["chosen"] == []


def _approve_all(round_):
    round_.trajectories.exclude(candidate="").update(review_status=ReviewStatus.APPROVED)


def test_freeze_copies_texts_and_masks_and_later_edits_do_not_change_it(seed_round):
    round_, _ = seed_round
    select_seed_candidates(round=round_)
    _approve_all(round_)
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    v1 = dataset_version_freeze(dataset=dataset)
    assert (v1.number, v1.size) == (1, 1)
    item = v1.items.get()
    assert item.text == TEXT
    masked = [item.text[a:b] for a, b in item.mask_spans]
    assert masked == [HINT, output_block("4")]

    trajectory = item.trajectory
    trajectory.text = TEXT.replace("Let me add.", "Let me add the numbers.")
    trajectory.save()
    item.refresh_from_db()
    assert item.text == TEXT  # frozen

    v2 = dataset_version_freeze(dataset=dataset)
    assert v2.number == 2 and v2.content_hash != v1.content_hash
    assert dataset_version_diff(old=v1, new=v2) == {
        "added": [], "removed": [], "changed": [trajectory.id]
    }  # fmt: skip


def test_freeze_refuses_an_unchanged_or_empty_set(seed_round):
    round_, _ = seed_round
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    with pytest.raises(ValueError, match="no approved trajectories"):
        dataset_version_freeze(dataset=dataset)
    select_seed_candidates(round=round_)
    _approve_all(round_)
    dataset_version_freeze(dataset=dataset)
    with pytest.raises(ValueError, match="nothing changed since v1"):
        dataset_version_freeze(dataset=dataset)


def test_start_selection_keeps_one_per_problem():
    round_ = RoundFactory(kind=RoundKind.RFT)
    problem = ProblemFactory()
    _longer, short = (
        TrajectoryFactory(round=round_, problem=problem, is_correct=True, text=TEXT + pad)
        for pad in (" and more words", "")
    )
    TrajectoryFactory(round=round_, problem=problem, is_correct=False)
    select_start_candidates(round=round_)
    assert list(round_.trajectories.filter(candidate=Candidate.START)) == [short]

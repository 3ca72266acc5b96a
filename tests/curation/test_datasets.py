import pytest

from curation.datasets import (
    dataset_default_rounds,
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


# --- Selection rules hold wherever a freeze starts ---------------------------------------------


def _approved_start(round_, problem, **fields):
    return TrajectoryFactory(
        round=round_, problem=problem, text=TEXT, hints=[HINT], is_correct=True,
        candidate=Candidate.START, review_status=ReviewStatus.APPROVED, **fields,
    )  # fmt: skip


@pytest.fixture
def two_rft_rounds():
    """Two RFT rounds that each approved a trajectory for the same problem."""
    problem = ProblemFactory(prompt="Find the sum of all integers k such that " + "x" * 100)
    first, second = RoundFactory(kind=RoundKind.RFT), RoundFactory(kind=RoundKind.RFT)
    for round_ in (first, second):
        _approved_start(round_, problem)
    return first, second, problem


def test_a_start_freeze_defaults_to_the_latest_rft_round(two_rft_rounds):
    _first, second, _problem = two_rft_rounds
    second.selection = {"rule": "d_start", "funnel": [{"step": "problems sampled", "count": 1}]}
    second.save()
    RoundFactory(kind=RoundKind.RFT)  # newer, but nothing approved in it
    dataset = Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    assert dataset_default_rounds(dataset=dataset) == [second]

    version = dataset_version_freeze(dataset=dataset)
    assert [item.trajectory.round for item in version.items.all()] == [second]
    assert version.rules["rounds"] == {second.name: second.selection}
    assert version.funnel == [
        {"round": second.name, "step": "problems sampled", "count": 1},
        {"step": "approved by annotators", "count": 1},
    ]


def test_a_start_freeze_refuses_two_trajectories_for_one_problem(two_rft_rounds):
    first, second, problem = two_rft_rounds
    dataset = Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    with pytest.raises(ValueError) as refused:
        dataset_version_freeze(dataset=dataset, rounds=[first, second])
    message = str(refused.value)
    ids = ", ".join(f"#{t.pk}" for t in problem.trajectories.order_by("id"))
    assert message == (
        f"d-start: 1 problem has more than one approved trajectory: #{problem.pk} "
        f"'Find the sum of all integers k such that {'x' * 38}…' (trajectories {ids}); "
        "reject the extras first"
    )
    assert not dataset.versions.exists()


def test_a_start_freeze_refuses_extras_within_one_round_and_names_at_most_ten():
    round_ = RoundFactory(kind=RoundKind.RFT)
    problems = ProblemFactory.create_batch(12)
    for problem in problems:
        _approved_start(round_, problem)
        _approved_start(round_, problem)
    dataset = Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    with pytest.raises(ValueError, match=r"^d-start: 12 problems have more than one") as refused:
        dataset_version_freeze(dataset=dataset, rounds=[round_])
    message = str(refused.value)
    assert f"#{problems[9].pk} " in message and f"#{problems[10].pk} " not in message
    assert message.endswith("; and 2 more; reject the extras first")


def test_a_seed_freeze_takes_seed_rounds_only(seed_round):
    round_, _ = seed_round
    select_seed_candidates(round=round_)
    _approve_all(round_)
    rft = RoundFactory(kind=RoundKind.RFT)
    evaluation = RoundFactory(kind=RoundKind.EVAL)
    TrajectoryFactory(  # a seed candidate outside a seed round is never pooled
        round=rft, candidate=Candidate.SEED, review_status=ReviewStatus.APPROVED, text=TEXT
    )
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    with pytest.raises(ValueError) as refused:
        dataset_version_freeze(dataset=dataset, rounds=[round_, rft, evaluation])
    assert str(refused.value) == (
        f"d-seed: a D_seed version takes seed rounds only, not {rft.name} (rft), "
        f"{evaluation.name} (eval)"
    )
    assert dataset_default_rounds(dataset=dataset) == [round_]
    version = dataset_version_freeze(dataset=dataset)
    assert {item.trajectory.round for item in version.items.all()} == {round_}


def test_a_freeze_of_rounds_without_approved_candidates_is_refused(seed_round):
    round_, _ = seed_round
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    refused = f"^d-seed: no approved trajectories to freeze in {round_.name}$"
    with pytest.raises(ValueError, match=refused):
        dataset_version_freeze(dataset=dataset, rounds=[round_])

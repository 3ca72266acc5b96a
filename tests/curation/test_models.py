import pytest
from django.db import IntegrityError, connection, transaction

from curation.models import Candidate, ReviewStatus, Trajectory
from tests.factories import ProblemFactory, RoundFactory, TrajectoryFactory

pytestmark = pytest.mark.django_db


def test_suite_runs_on_postgres():
    # The constraints below must hold in the database the app runs on, not only in SQLite.
    assert connection.vendor == "postgresql"


def test_trajectory_is_unique_per_round_problem_hint_and_sample():
    first = TrajectoryFactory(sample_index=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrajectoryFactory(round=first.round, problem=first.problem, hinted=True, sample_index=0)
    # The same sample index without hints is another trajectory.
    TrajectoryFactory(round=first.round, problem=first.problem, hinted=False, sample_index=0)
    assert Trajectory.objects.count() == 2


def test_problem_external_id_is_unique_within_its_set():
    problem = ProblemFactory(external_id="aime-1")
    ProblemFactory(external_id="aime-1")  # another set: allowed
    with pytest.raises(IntegrityError), transaction.atomic():
        ProblemFactory(problem_set=problem.problem_set, external_id="aime-1")


def test_review_queue_filters_candidates_pending_and_unclaimed():
    round_ = RoundFactory()
    pending = TrajectoryFactory(round=round_, candidate=Candidate.SEED)
    TrajectoryFactory(round=round_, candidate=Candidate.NONE)
    TrajectoryFactory(round=round_, candidate=Candidate.SEED, review_status=ReviewStatus.APPROVED)
    assert list(Trajectory.objects.pending_review().unclaimed()) == [pending]


def test_review_queue_query_uses_an_index():
    round_ = RoundFactory()
    TrajectoryFactory.create_batch(3, round=round_, candidate=Candidate.SEED)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        qs = Trajectory.objects.filter(round=round_, candidate="d_seed", review_status="pending")
        plan = qs.explain()
        cursor.execute("SET enable_seqscan = on")
    assert "traj_queue" in plan

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission

from curation import services
from curation.audit import audit_record
from curation.datasets import dataset_version_freeze
from curation.models import (
    AuditAction,
    AuditEvent,
    Candidate,
    ChunkStatus,
    Dataset,
    DatasetKind,
    DatasetVersion,
    HintTemplate,
    ReviewStatus,
    RoundChunk,
    RoundKind,
    RunStatus,
    SFTJob,
)
from curation.roles import CURATOR, roles_change_record, roles_snapshot
from tests.factories import (
    PolicyFactory,
    ProblemFactory,
    ProblemSetFactory,
    RoundFactory,
    TrajectoryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator():
    return UserFactory(username="cora")


def _only_event() -> AuditEvent:
    """The one event the action wrote (and there is no other)."""
    (event,) = AuditEvent.objects.all()
    return event


def _round_with_problems():
    problem_set = ProblemSetFactory()
    ProblemFactory.create_batch(3, problem_set=problem_set)
    round_ = RoundFactory(kind=RoundKind.SEED)
    round_.problem_sets.add(problem_set)
    return round_


def test_launching_a_round_is_recorded_with_its_actor(curator):
    round_ = _round_with_problems()
    services.round_launch(round=round_, chunk_size=2, user=curator)
    event = _only_event()
    assert (event.action, event.actor, event.target_type) == (
        AuditAction.ROUND_LAUNCHED,
        curator,
        "curation.round",
    )
    assert (event.target_id, event.target_repr) == (str(round_.pk), round_.name)
    assert event.before == {"status": "draft"}
    assert event.after == {"status": "queued", "total": 6, "chunks": 2}


def test_a_refused_launch_records_nothing(curator):
    round_ = RoundFactory(kind=RoundKind.SEED)
    with pytest.raises(services.ConflictError):
        services.round_launch(round=round_, chunk_size=2, user=curator)
    assert not AuditEvent.objects.exists()


def test_cancelling_a_round_is_recorded_once(curator):
    round_ = RoundFactory(status=RunStatus.RUNNING)
    services.round_cancel(round=round_, user=curator)
    services.round_cancel(round=round_, user=curator)  # already cancelled: nothing changes
    event = _only_event()
    assert (event.action, event.actor) == (AuditAction.ROUND_CANCELLED, curator)
    assert (event.before, event.after) == ({"status": "running"}, {"status": "cancelled"})


def test_rerunning_failed_chunks_is_recorded(curator):
    round_ = RoundFactory(status=RunStatus.FAILED)
    RoundChunk.objects.create(round=round_, index=0, status=ChunkStatus.DONE)
    RoundChunk.objects.create(round=round_, index=1, status=ChunkStatus.FAILED)
    assert services.round_rerun_failed(round=round_, user=curator) == 1
    event = _only_event()
    assert (event.action, event.actor) == (AuditAction.ROUND_RERUN_FAILED, curator)
    assert (event.before, event.after) == (
        {"status": "failed"},
        {"status": "queued", "chunks": [1]},
    )


def test_registering_a_policy_is_recorded_and_registering_it_again_is_not(curator):
    base = PolicyFactory(name="qwq")
    policy = services.policy_register(name="start-0", path="/m/s0", parent=base, user=curator)
    services.policy_register(name="start-0", path="/m/s0", user=curator)
    event = _only_event()
    assert (event.action, event.actor, event.target_id) == (
        AuditAction.POLICY_REGISTERED,
        curator,
        str(policy.pk),
    )
    assert event.before is None
    assert event.after == {"name": "start-0", "path": "/m/s0", "parent": "qwq"}


def test_a_script_is_an_actor_of_none():
    services.policy_register(name="tiny", path="/m/tiny")
    assert _only_event().actor is None
    event = audit_record(
        actor=AnonymousUser(), action=AuditAction.POLICY_REGISTERED, target=PolicyFactory()
    )
    assert event.actor is None


@pytest.fixture
def version():
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    return DatasetVersion.objects.create(dataset=dataset, number=1, content_hash="0" * 64, size=2)


def test_launching_and_cancelling_an_sft_job_are_recorded(curator, version):
    job = services.sft_job_launch(
        dataset_version=version,
        base_policy=PolicyFactory(name="qwq"),
        output_name="start-0",
        config={"learning_rate": 1e-5},
        user=curator,
    )
    launched = _only_event()
    assert (launched.action, launched.actor, launched.target_id) == (
        AuditAction.SFT_JOB_LAUNCHED,
        curator,
        str(job.pk),
    )
    assert launched.after == {
        "dataset_version": "d-seed v1",
        "base_policy": "qwq",
        "output_name": "start-0",
        "config": {"learning_rate": 1e-5},
    }
    services.sft_job_cancel(job=job, user=curator)
    services.sft_job_cancel(job=job, user=curator)
    (cancelled,) = AuditEvent.objects.filter(action=AuditAction.SFT_JOB_CANCELLED)
    assert (cancelled.actor, cancelled.before, cancelled.after) == (
        curator,
        {"status": "queued"},
        {"status": "cancelled"},
    )
    assert SFTJob.objects.get().status == RunStatus.CANCELLED


def test_freezing_is_recorded_with_the_version_it_replaced(curator):
    round_ = RoundFactory(kind=RoundKind.SEED)
    first = TrajectoryFactory(
        round=round_, candidate=Candidate.SEED, review_status=ReviewStatus.APPROVED
    )
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    v1 = dataset_version_freeze(dataset=dataset, user=curator)
    event = _only_event()
    assert (event.action, event.actor, event.target_type, event.target_repr) == (
        AuditAction.DATASET_FROZEN,
        curator,
        "curation.datasetversion",
        "d-seed v1",
    )
    assert event.before is None
    assert event.after == {
        "number": 1,
        "content_hash": v1.content_hash,
        "size": 1,
        "rounds": [round_.name],
    }
    first.text += " More."
    first.save()
    v2 = dataset_version_freeze(dataset=dataset, user=curator)
    latest = AuditEvent.objects.first()
    assert latest.before == {"number": 1, "content_hash": v1.content_hash}
    assert latest.after["content_hash"] == v2.content_hash


def test_a_refused_freeze_records_nothing(curator):
    dataset = Dataset.objects.create(name="d-start", kind=DatasetKind.START)
    with pytest.raises(ValueError):
        dataset_version_freeze(dataset=dataset, user=curator)
    assert not AuditEvent.objects.exists()


def test_hint_edits_keep_the_wording_they_replace(curator):
    template = HintTemplate(name="check", domain="math", text="Let me check.\n```python\n")
    services.hint_template_save(template=template, user=curator)
    added = _only_event()
    assert (added.action, added.actor, added.before) == (AuditAction.HINT_EDITED, curator, None)
    assert added.after["text"] == "Let me check.\n```python\n"

    template.text = "Let me verify.\n```python\n"
    services.hint_template_save(template=template, user=curator)
    services.hint_template_save(template=template, user=curator)  # unchanged: not an edit
    edited = AuditEvent.objects.first()
    assert AuditEvent.objects.count() == 2
    assert (edited.before["text"], edited.after["text"]) == (
        "Let me check.\n```python\n",
        "Let me verify.\n```python\n",
    )

    services.hint_template_delete(template=template, user=curator)
    deleted = AuditEvent.objects.first()
    assert AuditEvent.objects.count() == 3 and not HintTemplate.objects.filter(name="check")
    assert (deleted.before["text"], deleted.after) == ("Let me verify.\n```python\n", None)
    assert deleted.target_repr == "check"


def test_role_changes_are_recorded_with_the_roles_before_and_after(curator):
    user = UserFactory(username="ann")
    before = roles_snapshot(holder=user)
    assert roles_change_record(holder=user, before=before, actor=curator) is None
    user.groups.add(Group.objects.get(name=CURATOR))
    user.is_staff = True
    user.save()
    event = roles_change_record(holder=user, before=before, actor=curator)
    assert event == _only_event()
    assert (event.action, event.actor, event.target_type, event.target_repr) == (
        AuditAction.ROLE_CHANGED,
        curator,
        "auth.user",
        "ann",
    )
    assert event.before == {
        "groups": [],
        "permissions": [],
        "is_staff": False,
        "is_superuser": False,
    }
    assert event.after == {
        "groups": ["curator"],
        "permissions": [],
        "is_staff": True,
        "is_superuser": False,
    }


def test_a_groups_permissions_are_its_roles(curator):
    group = Group.objects.create(name="trainers")
    assert roles_change_record(holder=group, before=None, actor=curator) is None
    group.permissions.add(Permission.objects.get(codename="view_datasetversion"))
    event = roles_change_record(holder=group, before={"permissions": []}, actor=curator)
    assert event.after == {"permissions": ["curation.view_datasetversion"]}

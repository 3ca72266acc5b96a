"""The demo's rounds: `make demo` launches a seed round, then an eval round and an eval sweep of
the tiny policy, through the services a curator's actions call (no worker here: what is
enqueued is recorded)."""

import pytest
from django.core.management import CommandError, call_command

from curation import demo
from curation.demo import DemoStatus, demo_rounds_launch
from curation.models import Policy, Round, RoundKind, RunStatus
from curation.services import ConflictError
from tests.factories import PolicyFactory, ProblemFactory, ProblemSetFactory
from tests.webapp import workbench_data as data

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The chunks enqueued, in order (after commit), instead of a broker."""
    chunks = []
    monkeypatch.setattr("curation.dispatch.send", lambda task, ids: chunks.append(ids["chunk_id"]))
    return chunks


def _sets():
    train = ProblemSetFactory(name="sample")
    ProblemFactory.create_batch(3, problem_set=train)
    held_out = ProblemSetFactory(name="sample-eval")
    ProblemFactory.create_batch(2, problem_set=held_out, split="test")
    return train, held_out


def test_the_demo_launches_a_seed_round_then_an_eval_round_and_a_sweep(
    sent, django_capture_on_commit_callbacks
):
    train, held_out = _sets()
    policy = PolicyFactory(name="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        rounds = demo_rounds_launch(name="demo", policy=policy, train_set=train, eval_set=held_out)

    assert [r.name for r in rounds.all] == [
        "demo-seed",
        "demo-eval",
        *(f"demo-tts-end{k}" for k in demo.DEMO_SWEEP_END_REPEATS),
    ]
    assert [r.kind for r in rounds.all] == [RoundKind.SEED, RoundKind.EVAL] + [RoundKind.EVAL] * 3
    assert {r.status for r in Round.objects.all()} == {RunStatus.QUEUED}
    assert [r.total for r in rounds.all] == [6, 10, 5, 5, 5]
    evaluation = rounds.evaluation
    assert (evaluation.samples_plain, evaluation.samples_hinted) == (1, 1)
    assert evaluation.max_tokens == demo.DEMO_EVAL_MAX_TOKENS
    assert [r.hint_config["end_repeats"] for r in rounds.sweep] == [0, 1, 2]
    assert {r.max_tokens for r in rounds.sweep} == {demo.DEMO_EVAL_MAX_TOKENS}
    evaluated = {frozenset(r.problem_sets.all()) for r in rounds.all[1:]}
    assert evaluated == {frozenset([train, held_out])}
    # The rollout worker takes the seed round's chunks first: the annotators' candidates.
    order = [Round.objects.get(chunks__id=chunk).name for chunk in sent]
    assert order == sorted(order, key=[r.name for r in rounds.all].index)
    assert order[0] == "demo-seed" and len(sent) == 5

    with pytest.raises(ConflictError, match="exist already"):
        demo_rounds_launch(name="demo", policy=policy, train_set=train, eval_set=held_out)
    assert Round.objects.count() == 5


def test_the_demo_command_builds_the_policy_then_launches_its_rounds(
    sent, settings, tmp_path, monkeypatch
):
    settings.DEMO_STATUS_FILE = tmp_path / "status.json"
    settings.DEFAULT_POLICY_PATH = ""
    policy_dir = tmp_path / "0123456789abcdef"
    policy_dir.mkdir()
    (policy_dir / "config.json").write_text("{}")
    monkeypatch.setattr("training.tiny_policy.build_tiny_policy", lambda **kwargs: policy_dir)
    _sets()

    call_command("demo_first_round")

    status = demo.demo_status_read(path=settings.DEMO_STATUS_FILE)
    seed = Round.objects.get(kind=RoundKind.SEED)
    assert status == DemoStatus("ready", round_id=seed.pk)
    assert "an eval round and an eval sweep follow it" in status.message
    assert Policy.objects.get().path == str(policy_dir)
    assert Round.objects.filter(kind=RoundKind.EVAL).count() == 1 + len(demo.DEMO_SWEEP_END_REPEATS)


def test_a_missing_problem_set_is_shown_on_the_pages_and_nothing_is_launched(
    settings, tmp_path, monkeypatch
):
    settings.DEMO_STATUS_FILE = tmp_path / "status.json"
    monkeypatch.setattr("training.tiny_policy.build_tiny_policy", lambda **kwargs: tmp_path)
    ProblemSetFactory(name="sample")
    with pytest.raises(CommandError, match="unknown problem sets: sample-eval"):
        call_command("demo_first_round")
    status = demo.demo_status_read(path=settings.DEMO_STATUS_FILE)
    assert (status.stage, status.error) == ("failed", "unknown problem sets: sample-eval")
    assert not Round.objects.exists()


def test_the_ready_banner_links_curators_to_the_evaluation_page(client, settings, tmp_path):
    settings.DEMO_STATUS_FILE = tmp_path / "status.json"
    demo.demo_status_write(path=settings.DEMO_STATUS_FILE, status=DemoStatus("ready", round_id=3))
    client.force_login(data.curator())
    assert 'href="/console/evaluation/">the Evaluation page</a>' in client.get("/").content.decode()
    client.force_login(data.annotator())
    page = client.get("/").content.decode()
    assert "eval sweep follow it" in page and "/console/evaluation/" not in page

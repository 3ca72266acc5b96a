"""Rounds end to end: real Celery workers on Redis, the tiny policy on real vLLM, the sandbox."""

import itertools
from pathlib import Path

import pytest
from django.test import override_settings

from curation import selectors, services
from curation.importing import jsonl_records, problem_set_import
from curation.models import Policy, ProblemSet, Round, RoundChunk, RunStatus, Trajectory
from curation.trajectory import parse
from tests.conftest import purge_queues, start_worker, stop_worker, wait_until
from workers import sandbox
from workers.celery import app as celery_app

pytestmark = [pytest.mark.vllm, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SAMPLES = Path(__file__).resolve().parents[2] / "curation" / "data" / "sample_problems.jsonl"


@pytest.fixture
def tiny_policy(tiny_policy_path) -> Policy:
    return services.policy_register(name="tiny", path=str(tiny_policy_path))


def _problem_set(name: str, count: int) -> ProblemSet:
    lines = [line for line in SAMPLES.read_bytes().splitlines() if b'"math"' in line][:count]
    report = problem_set_import(name=name, records=jsonl_records(lines))
    assert report.ok, report.summary()
    return ProblemSet.objects.get(name=name)


def _launch(name: str, policy: Policy, problem_set: ProblemSet, *, chunk_size: int = 4, **opts):
    round_ = services.round_create(
        name=name, kind="seed", policy=policy, problem_sets=[problem_set], max_tokens=384, **opts
    )
    return services.round_launch(round=round_, chunk_size=chunk_size)


def _finished(round_: Round, timeout: float = 300) -> Round:
    wait_until(
        lambda: Round.objects.get(pk=round_.pk).status not in ("queued", "running"),
        timeout=timeout,
        interval=1,
    )
    return Round.objects.get(pk=round_.pk)


def test_seed_round_stores_hinted_and_baseline_trajectories_with_real_outputs(
    celery_worker, tiny_policy
):
    round_ = _finished(_launch("seed", tiny_policy, _problem_set("six", 6)))
    assert round_.status == RunStatus.DONE, round_.error
    trajectories = list(round_.trajectories.all())
    assert len(trajectories) == round_.total == 12
    assert {t.hinted for t in trajectories} == {True, False}
    assert all(t.is_correct is not None and t.finish_reason for t in trajectories)

    # The hinted samples carry their hints as segments, and their output blocks are what the
    # sandbox really prints for the code above them.
    hinted = [t for t in trajectories if t.hinted]
    assert any(t.hints for t in hinted)
    checked = 0
    for trajectory in trajectories:
        segments = parse(trajectory.text, hints=trajectory.hints)
        for before, after in itertools.pairwise(segments):
            if before.kind == "code" and after.kind == "output":
                rerun = sandbox.run(before.body).as_output_block_text()
                assert after.body.strip() == rerun.strip()
                checked += 1
    assert checked > 0
    assert round_.selection["funnel"][0]["count"] == 6


def test_cancelling_a_round_stops_its_chunks(celery_worker, tiny_policy):
    round_ = _launch("to-cancel", tiny_policy, _problem_set("many", 24), samples_hinted=4)
    wait_until(lambda: Trajectory.objects.filter(round=round_).exists(), timeout=300)
    services.round_cancel(round=round_)
    assert _finished(round_, timeout=120).status == RunStatus.CANCELLED
    # Chunks wind down within a poll or two; nothing close to the full round gets stored.
    wait_until(
        lambda: not RoundChunk.objects.filter(round=round_, status="running").exists(), timeout=60
    )
    assert Trajectory.objects.filter(round=round_).count() < round_.total


@pytest.mark.parametrize(
    "urls", [["http://127.0.0.1:9/v1"], ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]]
)
def test_an_unreachable_engine_fails_the_round_fast_with_one_clear_message(tiny_policy, urls):
    round_ = services.round_create(
        name=f"no-engine-{len(urls)}",
        kind="seed",
        policy=tiny_policy,
        problem_sets=[_problem_set("two", 2)],
    )
    with (
        override_settings(ROLLOUT_ENGINE="vllm-server", VLLM_SERVER_URLS=urls),
        pytest.MonkeyPatch.context() as patch,
    ):
        # Run the chunk task in this process, where the engine settings above apply.
        patch.setitem(celery_app.conf, "task_always_eager", True)
        services.round_launch(round=round_, chunk_size=8)
    round_.refresh_from_db()
    assert round_.status == RunStatus.FAILED
    assert "engine unavailable" in round_.error and "\n" not in round_.error
    assert all(url in round_.error for url in urls)  # every address that did not answer
    assert not round_.trajectories.exists()


def test_a_killed_worker_loses_only_what_was_in_flight(celery_worker, tiny_policy):
    stop_worker(celery_worker)  # this test runs its own workers
    purge_queues()
    doomed = start_worker("doomed", queues="rollout")
    round_ = _launch("killed", tiny_policy, _problem_set("twelve", 12), chunk_size=12)
    wait_until(lambda: Trajectory.objects.filter(round=round_).count() >= 4, timeout=300)
    stop_worker(doomed, sig=9)
    stored = Trajectory.objects.filter(round=round_).count()
    assert 4 <= stored < round_.total

    survivor = start_worker("survivor", queues="rollout")
    try:
        # Nobody re-runs anything by hand: the silent chunk is noticed, as the progress page and
        # run_loop notice it while they poll, and goes back on the queue.
        with override_settings(CHUNK_LOST_AFTER_S=20):
            recovered = wait_until(services.round_chunks_recover, timeout=120, interval=1)
        assert [chunk.round_id for chunk in recovered] == [round_.pk]
        assert "lost at" in selectors.round_progress(round=round_)["recoveries"][0]
        round_ = _finished(round_)
    finally:
        stop_worker(survivor)
    assert round_.status == RunStatus.DONE, round_.error
    keys = list(round_.trajectories.values_list("problem_id", "hinted", "sample_index"))
    assert len(keys) == len(set(keys)) == round_.total

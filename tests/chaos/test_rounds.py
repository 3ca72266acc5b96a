"""Chaos during a running round, on private services the test may kill: a rollout worker
SIGKILLed (on Redis, and on the demo's filesystem broker + SQLite), Redis restarted, Postgres
restarted, one of two vLLM engine endpoints SIGKILLed mid-trajectory (the pool's failover,
workers.engines.pool). After each the round ends done with every planned trajectory stored
exactly once, with no action by hand (a lost chunk is noticed by the worker that takes over),
and a lost worker is named on the round's progress page.

Everything runs as in production: `manage.py` commands and Celery workers (the tiny policy) in
their own processes, on the database and broker each test names in their environment; the test
reads the outcome through `manage.py shell`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.chaos.services import (
    PrivatePostgres,
    PrivateRedis,
    app_env,
    free_port,
    kill_group,
    manage,
    record_figures,
    start_app_worker,
)
from tests.conftest import ARTIFACTS, ROOT, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.worker, pytest.mark.vllm, pytest.mark.timeout(1800)]

SAMPLES = Path(__file__).resolve().parents[2] / "curation" / "data" / "sample_problems.jsonl"
# Four samples each (two hinted, two plain): 144 trajectories in 36 chunks of 4, long enough that
# a fault injected after the first few always lands mid-round.
PROBLEMS = 36

REPORT = """
import json
from curation.models import Round
from curation.selectors import round_progress
r = Round.objects.get(name={name!r})
keys = list(r.trajectories.values_list("problem_id", "hinted", "sample_index"))
print("REPORT " + json.dumps({{
    "status": r.status, "error": r.error, "total": r.total, "stored": len(keys),
    "distinct": len(set(keys)), "recoveries": round_progress(round=r)["recoveries"]}}))
"""


def report(env: dict[str, str], name: str = "chaos") -> dict:
    out = manage("shell", "-c", REPORT.format(name=name), env=env)
    return json.loads(out.split("REPORT ", 1)[1])


def prepare(env: dict[str, str], tmp_path: Path, *, migrate: bool = False) -> None:
    if migrate:
        manage("migrate", "--noinput", env=env)
    lines = [line for line in SAMPLES.read_bytes().splitlines() if b'"math"' in line][:PROBLEMS]
    problems = tmp_path / "chaos-problems.jsonl"
    problems.write_bytes(b"\n".join(lines) + b"\n")
    manage("import_problems", str(problems), "--set", "chaos-problems", env=env)


def launch(env: dict[str, str]) -> None:
    manage(
        "launch_round", "--name", "chaos", "--problem-set", "chaos-problems",
        "--samples-hinted", "2", "--samples-plain", "2", "--max-tokens", "1024",
        env={**env, "ROLLOUT_CHUNK_SIZE": "4"},
    )  # fmt: skip


def stored_at_least(env: dict[str, str], n: int, timeout: float = 600) -> dict:
    """The round's report once it holds `n` trajectories (or has ended)."""

    def reached() -> dict | None:
        now = report(env)
        return now if now["stored"] >= n or now["status"] not in ("queued", "running") else None

    return wait_until(reached, timeout=timeout, interval=2)


def finished(env: dict[str, str], timeout: float = 900) -> dict:
    wait_until(
        lambda: report(env)["status"] not in ("queued", "running"), timeout=timeout, interval=3
    )
    return report(env)


def assert_complete(outcome: dict) -> None:
    """Done, nothing lost, nothing stored twice (figures kept for `make chaos`'s bench keys)."""
    lost = outcome["total"] - outcome["distinct"]
    duplicated = outcome["stored"] - outcome["distinct"]
    record_figures({"reliability.lost": lost, "reliability.duplicated": duplicated})
    assert outcome["status"] == "done", outcome
    assert (lost, duplicated) == (0, 0), outcome


def kill_a_worker_mid_round(env: dict[str, str]) -> dict:
    """SIGKILL the only rollout worker after a few trajectories; a new one finishes the round."""
    doomed = start_app_worker("chaos-doomed", env=env, queues="rollout")
    try:
        launch(env)
        during = stored_at_least(env, 2)
        assert during and during["status"] == "running", during
    finally:
        kill_group(doomed)
    assert report(env)["stored"] < report(env)["total"]
    survivor = start_app_worker("chaos-survivor", env=env, queues="rollout")
    try:
        outcome = finished(env)
    finally:
        kill_group(survivor)
    assert_complete(outcome)
    assert any("chaos-doomed" in line and "lost at" in line for line in outcome["recoveries"])
    return outcome


@pytest.fixture
def redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres():
    cluster = PrivatePostgres()
    cluster.start()
    yield cluster
    cluster.stop()


def test_a_rollout_worker_killed_on_redis(tmp_path, redis, postgres, tiny_policy_path):
    env = app_env(
        DATABASE_URL=postgres.url(),
        CELERY_BROKER_URL=redis.url(),
        DEFAULT_POLICY_PATH=str(tiny_policy_path),
    )
    prepare(env, tmp_path, migrate=True)
    kill_a_worker_mid_round(env)


def test_a_rollout_worker_killed_on_the_filesystem_broker_and_sqlite(tmp_path, tiny_policy_path):
    broker = tmp_path / "broker"
    for folder in ("out", "processed", "control"):
        (broker / folder).mkdir(parents=True)
    env = app_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_FOLDER=str(broker),
        DEFAULT_POLICY_PATH=str(tiny_policy_path),
    )
    prepare(env, tmp_path, migrate=True)
    kill_a_worker_mid_round(env)


def test_redis_restarted_mid_round(tmp_path, redis, postgres, tiny_policy_path):
    env = app_env(
        DATABASE_URL=postgres.url(),
        CELERY_BROKER_URL=redis.url(),
        DEFAULT_POLICY_PATH=str(tiny_policy_path),
    )
    prepare(env, tmp_path, migrate=True)
    worker = start_app_worker("chaos-redis", env=env, queues="rollout")
    try:
        launch(env)
        assert stored_at_least(env, 2)["status"] == "running"
        redis.restart()  # SIGKILL, then start again from its append-only file
        outcome = finished(env)
    finally:
        kill_group(worker)
    assert_complete(outcome)


def test_postgres_restarted_mid_round(tmp_path, redis, postgres, tiny_policy_path):
    env = app_env(
        DATABASE_URL=postgres.url(),
        CELERY_BROKER_URL=redis.url(),
        DEFAULT_POLICY_PATH=str(tiny_policy_path),
    )
    prepare(env, tmp_path, migrate=True)
    worker = start_app_worker("chaos-postgres", env=env, queues="rollout")
    try:
        launch(env)
        assert stored_at_least(env, 2)["status"] == "running"
        postgres.restart()  # every connection is cut; the chunk retries and skips what is stored
        outcome = finished(env)
    finally:
        kill_group(worker)
    assert_complete(outcome)


def start_endpoint(name: str, policies: Path) -> tuple[subprocess.Popen, str]:
    """A serving endpoint (as in docker-compose.yml) that starts a vLLM server per policy."""
    port = free_port()
    with (ARTIFACTS / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.engines.serving", "--host", "127.0.0.1",
             "--port", str(port), "--policies-root", str(policies), "--enforce-eager",
             "--kv-cache-gib", "1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    assert wait_until(answers, timeout=120) and proc.poll() is None, f"{name} did not start"
    return proc, url


def test_an_engine_endpoint_killed_mid_round(tmp_path, redis, postgres, tiny_policy_path):
    ARTIFACTS.mkdir(exist_ok=True)
    doomed, doomed_url = start_endpoint("chaos-engine-a", tiny_policy_path.parent)
    survivor, survivor_url = start_endpoint("chaos-engine-b", tiny_policy_path.parent)
    env = app_env(
        DATABASE_URL=postgres.url(),
        CELERY_BROKER_URL=redis.url(),
        ROLLOUT_ENGINE="vllm-server",
        VLLM_SERVER_URLS=f"{doomed_url},{survivor_url}",
        DEFAULT_POLICY_PATH=str(tiny_policy_path),
    )
    try:
        prepare(env, tmp_path, migrate=True)
        worker = start_app_worker("chaos-engines", env=env, queues="rollout")
        try:
            launch(env)
            assert stored_at_least(env, 2)["status"] == "running"
            kill_group(doomed)  # the endpoint and the vLLM server it started, mid-trajectory
            outcome = finished(env)
        finally:
            kill_group(worker)
    finally:
        kill_group(doomed)
        kill_group(survivor)
    assert_complete(outcome)

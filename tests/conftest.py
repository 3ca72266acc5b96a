"""Shared fixtures: the real Postgres (pytest-django), and real Celery workers on Redis."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".artifacts"


def wait_until(predicate, *, timeout: float = 60, interval: float = 0.2):
    """Poll until `predicate()` is truthy (for work done by another process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def start_worker(name: str, *, queues: str = "default,sandbox,rollout,train") -> subprocess.Popen:
    """A real `celery worker` process on the test database and the Redis broker."""
    from django.conf import settings
    from django.db import connection

    from workers.celery import app

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        pytest.fail(f"the worker tests need Redis: CELERY_BROKER_URL is {broker!r}")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": broker,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"celery-{name}.log"
    node = f"{name}-{os.getpid()}@test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
         "--concurrency", "2", "-Q", queues, "--without-gossip", "--without-mingle",
         "-n", node, "--logfile", str(log), "-l", "info"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    started = wait_until(
        lambda: proc.poll() is not None or app.control.ping(destination=[node], timeout=0.5),
        timeout=60,
    )
    if proc.poll() is not None or not started:
        proc.kill()
        pytest.fail(f"celery worker {node} did not start; see {log}")
    return proc


def stop_worker(proc: subprocess.Popen, *, sig: int = signal.SIGTERM) -> None:
    """Stop the worker and everything it started (vLLM's engine processes too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def purge_queues() -> None:
    from workers.celery import app

    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker):
    """A worker on every queue, one per test module (a module may kill its own workers).

    Tests that use it need `@pytest.mark.django_db(transaction=True)` so the worker sees their rows.
    """
    purge_queues()
    proc = start_worker("module")
    yield proc
    stop_worker(proc)


@pytest.fixture(scope="session")
def tiny_policy_path() -> Path:
    """The project's tiny policy (`make test` builds it first; cached by content hash)."""
    from training.tiny_policy import build_tiny_policy

    return build_tiny_policy()

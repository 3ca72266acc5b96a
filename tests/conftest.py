"""Shared fixtures: the real Postgres (pytest-django), and a real Celery worker on Redis."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real `celery worker` process on the test database and the Redis broker.

    Tests that use it need `@pytest.mark.django_db(transaction=True)` so the worker sees their rows.
    """
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
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)
    log = (ROOT / ".artifacts" / "celery-worker.log").resolve()
    log.parent.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
         "--concurrency", "2", "-Q", "default,sandbox,rollout,train", "--without-gossip",
         "--without-mingle", "-n", f"test-{os.getpid()}@%h", "--logfile", str(log)],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start; see {log}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until(predicate, *, timeout: float = 60, interval: float = 0.2):
    """Poll until `predicate()` is truthy (for work done by another process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)

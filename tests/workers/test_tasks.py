"""The tasks' failure policy: what is retried, and what is not."""

import pytest
from django.db import OperationalError

from workers import tasks


def flaky(failures: int, error: Exception):
    calls = []

    def run(*args, **kwargs):
        calls.append(args)
        if len(calls) <= failures:
            raise error

    return run, calls


def test_a_chunk_survives_a_database_that_blinks(monkeypatch):
    run, calls = flaky(2, OperationalError("server closed the connection unexpectedly"))
    monkeypatch.setattr(tasks.rounds, "run_chunk", run)
    result = tasks.run_round_chunk.apply(args=(7,))
    assert result.successful()
    assert calls == [(7,), (7,), (7,)]


def test_a_bug_is_not_retried(monkeypatch):
    run, calls = flaky(1, KeyError("a bug"))
    monkeypatch.setattr(tasks.rounds, "run_chunk", run)
    result = tasks.run_round_chunk.apply(args=(7,))
    assert result.failed() and len(calls) == 1


def test_an_sft_job_is_never_retried(monkeypatch):
    run, calls = flaky(1, OperationalError("gone"))
    monkeypatch.setattr(tasks.sft, "run_job", run)
    result = tasks.run_sft_job.apply(args=(3,))
    assert result.failed() and len(calls) == 1


@pytest.mark.parametrize("task", [tasks.run_round_chunk, tasks.rescore_trajectory])
def test_idempotent_tasks_have_time_limits_and_ack_late(task):
    assert task.acks_late and task.soft_time_limit and task.time_limit > task.soft_time_limit

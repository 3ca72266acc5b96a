"""A chunk whose worker went silent goes back on the queue, and says so."""

from datetime import timedelta

import pytest
from django.utils import timezone

from curation import selectors, services
from curation.dispatch import Task
from curation.models import ChunkStatus, RoundChunk, RunStatus
from tests.factories import RoundFactory

pytestmark = pytest.mark.django_db


def running_chunk(round_, index, *, silent_for):
    return RoundChunk.objects.create(
        round=round_,
        index=index,
        status=ChunkStatus.RUNNING,
        worker=f"w{index}@host",
        heartbeat_at=timezone.now() - silent_for,
    )


def test_a_silent_chunk_is_re_enqueued_once_and_its_page_says_why(
    django_capture_on_commit_callbacks, monkeypatch
):
    round_ = RoundFactory(status=RunStatus.RUNNING, total=8)
    lost = running_chunk(round_, 0, silent_for=timedelta(minutes=2))
    alive = running_chunk(round_, 1, silent_for=timedelta(seconds=5))
    sent = []
    monkeypatch.setattr("curation.dispatch.send", lambda task, ids: sent.append((task, ids)))
    with django_capture_on_commit_callbacks(execute=True):
        recovered = services.round_chunks_recover()
    assert [c.pk for c in recovered] == [lost.pk]
    assert sent == [(Task.RUN_ROUND_CHUNK, {"chunk_id": lost.pk})]
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == ChunkStatus.PENDING and alive.status == ChunkStatus.RUNNING
    (line,) = selectors.round_progress(round=round_)["recoveries"]
    assert line.startswith("worker w0@host lost at ") and line.endswith("chunk 0 re-enqueued")
    # Once pending it is not recovered again; when it runs again it beats anew.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.round_chunks_recover() == []
    services.round_chunk_started(chunk=lost, worker="w9@host")
    lost.refresh_from_db()
    assert lost.status == ChunkStatus.RUNNING and lost.recoveries  # the story stays


def test_chunks_of_a_cancelled_round_are_left_alone():
    round_ = RoundFactory(status=RunStatus.CANCELLED)
    running_chunk(round_, 0, silent_for=timedelta(minutes=5))
    assert services.round_chunks_recover() == []


def test_the_progress_page_shows_the_recovery(client, django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    from curation.roles import CURATOR
    from tests.factories import UserFactory

    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=CURATOR))
    client.force_login(user)
    round_ = RoundFactory(status=RunStatus.RUNNING, total=4)
    running_chunk(round_, 3, silent_for=timedelta(minutes=3))
    with django_capture_on_commit_callbacks():
        page = client.get(f"/admin/curation/round/{round_.pk}/progress/").content.decode()
    assert "worker w3@host lost at" in page and "chunk 3 re-enqueued" in page

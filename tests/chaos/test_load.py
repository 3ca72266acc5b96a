"""Load: 20 simulated annotators against gunicorn (tests/chaos/load.py) for LOAD_SECONDS (60 in
`make test`; `make chaos` and `make bench` run 300 s over 100k trajectories). No 5xx, no
unexpected answer, every accepted save a Revision and no refused one, no lease held by two."""

import os
import subprocess

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from curation.models import ReviewStatus, Trajectory
from curation.roles import ANNOTATOR, sync_roles
from tests.chaos.load import (
    ACTIONS,
    lost_edits,
    run_load,
    seed_queue,
    shared_leases,
    start_gunicorn,
)
from tests.chaos.services import record_figures
from tests.factories import UserFactory

pytestmark = [pytest.mark.chaos, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ANNOTATORS = 20
SECONDS = float(os.environ.get("LOAD_SECONDS", 60))
TRAJECTORIES = int(os.environ.get("LOAD_TRAJECTORIES", 5000))
PASSWORD = "load-test-password"


def test_twenty_annotators_lose_nothing_and_never_share_a_lease():
    seed_queue(TRAJECTORIES)
    sync_roles()
    group = Group.objects.get(name=ANNOTATOR)
    annotators = []
    for i in range(ANNOTATORS):
        user = UserFactory(username=f"annotator-{i}")
        user.set_password(PASSWORD)
        user.save()
        user.groups.add(group)
        annotators.append((user.username, PASSWORD))
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    server, url = start_gunicorn(env)
    try:
        outcome = run_load(url, annotators, duration_s=SECONDS)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    record_figures(
        {
            "load.errors": len(outcome.errors),
            **{f"load.p95_ms.{action}": outcome.p95_ms(action) for action in ACTIONS},
        }
    )
    assert outcome.errors == [], outcome.errors[:20]
    assert outcome.accepted and outcome.refused  # saves were made, stale ones refused
    assert lost_edits(outcome) == (0, 0)
    assert shared_leases(outcome) == 0
    approved = Trajectory.objects.filter(review_status=ReviewStatus.APPROVED).count()
    assert approved == len(outcome.latencies["approve"])

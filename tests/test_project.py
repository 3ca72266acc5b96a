"""Project-wide checks: migrations, deployment settings, lint, the compose file."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_migrations_are_complete():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_production_settings_pass_the_deployment_checks():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_a_missing_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DEBUG": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_unreachable_database_is_named_in_one_line():
    result = _manage("check_services", DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")
    assert result.returncode != 0
    assert "DATABASE_URL: cannot connect to 127.0.0.1:1/nowhere" in result.stderr


def test_unreachable_broker_is_named_in_one_line():
    result = _manage("check_services", CELERY_BROKER_URL="redis://:secret@127.0.0.1:1/0")
    assert result.returncode != 0
    assert "CELERY_BROKER_URL: cannot connect to redis://@127.0.0.1:1/0" in result.stderr
    assert "secret" not in result.stderr


def test_code_is_ruff_clean():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_compose_file_is_valid():
    result = subprocess.run(
        ["docker-compose", "config", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "k" * 64},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    services = subprocess.run(
        ["docker-compose", "config", "--services"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "k" * 64},
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(services) == {
        "postgres",
        "redis",
        "web",
        "worker",
        "train-worker",
        "vllm",
        "vllm-2",
    }


def test_the_engines_serve_the_policies_volume_the_workers_write_with_one_context_length():
    import yaml

    config = yaml.safe_load(
        subprocess.run(
            ["docker-compose", "config"],
            cwd=ROOT,
            env={**os.environ, "SECRET_KEY": "k" * 64, "VLLM_MAX_MODEL_LEN": "8192"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["services"]
    engines = ("vllm", "vllm-2")
    urls = config["worker"]["environment"]["VLLM_SERVER_URLS"].split(",")
    assert urls == [f"http://{name}:8000/v1" for name in engines]
    for name in ("web", "worker", "train-worker", *engines):
        assert "policies:/app/.cache/policies:rw" in config[name]["volumes"], name
    for name in ("web", "worker", "train-worker"):
        assert config[name]["environment"]["VLLM_MAX_MODEL_LEN"] == "8192", name
    for name in engines:
        command = config[name]["command"]
        assert command[:3] == ["python", "-m", "workers.engines.serving"], name
        assert "--policies-root=/app/.cache/policies" in command
        assert "--max-model-len=8192" in command and "--port=8000" in command
    # Each engine on its own GPU.
    devices = [config[n]["deploy"]["resources"]["reservations"]["devices"] for n in engines]
    assert devices[0][0]["device_ids"] != devices[1][0]["device_ids"]


def test_every_service_that_runs_model_code_can_start_bubblewrap():
    import yaml

    config = yaml.safe_load(
        subprocess.run(
            ["docker-compose", "config"],
            cwd=ROOT,
            env={**os.environ, "SECRET_KEY": "k" * 64},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for name in ("web", "worker"):  # re-runs in the web process; rollouts and scoring
        assert "seccomp=unconfined" in config["services"][name].get("security_opt", []), name


def test_the_domain_never_imports_the_workers():
    # Lazy imports inside functions count too: the domain binds its runner and tasks by name.
    found = subprocess.run(
        ["grep", "-rnE", r"^\s*(from|import) workers\b", "curation/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.stdout == "", found.stdout
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, sys; django.setup();"
            "import curation.services, curation.review, curation.scoring;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('workers', 'training')))",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


SQLITE_SAVES = """
import threading
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
from curation import review
from curation.services import ConflictError
from tests.factories import TrajectoryFactory, UserFactory
trajectory = TrajectoryFactory(text="<think>\\\\nfirst\\\\n</think> 1", original_text="x")
users = [UserFactory() for _ in range(6)]
outcomes = []
def save(user):
    try:
        review.trajectory_edit_segment(
            trajectory=trajectory, segment_index=0, text=f"by {user.username}\\\\n",
            author=user, base_version=1,
        )
        outcomes.append("saved")
    except ConflictError:
        outcomes.append("conflict")
    except Exception as exc:
        outcomes.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
threads = [threading.Thread(target=save, args=(u,)) for u in users]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(outcomes))
"""


def test_the_demos_sqlite_takes_simultaneous_saves_without_locking_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_SAVES],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # One save wins; the others were made from the same version and are told so. None fails.
    assert result.stdout.strip() == str(sorted(["saved"] + ["conflict"] * 5)), result.stdout

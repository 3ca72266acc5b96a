"""Private Redis and Postgres instances for the fault tests, which kill and restart them: the
machine's own services (5432, 6379) are shared and never touched. Plus the app's processes
(workers, manage.py) run against whichever of them a test chose, through the environment."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import ARTIFACTS, ROOT, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


class PrivateRedis:
    """redis-server on a free port, persisting every write (AOF, fsync always) in its own folder,
    so a restart keeps the queues, as a production Redis configured for a broker does."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        if not wait_until(lambda: _answers(self.port), timeout=30):
            raise RuntimeError(f"private redis on {self.port} did not start")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.stop(signal.SIGKILL)
        self.start()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    """A throwaway cluster (initdb, pg_ctl as the postgres user) on a free port, in a folder of
    its own under /tmp (the postgres user cannot enter pytest's root-only temporary folders)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.port = free_port()
        self.data = self.folder / "data"

    def url(self, name: str = "chaos") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "pg.log")
        self._as_postgres(
            _pg_bin("pg_ctl"), action, "-D", str(self.data), "-w", "-l", log, "-o", options, *extra
        )

    def start(self) -> None:
        if not self.data.exists():
            self._as_postgres(
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            )
        self._pg_ctl("start")
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "chaos"],
            check=False, capture_output=True,
        )  # fmt: skip

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of the app's processes in a fault test: lost chunks and jobs are noticed
    after 5 s, not a minute."""
    return {**os.environ, "CHUNK_LOST_AFTER_S": "5", "PYTHONUNBUFFERED": "1", **overrides}


def manage(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def start_app_worker(name: str, *, env: dict[str, str], queues: str) -> subprocess.Popen:
    """A celery worker on the broker and database `env` names, ready once its log says so."""
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"celery-{name}.log"
    node = f"{name}-{os.getpid()}@chaos"
    with log.open("wb") as out:  # its "ready." line goes to stderr, not to a --logfile
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads",
             "--concurrency", "2", "-Q", queues, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", node, "-l", "info"],
            cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ready = wait_until(
        lambda: proc.poll() is not None or (log.exists() and " ready." in log.read_text()),
        timeout=120,
    )
    if proc.poll() is not None or not ready:
        proc.kill()
        raise RuntimeError(f"celery worker {node} did not start; see {log}")
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and everything it started (its engine too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)


def record_figures(figures: dict[str, float]) -> None:
    """Append a fault's or the load's figures to CHAOS_FIGURES (a JSON-lines file), when set:
    tests/bench/bench_reliability.py runs this suite and sums them into bench keys."""
    path = os.environ.get("CHAOS_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(figures) + "\n")

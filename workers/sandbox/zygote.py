"""The server inside each sandbox: preloads modules once, then forks a fresh child per request.

It runs as `python -S -s -B -c BOOT <this source> <config json>`, so it imports nothing from the
project (standard library only) and its frames, compiled as "<sandbox>", are hidden from the
tracebacks the model sees. It talks to the host over its inherited stdin and stdout with
length-prefixed JSON frames, and moves them off fds 0 and 1 so that no child can reach them.

The child for the next request is forked ahead of time (so the fork is not on the critical
path) and waits on a pipe. On a request it gets rlimits, its stdin, a fresh `__main__`, and runs
the code as a notebook cell; the zygote reads stdout/stderr with caps and enforces the wall clock,
replies as soon as the child is done, then kills every other process of the sandbox's PID
namespace, empties the scratch directories and forks the next child, so that each call starts
clean.
"""

import ast
import builtins
import contextlib
import ctypes
import errno
import gc
import io
import json
import linecache
import os
import random
import resource
import selectors
import signal
import struct
import sys
import threading
import time
import traceback
import types

FRAME = struct.Struct(">I")
RESULT_FD = 3
DRAIN_S = 1.0
MAX_RESULT_BYTES = 1 << 20
MAX_ERROR_CHARS = 2000
PR_SET_DUMPABLE = 4


def read_frame(fd):
    """One JSON frame from `fd`, or None at end of file."""
    head = _read_exact(fd, FRAME.size)
    if head is None:
        return None
    body = _read_exact(fd, FRAME.unpack(head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode_frame(obj):
    body = json.dumps(obj).encode()
    return FRAME.pack(len(body)) + body


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Capture:
    """Keeps the head and the tail of a byte stream, `keep` bytes in all."""

    def __init__(self, keep):
        self.half = keep // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data):
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.half:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self):
        tail = self.tail[len(self.tail) - self.half :] if self.half else b""
        cut = self.total - len(self.head) - len(tail)
        head = self.head.decode("utf-8", "replace")
        if cut <= 0:
            return (self.head + tail).decode("utf-8", "replace"), 0
        return f"{head}\n[... {cut} bytes cut ...]\n{tail.decode('utf-8', 'replace')}", cut


class Child:
    """A child forked ahead of its request, waiting on a pipe: the fork is off the critical path."""

    def __init__(self, zygote):
        request_r, self.request_w = os.pipe()
        pipes = [os.pipe() for _ in range(3)]
        self.pid = os.fork()
        if self.pid == 0:
            status = 70
            try:
                os.close(self.request_w)
                for target, fd in enumerate((request_r, *(w for _, w in pipes))):
                    os.dup2(fd, target)
                os.set_inheritable(RESULT_FD, False)
                # Nothing of the zygote's stays open, its pipe to the host least of all.
                os.closerange(RESULT_FD + 1, 1 << 16)
                status = zygote.child()
            finally:
                os._exit(status)
        os.close(request_r)
        for _, w in pipes:
            os.close(w)
        self.out, self.err, self.result = (r for r, _ in pipes)
        self.pidfd = os.pidfd_open(self.pid)

    def close(self):
        for fd in (self.request_w, self.out, self.err, self.result, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    def __init__(self, config):
        self.isolated = config["isolated"]
        self.scratch = config["scratch"]
        self.workdir = config["workdir"]
        self.cgroup_procs = config.get("cgroup_procs")
        self.me = os.getpid()
        if self.isolated and self.me != 2:
            # kill(-1) below is only safe as the first process of our own PID namespace.
            raise SystemExit(f"isolated mode expects PID 2 in a new PID namespace, not {self.me}")
        self.strip = sorted({p.rstrip("/") + "/" for p in sys.path if p.startswith("/")}, key=len)
        self.strip.reverse()

    # --- parent side -------------------------------------------------------------------------
    def serve(self, child, frame):
        """Hand the request to the waiting child; collect its output until it is done."""
        req = json.loads(frame[FRAME.size :])
        limits = req["limits"]
        started = time.monotonic()
        with contextlib.suppress(OSError):  # if the child died, its pidfd tells
            write_all(child.request_w, frame)
        os.close(child.request_w)
        child.request_w = -1
        captures = {
            child.out: Capture(limits["output_bytes"]),
            child.err: Capture(limits["output_bytes"]),
        }
        result = bytearray()
        sel = selectors.DefaultSelector()
        for fd in (child.out, child.err, child.result, child.pidfd):
            sel.register(fd, selectors.EVENT_READ)
        open_fds = {child.out, child.err, child.result}
        deadline = started + req["wall_s"]
        timed_out = output_killed = exited = False
        record = None
        read_total = 0
        while open_fds or not exited:
            if not open_fds and record is not None:
                break  # the child is done and only exiting: reply now, reap it afterwards
            now = time.monotonic()
            if now >= deadline:
                if exited:
                    break  # writers that outlived the kill; give up on them
                timed_out = True
                self.kill_all(child.pid)
                exited, deadline = True, now + DRAIN_S
                continue
            for key, _ in sel.select(deadline - now):
                fd = key.fd
                if fd == child.pidfd:
                    sel.unregister(fd)
                    if not exited:
                        self.kill_all(child.pid)  # stragglers must not outlive the call
                        exited, deadline = True, time.monotonic() + DRAIN_S
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                    if fd == child.result:
                        record = _result_record(bytes(result), child.pid)
                elif fd == child.result:
                    if len(result) < MAX_RESULT_BYTES:
                        result += data
                else:
                    captures[fd].feed(data)
                    read_total += len(data)
                    if read_total > limits["output_read_bytes"] and not exited:
                        output_killed = True
                        self.kill_all(child.pid)
                        exited, deadline = True, time.monotonic() + DRAIN_S
        sel.close()
        if exited:
            _, status, usage = os.wait4(child.pid, 0)
            child.pid = None
            exit_code = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        else:
            exit_code, cpu_s = record["status"], record["total_cpu_s"]
        stdout, stdout_cut = captures[child.out].text()
        stderr, stderr_cut = captures[child.err].text()
        return {
            "stdout": stdout,
            "stderr": stderr,
            "cut": stdout_cut + stderr_cut,
            "exit_code": exit_code,
            "timed_out": timed_out,
            "output_killed": output_killed,
            "wall_s": time.monotonic() - started,
            "cpu_s": cpu_s,
            "record": record,
        }

    def finish(self, child):
        """After the reply: reap the child, kill what is left, empty the scratch space."""
        if child.pid is not None:
            self.kill_all(child.pid)
            os.waitpid(child.pid, 0)
        child.close()
        return self.clean_up()

    def kill_all(self, pid):
        """Kill the call's process group and, where we can, every other process of the call."""
        for kill, target in ((os.killpg, pid), (os.kill, pid)):
            with contextlib.suppress(OSError):
                kill(target, signal.SIGKILL)
        self.kill_others()

    def kill_others(self):
        if self.isolated:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # all of our PID namespace but init and us
        elif self.cgroup_procs:
            for other in self._cgroup_members():
                with contextlib.suppress(OSError):
                    os.kill(other, signal.SIGKILL)

    def _others(self):
        if self.isolated:
            return [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, self.me)]
        if self.cgroup_procs:
            return self._cgroup_members()
        return []

    def _cgroup_members(self):
        with open(self.cgroup_procs) as f:
            return [int(p) for p in f.read().split() if int(p) != self.me]

    def clean_up(self):
        """Leave no process, file or IPC object behind; False if that failed (restart us)."""
        try:
            for _ in range(400):
                if not self._others():
                    break
                self.kill_others()
                time.sleep(0.005)
            else:
                return False
            for path in self.scratch:
                os.chmod(path, 0o755)
                _empty_dir(path)
            if self.isolated:
                for kind in ("shm", "sem", "msg"):
                    with open(f"/proc/sysvipc/{kind}") as f:
                        if len(f.read().splitlines()) > 1:
                            return False
            return True
        except Exception:
            return False

    # --- child side --------------------------------------------------------------------------
    def child(self):
        """In the forked child: wait for the request, then run it as a notebook cell."""
        os.setsid()
        req = read_frame(0)
        if req is None:
            return 0  # the zygote went away before using us
        stdin_fd = _stdin_file(req["stdin"].encode("utf-8", "surrogatepass"))
        os.dup2(stdin_fd, 0)
        os.close(stdin_fd)
        self.set_limits(req["limits"], req["cpu_s"])
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")  # if the cgroup runs out of memory, take us, not the zygote
        except OSError:
            pass
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        out = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        err = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stdout = sys.__stdout__ = out
        sys.stderr = sys.__stderr__ = err
        sys.path.insert(0, "")
        os.chdir(self.workdir)
        _seed(req["seed"])
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        if req["history"]:
            _replay(req["history"], main.__dict__)
        record = {"pid": os.getpid(), "value": None, "error": None}
        status = 0
        started, cpu0 = time.monotonic(), _cpu()
        filename = f"<cell {len(req['history']) + 1}>" if req["session"] else "<cell>"
        try:
            value = run_cell(req["code"], main.__dict__, filename)
            if value is not None:
                record["value"] = repr(value)[: req["limits"]["output_bytes"]]
            _join_threads()  # as an interpreter does at exit
        except SystemExit as e:
            status = self._exit_status(e, err)
        except BaseException as e:
            status = 1
            try:
                record["error"] = self.report(e, err)
            except BaseException:  # an exception that cannot even be printed
                record["error"] = {"type": "Exception", "text": "Exception", "kind": "exception"}
        record["exec_s"] = time.monotonic() - started
        record["cpu_s"] = _cpu() - cpu0
        for stream in {sys.stdout, sys.stderr, out, err}:
            with contextlib.suppress(BaseException):
                stream.flush()
        record["status"] = status
        record["total_cpu_s"] = _cpu(children=True)
        with contextlib.suppress(OSError):
            write_all(RESULT_FD, encode_frame(record))
        os.closerange(0, RESULT_FD + 1)  # EOF for the zygote, which replies while we exit
        return status

    def set_limits(self, limits, cpu_s):
        with open("/proc/self/statm") as f:
            vm_bytes = int(f.read().split()[0]) * resource.getpagesize()
        cpu = max(1, int(cpu_s + 0.999))
        rlimits = [
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_AS, vm_bytes + limits["memory_bytes"]),
            (resource.RLIMIT_FSIZE, limits["file_size_bytes"]),
            (resource.RLIMIT_NOFILE, limits["open_files"]),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_MSGQUEUE, 0),
        ]
        if self.isolated:
            # Holds only where the host uid is not root; the host's cgroup pids.max covers root.
            rlimits.append((resource.RLIMIT_NPROC, limits["processes"] + 3))
        for which, soft, *hard in rlimits:
            resource.setrlimit(which, (soft, hard[0] if hard else soft))

    def _exit_status(self, e, err):
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=err)
        return 1

    def report(self, e, err):
        """Print a traceback without sandbox frames or paths; return what the host needs."""
        summary = "".join(traceback.format_exception_only(type(e), e)).strip()
        if isinstance(e, SyntaxError) and getattr(e, "_sandbox_cell", False):
            text, kind = summary + "\n", "syntax error"
            summary = summary.rsplit("\n", 1)[-1]  # "SyntaxError: ...", without the caret lines
        else:
            te = traceback.TracebackException.from_exception(e)
            _hide_sandbox_frames(te, set())
            text, kind = "".join(te.format()), _error_kind(e)
        for prefix in self.strip:
            text = text.replace(prefix, "")
            summary = summary.replace(prefix, "")
        with contextlib.suppress(BaseException):
            err.write(text)
            err.flush()
        return {"type": type(e).__name__, "text": summary[:MAX_ERROR_CHARS], "kind": kind}


def run_cell(code, namespace, filename):
    """Run code as a notebook cell: return the value of a final expression statement."""
    try:
        tree = ast.parse(code, filename)
    except SyntaxError as e:
        e._sandbox_cell = True
        raise
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        return eval(compile(last, filename, "eval"), namespace)
    return None


def _replay(history, namespace):
    """Re-run a session's earlier blocks with their output discarded."""
    null = os.open(os.devnull, os.O_WRONLY)
    saved = [os.dup(1), os.dup(2)]
    real_stdin = sys.stdin
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        for index, (code, stdin) in enumerate(history, 1):
            sys.stdin = io.StringIO(stdin)
            with contextlib.suppress(BaseException):
                run_cell(code, namespace, f"<cell {index}>")
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
        sys.stdin = real_stdin


def _hide_sandbox_frames(te, seen):
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != "<sandbox>"])
    _hide_sandbox_frames(te.__cause__, seen)
    _hide_sandbox_frames(te.__context__, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _hide_sandbox_frames(sub, seen)


def _error_kind(e):
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, OSError) and e.errno == errno.EFBIG:
        return "file size"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return "disk full"
    return "exception"


def _result_record(data, pid):
    """The child's own record (not one forged by a process it forked)."""
    view = memoryview(data)
    while len(view) >= FRAME.size:
        (n,) = FRAME.unpack(view[: FRAME.size])
        body = view[FRAME.size : FRAME.size + n]
        if len(body) < n:
            break
        try:
            record = json.loads(bytes(body))
        except ValueError:
            break
        if isinstance(record, dict) and record.get("pid") == pid:
            return record if _well_formed(record) else None
        view = view[FRAME.size + n :]
    return None


def _well_formed(record):
    """The host trusts the record's shape, and user code could have written it."""
    error = record.get("error")
    numbers = ("exec_s", "cpu_s", "total_cpu_s")
    return (
        isinstance(record.get("value"), (str, type(None)))
        and all(type(record.get(k)) in (int, float) for k in numbers)
        and type(record.get("status")) is int
        and (
            error is None
            or (
                isinstance(error, dict)
                and all(isinstance(error.get(k), str) for k in ("type", "text", "kind"))
            )
        )
    )


def _stdin_file(data):
    if not data:
        return os.open(os.devnull, os.O_RDONLY)
    fd = os.memfd_create("stdin")
    write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _empty_dir(path):
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, 0o700)
                _empty_dir(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)


def _cpu(children=False):
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if children else (resource.RUSAGE_SELF,)
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, who))


def _join_threads():
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()


def _seed(seed):
    """Fresh randomness per call; a session's fixed seed makes its replays reproduce its values."""
    numpy = sys.modules.get("numpy")
    if seed is None:
        random.seed()
        if numpy is not None:
            numpy.random.seed(int.from_bytes(os.urandom(4)))
    else:
        random.seed(seed)
        if numpy is not None:
            numpy.random.seed(seed % (1 << 32))


def main():
    config = json.loads(sys.argv[2])
    sys.argv = [""]
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # the zygote imports nothing from its working directory
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    sys.path.extend(config["site"])
    failed = []
    for name in config["preload"]:
        try:
            __import__(name)
        except Exception as e:
            failed.append(f"{name}: {e!r}")
    if not failed and config["warmup"]:
        try:
            exec(config["warmup"], {})
        except Exception as e:
            failed.append(f"warm-up: {e!r}")
    import site

    site.setquit()  # exit() and quit(), which -S leaves out
    _seed(0)  # numpy's global generator is built on first use: ~10 ms we pay once, not per call
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    # Not dumpable: the children (same uid) cannot ptrace us or open our /proc files.
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    zygote = Zygote(config)
    gc.collect()
    gc.freeze()  # keeps the preloaded objects' pages shared with the children
    child = Child(zygote)
    write_all(ctl_out, encode_frame({"ready": True, "failed": failed}))
    if not config["debug"]:
        os.dup2(null, 2)
    # Per request: reply, then clean up and fork the next child, then say "clean" so that the
    # host never sends a request to a sandbox that still holds a previous call's processes.
    while True:
        head = _read_exact(ctl_in, FRAME.size)
        if head is None:
            return
        body = _read_exact(ctl_in, FRAME.unpack(head)[0])
        if body is None:
            return
        try:
            write_all(ctl_out, encode_frame(zygote.serve(child, head + body)))
        except BrokenPipeError:
            return
        if not zygote.finish(child):
            return  # could not clean up: the host starts a fresh sandbox
        child = Child(zygote)
        try:
            write_all(ctl_out, encode_frame({"clean": True}))
        except BrokenPipeError:
            return


if __name__ == "__main__":
    main()

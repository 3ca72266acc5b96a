"""The sandbox: attacks are contained with a clear reason, and the pool keeps serving."""

import asyncio
import socket
import threading

import pytest

from curation import execution
from curation.execution import format_output, head_tail, short_traceback
from workers.sandbox import Execution, Limits, Pool, SandboxUnavailable
from workers.sandbox.sessions import Block, SessionStore

SECRET = "start-test-secret-7f3a9c"

QUICK = Limits(wall_s=2.0, cpu_s=2.0)
# Every process of the sandbox's PID namespace, seen from inside (bwrap's init, the zygote, us).
LIST_PROCESSES = "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"


@pytest.fixture(scope="module")
def secret_env():
    """A secret in the worker's environment, which the sandbox must not see."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("START_SANDBOX_TEST_SECRET", SECRET)
        yield SECRET


@pytest.fixture(scope="module")
def pool(secret_env):
    pool = Pool(2)
    try:
        pool.warm()
    except SandboxUnavailable as e:
        pool.close()
        pytest.fail(f"bubblewrap must work on this machine: {e}")
    yield pool
    pool.close()


def serves(pool: Pool) -> None:
    """After an attack: a plain call works and nothing of the attack is left running."""
    for _ in range(pool.size):  # each slot, as free slots are taken in turn
        first = pool.run("print(1)")
        assert (first.stdout, first.reason, first.exit_code) == ("1\n", None, 0)
    for _ in range(pool.size):
        processes = pool.run(LIST_PROCESSES).stdout
        assert processes.startswith("[1, 2, ") and processes.count(",") == 2, processes


def all_text(run: Execution) -> str:
    return run.stdout + run.stderr + (run.value or "") + (run.error or "")


# --- normal use ------------------------------------------------------------------------------


def test_print_and_final_expression(pool):
    run = pool.run("print('hi')\nx = 6 * 7\nx")
    assert (run.stdout, run.value, run.reason, run.exit_code) == ("hi\n", "42", None, 0)
    assert run.isolated and run.ok
    assert run.as_output_block_text() == "hi\n42"
    assert pool.run("x = 1").as_output_block_text() == ""
    assert pool.run("None").value is None


def test_preloaded_sympy_and_numpy(pool):
    code = "import sympy, numpy\nx = sympy.Symbol('x')\nprint(numpy.arange(4).sum())\n"
    code += "sympy.factor(x**2 - 1)"
    run = pool.run(code)
    assert (run.stdout, run.value, run.reason) == ("6\n", "(x - 1)*(x + 1)", None)


def test_stdin(pool):
    run = pool.run(
        "a, b = map(int, input().split())\nprint(a + b)\nprint(input())", stdin="3 4\nz\n"
    )
    assert (run.stdout, run.reason) == ("7\nz\n", None)


def test_each_call_starts_clean(pool):
    pool.run("import os\nopen('/tmp/left', 'w').write('x')\nos.environ['LEFT'] = '1'\ny = 5")
    run = pool.run("import os\nprint(os.listdir('/tmp'), 'LEFT' in os.environ, 'y' in dir())")
    assert run.stdout == "[] False False\n"


def test_arun_runs_calls_concurrently(pool):
    async def main():
        return await asyncio.gather(*(pool.arun(f"print({i} * 2)") for i in range(6)))

    runs = asyncio.run(main())
    assert [r.stdout for r in runs] == [f"{i * 2}\n" for i in range(6)]


def test_arun_needs_no_thread(pool):
    # Every thread of the pool's executor is held: a call through a thread could not run.
    held = threading.Event()
    blockers = [pool._executor.submit(held.wait) for _ in range(pool.size)]

    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(pool.arun(f"print({i})") for i in range(4))), timeout=30
        )

    try:
        runs = asyncio.run(main())
    finally:
        held.set()
        for blocker in blockers:
            blocker.result()
    assert [r.stdout for r in runs] == [f"{i}\n" for i in range(4)]


STOP_THE_ZYGOTE = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"


def test_arun_contained_like_run(pool):
    async def main():
        return await asyncio.gather(
            pool.arun("while True: pass", limits=QUICK),
            pool.arun(STOP_THE_ZYGOTE, limits=Limits(wall_s=0.5)),
            pool.arun("print(input())", stdin="in\n"),
        )

    busy, stopped, echo = asyncio.run(main())
    assert busy.reason in (execution.CPU_TIME, execution.TIMEOUT)
    assert stopped.reason == execution.TIMEOUT  # the zygote stopped: restarted by a later call
    assert echo.stdout == "in\n"
    serves(pool)
    assert asyncio.run(pool.arun("print(2)")).stdout == "2\n"


def test_threads_and_coroutines_share_the_slots_first_come_first_served(secret_env):
    pool = Pool(1)
    try:
        pool.warm()
        finished = []

        async def call(name, code):
            run = await pool.arun(code)
            finished.append(name)
            return run

        def threaded():
            run = pool.run("print('t')")
            finished.append("t")
            return run

        async def main():
            loop = asyncio.get_running_loop()
            slow = asyncio.ensure_future(call("s", "import time; time.sleep(1.5); print('s')"))
            await asyncio.sleep(0.3)
            waiting = asyncio.ensure_future(call("cancelled", "print('cancelled')"))
            await asyncio.sleep(0.05)
            waiting.cancel()  # a waiter that goes away keeps no slot
            thread = loop.run_in_executor(None, threaded)
            await asyncio.sleep(0.5)  # the thread waits for the slot now
            later = [call(str(i), f"print({i})") for i in range(3)]
            return await asyncio.gather(slow, thread, *later)

        runs = asyncio.run(main())
        assert [r.stdout for r in runs] == ["s\n", "t\n", "0\n", "1\n", "2\n"]
        assert finished == ["s", "t", "0", "1", "2"]
        assert pool.run("print(9)").stdout == "9\n"
    finally:
        pool.close()


@pytest.mark.parametrize("after_s", [0.0, 0.3], ids=["while-settling", "while-running"])
def test_a_cancelled_arun_never_hands_its_reply_to_the_next_call(pool, after_s):
    """A trajectory cancelled while its cell runs (or while its slot settles the previous call)
    must not leave a reply in the pipe that the slot's next call would read as its own."""

    async def scenario():
        await asyncio.gather(*(pool.arun(f"print({i})") for i in range(2)))  # both slots used
        doomed = [
            asyncio.ensure_future(pool.arun("import time; time.sleep(0.6); print('old')"))
            for _ in range(2)
        ]
        await asyncio.sleep(after_s)
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        return await asyncio.gather(*(pool.arun(f"print('new {i}')") for i in range(4)))

    runs = asyncio.run(scenario())
    assert [run.stdout for run in runs] == [f"new {i}\n" for i in range(4)]


def test_an_arun_session_keeps_state(pool):
    async def main():
        first = await pool.arun("x = 20", session="arun-session")
        return first, await pool.arun("print(x + 1)", session="arun-session")

    first, second = asyncio.run(main())
    assert first.ok and second.stdout == "21\n"
    pool.end_session("arun-session")


# --- bad input -------------------------------------------------------------------------------


def test_syntax_error(pool):
    run = pool.run("def f(:\n    pass")
    assert run.reason == execution.SYNTAX_ERROR and run.exit_code == 1
    assert run.error.startswith("SyntaxError")
    assert "<sandbox>" not in run.stderr and "Traceback" not in run.stderr
    serves(pool)


def test_input_without_stdin(pool):
    run = pool.run("input()")
    assert (run.reason, run.error) == (execution.EXCEPTION, "EOFError: EOF when reading a line")
    serves(pool)


def test_sys_exit(pool):
    run = pool.run("import sys\nprint('before')\nsys.exit(3)")
    assert (run.exit_code, run.reason, run.stdout) == (3, execution.NONZERO_EXIT, "before\n")
    assert run.error is None
    assert pool.run("print(2)\nexit()").reason is None  # exit() and quit() exist, as with site
    serves(pool)


def test_invalid_utf8_output(pool):
    run = pool.run("import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe\\n')")
    assert run.reason is None and run.stdout == "ok \ufffd\ufffd\n"
    serves(pool)


# --- time and processes ----------------------------------------------------------------------


def test_infinite_loop_hits_cpu_limit(pool):
    run = pool.run("while True:\n    pass", limits=Limits(wall_s=20, cpu_s=1))
    assert run.reason == execution.CPU_TIME
    assert "CPU time" in run.as_output_block_text()
    serves(pool)


def test_sleep_hits_wall_clock(pool):
    run = pool.run("import time\nprint('start', flush=True)\ntime.sleep(10**6)", limits=QUICK)
    assert run.reason == execution.TIMEOUT and run.exit_code < 0
    assert run.stdout == "start\n" and 2 <= run.wall_s < 6
    assert run.as_output_block_text().startswith("start\nTimeoutError: the code was stopped after")
    serves(pool)


def test_child_ignoring_sigterm_is_killed(pool):
    code = """
import os, signal, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(10**6)
"""
    assert pool.run(code, limits=QUICK).reason == execution.TIMEOUT
    serves(pool)


def test_background_process_does_not_outlive_its_call(pool):
    detached = "stdin=sp.DEVNULL, stdout=sp.DEVNULL, stderr=sp.DEVNULL, start_new_session=True"
    for code in (
        "import subprocess as sp\nsp.Popen(['sleep', '1000'], start_new_session=True)",
        f"import subprocess as sp\nsp.Popen(['sleep', '1000'], {detached})",
    ):
        assert pool.run(code).reason is None
        serves(pool)


def test_slots_outlive_the_thread_that_started_them():
    pool = Pool(1, packages=())
    try:
        starter = threading.Thread(target=pool.run, args=("print(1)",))
        starter.start()
        starter.join()
        assert pool.starts == 1
        assert [pool.run("print(1)").stdout for _ in range(3)] == ["1\n"] * 3
        assert pool.starts == 1  # no restart: the sandbox did not die with the thread
    finally:
        pool.close()


def test_fork_bomb(pool):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    run = pool.run(code, limits=Limits(wall_s=2, cpu_s=2, processes=16))
    assert run.reason == execution.PROCESSES
    serves(pool)


def test_killed_child(pool):
    run = pool.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert (run.reason, run.exit_code) == (execution.KILLED, -9)
    assert "SIGKILL" in run.as_output_block_text()
    serves(pool)


def test_killing_the_zygote_restarts_it(pool):
    run = pool.run("import os\nos.kill(1, 9)\nos.kill(os.getppid(), 9)", limits=QUICK)
    assert run.reason == execution.KILLED
    serves(pool)


def test_ipc_objects_do_not_persist(pool):
    code = "import ctypes\nprint(ctypes.CDLL(None).shmget(0, 4096, 0o1600) >= 0)"
    assert pool.run(code).stdout == "True\n"
    for _ in range(pool.size):
        assert pool.run("print(open('/proc/sysvipc/shm').read().count('\\n'))").stdout == "1\n"
    serves(pool)


def test_multiprocessing_works(pool):
    code = "import multiprocessing as mp\nwith mp.Pool(2) as p:\n    print(p.map(abs, [-1, -2]))"
    assert pool.run(code).stdout == "[1, 2]\n"
    serves(pool)


def test_stopping_the_zygote_restarts_it(pool):
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"
    run = pool.run(code, limits=Limits(wall_s=0.5))
    assert run.reason == execution.TIMEOUT
    serves(pool)


def test_only_standard_descriptors_are_open(pool):
    run = pool.run("import os\nprint(sorted(map(int, os.listdir('/proc/self/fd'))))")
    assert run.stdout == "[0, 1, 2, 3, 4]\n"  # 3: the result pipe (close-on-exec), 4: listdir's
    run = pool.run("import os\nos.system('ls /proc/self/fd')")  # what a subprocess inherits
    assert run.stdout.split() == ["0", "1", "2", "3"]  # 3: ls's own directory handle


def test_zygote_memory_and_environment_are_closed(pool):
    code = """
for path in ('/proc/2/mem', '/proc/2/environ', '/proc/1/environ', '/proc/2/fd/0'):
    try:
        print(path, open(path, 'rb').read())
    except OSError as e:
        print(path, type(e).__name__)
"""
    run = pool.run(code)
    assert "/proc/2/mem PermissionError" in run.stdout
    assert "/proc/2/fd/0 PermissionError" in run.stdout
    assert "/proc/1/environ b'PWD=/\\x00'" in run.stdout  # bwrap's init: only what sh set
    serves(pool)


# --- memory, output, files -------------------------------------------------------------------


def test_ten_gigabyte_allocation(pool):
    for code in ("x = bytearray(10 * 2**30)", "import numpy\nx = numpy.ones(10 * 2**30 // 8)"):
        run = pool.run(code)
        assert run.reason == execution.MEMORY and "MemoryError" in run.stderr
    serves(pool)


def test_many_processes_each_allocating(pool):
    code = """
import os
release_r, release_w = os.pipe()
for _ in range(8):
    if os.fork() == 0:
        os.close(release_w)
        block = bytearray(200 * 2**20)
        os.read(release_r, 1)  # hold the memory until released
        os._exit(0)
statuses = [os.wait()[1]]  # the first child to end is one the OOM killer took
os.close(release_w)
statuses += [os.wait()[1] for _ in range(7)]
assert all(s == 0 for s in statuses), statuses
"""
    limits = Limits(wall_s=10, cpu_s=10, memory_bytes=300 << 20, total_memory_bytes=400 << 20)
    run = pool.run(code, limits=limits)
    assert run.reason == execution.MEMORY
    serves(pool)


def test_gigabyte_printed(pool):
    code = "line = 'x' * 999\nfor _ in range(10**6):\n    print(line)"
    run = pool.run(code, limits=Limits(wall_s=10, output_bytes=1000, output_read_bytes=1 << 20))
    assert run.reason == execution.OUTPUT_TRUNCATED and run.exit_code == -9
    assert "bytes cut ...]" in run.stdout and len(run.stdout) < 1100
    text = run.as_output_block_text()
    assert "stopped" in text and len(text) < 1500
    serves(pool)


def test_output_cut_but_complete(pool):
    run = pool.run("print('a' * 5000)\nprint('end')", limits=Limits(output_bytes=1000))
    assert run.reason == execution.OUTPUT_TRUNCATED and run.exit_code == 0 and run.ok
    assert run.stdout.startswith("a" * 500) and run.stdout.endswith("a\nend\n")


def test_filling_tmp(pool):
    code = "i = 0\nwhile True:\n    open(f'/tmp/f{i}', 'wb').write(b'x' * 2**23)\n    i += 1"
    run = pool.run(code)
    assert run.reason == execution.DISK_FULL and "No space left" in run.error
    assert pool.run("import os\nprint(os.listdir('/tmp'))").stdout == "[]\n"
    serves(pool)


def test_file_size_limit(pool):
    run = pool.run("open('/tmp/big', 'wb').write(b'x' * 2**25)")
    assert run.reason == execution.FILE_SIZE and "File too large" in run.error
    serves(pool)


def test_writing_outside_the_tmpfs(pool):
    code = """
for path in ('/x', '/usr/x', '/dev/x', '/opt/sandbox/site/x', '/proc/x', '/root/x'):
    try:
        open(path, 'w').write('x')
        print(path, 'written')
    except OSError as e:
        print(path, type(e).__name__)
"""
    run = pool.run(code)
    assert run.reason is None and "written" not in run.stdout
    assert run.stdout.count("\n") == 6
    serves(pool)


# --- secrets and the network -----------------------------------------------------------------


def test_no_project_files_no_passwd_no_secrets(pool):
    code = """
import os, glob
for path in ('/etc/passwd', '/work/main/webapp/settings.py', '/root/.bashrc', '/etc/shadow'):
    try:
        open(path).read()
        print(path, 'WAS_READ')
    except OSError as e:
        print(path, type(e).__name__)
print(dict(os.environ))
for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):
    try:
        print(path, open(path, 'rb').read())
    except OSError:
        pass
print(os.listdir('/'), os.path.exists('/work'), os.path.exists('/home'))
"""
    run = pool.run(code, limits=Limits(output_bytes=1 << 20))
    assert run.reason is None
    assert "WAS_READ" not in run.stdout and SECRET not in all_text(run)
    assert "START_SANDBOX_TEST_SECRET" not in all_text(run)
    assert "False False" in run.stdout
    serves(pool)


def test_os_system_sees_no_more(pool):
    code = "import os\nprint(os.system('cat /etc/passwd; env; ls /work /home; id -u'))"
    run = pool.run(code)
    assert "root:" not in all_text(run) and SECRET not in all_text(run)
    assert "65534" in run.stdout
    serves(pool)


@pytest.mark.parametrize(
    ("host", "port"), [("127.0.0.1", 5432), ("127.0.0.1", 6379), ("1.1.1.1", 53)]
)
def test_no_network(pool, host, port):
    code = f"import socket\nsocket.create_connection(({host!r}, {port}), timeout=1)"
    run = pool.run(code, limits=QUICK)
    assert run.reason == execution.EXCEPTION
    assert run.error.startswith(("ConnectionRefusedError", "OSError: [Errno 101]"))
    serves(pool)


def test_host_listener_is_unreachable(pool):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        run = pool.run(code, limits=QUICK)
    assert run.error.startswith("ConnectionRefusedError")


def test_ctypes_and_mount(pool):
    code = """
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), os.strerror(ctypes.get_errno()))
print('unshare', libc.unshare(0x10000000))
done = subprocess.run(['mount', '-t', 'tmpfs', 'none', '/tmp'], capture_output=True)
print('mount(8)', done.returncode != 0)
"""
    run = pool.run(code)
    assert "mount -1 Operation not permitted" in run.stdout
    assert "unshare -1" in run.stdout and "mount(8) True" in run.stdout
    serves(pool)


def test_ctypes_crash(pool):
    run = pool.run("import ctypes\nctypes.string_at(0)")
    assert (run.reason, run.exit_code) == (execution.KILLED, -11)
    serves(pool)


# --- tracebacks and formatting ---------------------------------------------------------------


def test_traceback_has_no_sandbox_paths(pool):
    run = pool.run("import sympy\n\ndef f():\n    return sympy.sympify('(')\n\nf()")
    assert run.reason == execution.EXCEPTION
    for hidden in ("<sandbox>", "/opt/sandbox", "/root/", "/work/"):
        assert hidden not in run.stderr
    assert 'File "<cell>", line 6, in <module>' in run.stderr
    assert run.stderr.count("Traceback (most recent call last):") == 2  # a chained exception
    assert run.as_output_block_text().splitlines() == [
        "Traceback (most recent call last):",
        '  File "<cell>", line 4, in f',
        "    return sympy.sympify('(')",
        "           ^^^^^^^^^^^^^^^^^^",
        *run.stderr.splitlines()[-2:],
    ]
    assert run.error.startswith("sympy.core.sympify.SympifyError: Sympify of expression")


def test_format_output_parts():
    run = Execution("out\n", "warn\n", 0, None, 0.1, 0.1, value="3")
    assert format_output(run) == "out\n3\nwarn"
    timeout = Execution("", "", -9, execution.TIMEOUT, 5.02, 0.1)
    assert format_output(timeout) == "TimeoutError: the code was stopped after 5 s"
    long = Execution("x" * 5000, "", 0, None, 0.1, 0.1)
    text = format_output(long, max_chars=100)
    assert text.startswith("x" * 50) and "[... 4900 characters cut ...]" in text


def test_head_tail_and_short_traceback():
    assert head_tail("abc", 10) == "abc"
    assert head_tail("a" * 10 + "b" * 10, 10) == "aaaaa\n[... 10 characters cut ...]\nbbbbb"
    stderr = (
        "warning\nTraceback (most recent call last):\n"
        '  File "<cell>", line 3, in <module>\n    g()\n'
        '  File "<cell>", line 2, in g\n    return lib.h()\n'
        '  File "lib.py", line 9, in h\n    raise ValueError("bad")\n'
        "ValueError: bad\n"
    )
    assert short_traceback(stderr).splitlines() == [
        "warning",
        "Traceback (most recent call last):",
        '  File "<cell>", line 2, in g',
        "    return lib.h()",
        "ValueError: bad",
    ]
    assert short_traceback("no traceback\n") == "no traceback\n"


# --- sessions --------------------------------------------------------------------------------


def test_session_sees_earlier_blocks(pool):
    assert pool.run("x = 20\nimport random\nr = random.random()", session="s1").ok
    assert pool.run("1 / 0", session="s1").reason == execution.EXCEPTION
    assert pool.run("x += 1\nprint('side effect')", session="s1").stdout == "side effect\n"
    first = pool.run("print(x, r)", session="s1")
    second = pool.run("print(x, r)", session="s1")
    assert first.stdout.split()[0] == "21" and first.stdout == second.stdout
    assert pool.run("print(x)", session="other").error == "NameError: name 'x' is not defined"
    assert pool.run("print(x)").reason == execution.EXCEPTION
    pool.end_session("s1")
    assert pool.run("print(x)", session="s1").reason == execution.EXCEPTION


def test_session_stdin_and_functions_replay(pool):
    assert pool.run(
        "n = int(input())\ndef double(v):\n    return 2 * v", stdin="4\n", session="s2"
    ).ok
    run = pool.run("double(n)", session="s2")
    assert run.value == "8"
    pool.end_session("s2")


def test_session_store_expiry_and_cap():
    now = [0.0]
    store = SessionStore(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    store.get("a")
    store.append("a", Block("x = 1", "", 0.0, 0.0))
    now[0] = 5
    assert len(store.get("a").blocks) == 1
    now[0] = 16
    assert store.get("a").blocks == []  # idle for 11 s: expired, started afresh
    store.get("b")
    store.get("c")
    assert len(store) == 2  # "a" was the least recently used


# --- where bubblewrap cannot isolate ---------------------------------------------------------


def test_refuses_without_isolation_unless_allowed(secret_env):
    refusing = Pool(1, bwrap_path="/bin/false", allow_unisolated=False)
    try:
        with pytest.raises(SandboxUnavailable, match="SANDBOX_ALLOW_UNISOLATED"):
            refusing.run("print(1)")
    finally:
        refusing.close()
    weak = Pool(1, bwrap_path="/bin/false", allow_unisolated=True, packages=())
    try:
        run = weak.run("import os\nprint(1)\nprint('START_SANDBOX_TEST_SECRET' in os.environ)")
        assert (run.stdout, run.isolated) == ("1\nFalse\n", False)
        assert weak.run("while True:\n    pass", limits=Limits(cpu_s=1)).reason == "cpu time"
    finally:
        weak.close()

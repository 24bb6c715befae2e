"""run_python forks the agent's Python programs from a pristine interpreter of their kind (a zygote). What a
program prints, its exit code and its tracebacks must be exactly what a freshly started interpreter gives; a
folder whose files would shadow a preloaded module, and a zygote that is gone, fall back to a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from toolgym.envs.inside import toolgym_env
from toolgym.envs.inside.toolgym_env import run_python

PY = sys.executable
PROGRAMS = {
    "prints": "import sys\nprint('out', sys.argv)\nprint('err', file=sys.stderr)",
    "exit code": "import sys\nprint('before')\nsys.exit(3)",
    "exit message": "import sys\nsys.exit('bad input')",
    "exit none": "raise SystemExit",
    "traceback": "def f():\n    return 1 / 0\nprint('x')\nf()",
    "os exit": "import os\nprint('flushed?', flush=True)\nos._exit(5)",
    "killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "interrupt": "raise KeyboardInterrupt",
    "stdin": "import sys\nprint(repr(sys.stdin.read()))",
    "unicode and newlines": "import sys\nsys.stdout.write('é\\r\\nx\\ry 漢字\\n')",
    "atexit": "import atexit\natexit.register(lambda: print('at exit'))\nprint('main')",
    "thread": "import threading, time\n"
    "def late():\n    time.sleep(0.05)\n    print('thread done')\n"
    "threading.Thread(target=late).start()\nprint('main done')",
    "state": "import sys, os\nprint(sorted(sys.modules) == sorted(sys.modules), len(sys.path), sys.flags.isolated, "
    "sys.flags.no_site, sys.dont_write_bytecode, os.environ.get('TOOLGYM_PROBE'), __name__, sorted(globals()))",
    "modules": "import sys\nprint(sorted(sys.modules))",
}
FLAGS = [("-I", "-S", "-B"), ("-S",), ("-u",)]


def _fresh(args, **kw):
    kw.setdefault("stdin", None if "input" in kw else subprocess.DEVNULL)
    return subprocess.run(args, capture_output=True, text=True, **kw)


def _same(a, b):
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


@pytest.mark.parametrize("flags", FLAGS, ids=" ".join)
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_a_forked_program_gives_what_a_fresh_one_gives(name, flags, tmp_path):
    args = [PY, *flags, "-c", PROGRAMS[name], "arg 1", "arg2"]
    env = {**os.environ, "TOOLGYM_PROBE": "yes"}
    extra = {"input": "line 1\nline 2\n"} if name == "stdin" else {}
    forked = run_python(args, cwd=str(tmp_path), env=env, timeout=20, **extra)
    key = (flags, tuple(sorted(env.items())), ())
    assert toolgym_env.zygotes().get(key) is not None, "the program was not forked"
    _same(forked, _fresh(args, cwd=str(tmp_path), env=env, timeout=20, **extra))


REPO = {
    "mylib.py": "def double(x):\n    return 2 * x\n",
    "tests/__init__.py": "",
    "tests/test_mylib.py": "import unittest\nfrom mylib import double\n\n\n"
    "class T(unittest.TestCase):\n"
    "    def test_ok(self):\n        self.assertEqual(double(2), 4)\n\n"
    "    def test_wrong(self):\n        self.assertEqual(double(3), 7)\n\n"
    "    def test_error(self):\n        double(None) + 1\n",
}


def _repo(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(root)


def _unittest(cwd, preload, *target):
    args = [PY, "-S", "-m", "unittest", *target]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    forked = run_python(args, cwd=cwd, env=env, timeout=30, preload=preload)
    return forked, _fresh(args, cwd=cwd, env=env, timeout=30)


@pytest.mark.parametrize(
    "target", [("discover", "-s", "tests", "-t", "."), ("tests/test_mylib.py",), ("-h",)]
)
def test_unittest_runs_forked_with_unittest_preloaded_read_as_fresh_ones(target, tmp_path):
    cwd = _repo(tmp_path, REPO)
    forked, fresh = _unittest(cwd, ("runpy", "unittest"), *target)
    assert forked.returncode == fresh.returncode
    strip = lambda text: __import__("re").sub(r"(Ran \d+ tests?) in [0-9.]+s", r"\1", text)  # noqa: E731
    assert (strip(forked.stdout), strip(forked.stderr)) == (strip(fresh.stdout), strip(fresh.stderr))
    assert not (tmp_path / "tests" / "__pycache__").exists()  # PYTHONDONTWRITEBYTECODE reached the program


def test_a_folder_that_shadows_a_preloaded_module_gets_a_fresh_interpreter(tmp_path):
    # argparse is loaded with unittest: a fresh `-m unittest` here would import this file instead
    cwd = _repo(tmp_path, {**REPO, "argparse.py": "raise ImportError('the repository shadows argparse')\n"})
    zygote_keys = set(toolgym_env.zygotes())
    forked, fresh = _unittest(cwd, ("runpy", "unittest"), "discover", "-s", "tests", "-t", ".")
    assert forked.returncode == fresh.returncode != 0
    assert "shadows argparse" in forked.stderr and forked.stderr == fresh.stderr
    assert set(toolgym_env.zygotes()) >= zygote_keys


def test_a_program_past_its_time_is_killed(tmp_path):
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_python([PY, "-S", "-c", code], cwd=str(tmp_path), timeout=1.0, new_session=True)
    assert time.monotonic() - started < 8


def test_a_dead_zygote_is_replaced_and_the_program_still_runs(tmp_path):
    args = [PY, "-S", "-B", "-c", "print('hi')"]
    assert run_python(args, cwd=str(tmp_path), timeout=10).stdout == "hi\n"
    key = (("-S", "-B"), None, ())
    zygote = toolgym_env.zygotes()[key]
    os.kill(zygote.pid, 9)
    assert run_python(args, cwd=str(tmp_path), timeout=10).stdout == "hi\n"  # a fresh interpreter
    assert run_python(args, cwd=str(tmp_path), timeout=10).stdout == "hi\n"  # a new zygote
    assert toolgym_env.zygotes()[key] not in (None, zygote)


def test_many_programs_leave_no_zombies_and_no_descriptors(tmp_path):
    args = [PY, "-I", "-S", "-B", "-c", "print(1)"]
    run_python(args, cwd=str(tmp_path), timeout=10)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        assert run_python(args, cwd=str(tmp_path), timeout=10).stdout == "1\n"
    # a leak would leave one or more per program; other tests' threads may hold one or two more meanwhile
    assert len(os.listdir("/proc/self/fd")) <= before + 2
    zygote = toolgym_env.zygotes()[(("-I", "-S", "-B"), None, ())]
    with open(f"/proc/{zygote.pid}/task/{zygote.pid}/children") as f:
        assert f.read().split() == []


def test_threads_each_use_their_own_zygote(tmp_path):
    """In-process env servers run one per thread: their programs must not cross on one zygote's channel."""
    from concurrent.futures import ThreadPoolExecutor

    def many(i: int) -> list[str]:
        args = [PY, "-S", "-c", f"import sys\nprint({i}, sys.argv[1])", str(i)]
        return [run_python(args, cwd=str(tmp_path), timeout=20).stdout for _ in range(15)]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(many, range(4)))
    assert got == [[f"{i} {i}\n"] * 15 for i in range(4)]

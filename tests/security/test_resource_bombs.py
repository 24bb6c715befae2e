"""Resource bombs are contained per command: a fork bomb, a thread bomb, a memory bomb or a disk fill inside one
command ends at its timeout (or earlier, by a limit) with every process of the command gone; the server answers
the host all along (it needs no new thread or process to do so); and the next call is served within a second.

Each test runs the bomb for real, on both backends, and fails if any of that does not hold.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from toolgym.sandbox import Limits, open_sandbox

TIMEOUT_S = 4.0
LIMITS = Limits(memory_mb=256, pids=96, timeout_s=TIMEOUT_S)
KILL_SLACK_S = 3.0  # past the timeout: the kill itself, and a slow shared machine

PY_FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
# Every child leaves the command's session and process group, and its parent exits: the grandchild is an orphan
# of PID 1 with a new session; started under `env -i`, nothing carries the command's tag either.
ESCAPING_FORK_BOMB = (
    "import os\n"
    "while True:\n"
    "    try:\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "            if os.fork() > 0:\n"
    "                os._exit(0)\n"
    "    except OSError:\n"
    "        pass\n"
)
THREAD_BOMB = (
    "import threading, time\n"
    "while True:\n"
    "    try:\n"
    "        threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n"
    "    except RuntimeError:\n"
    "        pass\n"
)
# Eight processes that each take memory until the OOM killer (or the timeout) stops them.
MEMORY_BOMB = (
    "import os\n"
    "for _ in range(8):\n"
    "    if os.fork() == 0:\n"
    "        break\n"
    "hog = []\n"
    "while True:\n"
    "    hog.append(bytearray(8 << 20))\n"
)

# name: (command, whether it must run into its timeout). The classic shell bomb ends its foreground at once
# (or the foreground dies when it cannot fork), leaving the bomb in the background: it ran into the pids limit,
# so it is killed as a whole all the same.
BOMBS = {
    "python fork bomb": (["python3", "-c", PY_FORK_BOMB], True),
    "classic shell fork bomb": ("b() { b | b & }; b", False),
    "escaping fork bomb": (["env", "-i", "python3", "-c", ESCAPING_FORK_BOMB], True),
    "thread bomb": (["python3", "-c", THREAD_BOMB], True),
    "memory bomb": (["python3", "-c", MEMORY_BOMB], False),  # may end earlier, by the OOM killer
}


def survivors(sb) -> list[dict]:
    """Every process but the server (PID 1) and Python kernels (the spare one, and sessions the test opened)."""
    return [p for p in sb.processes() if p["pid"] != 1 and "kernel.py" not in p["cmd"]]


class PingWatch:
    """Pings the server on its own connection every 50 ms while a bomb runs; records the slowest answer."""

    def __init__(self, sb) -> None:
        self.sb = sb
        self.worst = 0.0
        self.errors: list[str] = []
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            try:
                self.worst = max(self.worst, self.sb.ping())
                self.count += 1
            except Exception as exc:  # noqa: BLE001 - recorded, asserted on below
                self.errors.append(repr(exc))

    def __enter__(self) -> PingWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def assert_contained_and_serving(sb, elapsed: float) -> None:
    assert elapsed < TIMEOUT_S + KILL_SLACK_S, f"the command took {elapsed:.1f} s"
    # A killed orphan is a zombie until the server (its PID 1) reaps it, which its reaper does within moments:
    # give it that moment; a process still running, or a zombie never reaped, fails.
    deadline = time.monotonic() + 2.0
    left = survivors(sb)
    while left and all(p["state"] == "Z" for p in left) and time.monotonic() < deadline:
        time.sleep(0.1)
        left = survivors(sb)
    assert not left, f"{len(left)} processes of the command survived it: {left[:5]}"
    started = time.monotonic()
    r = sb.run(["echo", "alive"])
    next_call = time.monotonic() - started
    assert r.stdout == "alive\n", r
    assert next_call < 1.0, f"the next call took {next_call:.2f} s"
    started = time.monotonic()
    assert sb.python().run("6 * 7").result == "42"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_bomb_in_one_command_is_contained(backend, bomb):
    cmd, must_time_out = BOMBS[bomb]
    with open_sandbox(backend, LIMITS) as sb:
        with PingWatch(sb) as watch:
            started = time.monotonic()
            r = sb.run(cmd, timeout_s=TIMEOUT_S)
            elapsed = time.monotonic() - started
        assert r.timed_out or not must_time_out, r
        assert not watch.errors, f"the server stopped answering during the bomb: {watch.errors[:3]}"
        assert watch.worst < 1.0, f"slowest ping during the bomb: {watch.worst:.2f} s"
        # At least one answered ping a second of bomb (each is under a second, above): the watch really ran.
        assert watch.count >= min(10, int(elapsed)), "the server answered too few pings during the bomb"
        assert_contained_and_serving(sb, elapsed)
        sb.reset()  # and the verified reset still verifies
        assert not survivors(sb)


def test_fork_bomb_in_an_agent_session_cell_is_contained(backend):
    with open_sandbox(backend, LIMITS) as sb:
        py = sb.python()
        py.run("kept = 'state'")
        started = time.monotonic()
        r = py.run(PY_FORK_BOMB, timeout_s=TIMEOUT_S)
        elapsed = time.monotonic() - started
        assert r.timed_out
        assert_contained_and_serving(sb, elapsed - 1.0)  # a cell gets one more second to unwind
        if not r.restarted:
            assert py.run("kept").result == "'state'"


def test_bombs_leave_the_background_processes_of_earlier_commands_alone(backend):
    """Containment is per command: a bomb's kill does not take an agent's server of an earlier command along."""
    with open_sandbox(backend, LIMITS) as sb:
        assert sb.run("setsid sleep 300 > /dev/null 2>&1 &").exit_code == 0
        r = sb.run(["python3", "-c", PY_FORK_BOMB], timeout_s=2)
        assert r.timed_out
        assert [p["cmd"] for p in survivors(sb)] == ["sleep 300"]


def test_disk_fill_is_bounded_and_leaves_a_serving_sandbox(backend):
    workspace_mb, tmp_mb, shm_mb = LIMITS.scratch_mb()
    fill = (
        "for d in /workspace /tmp /dev/shm /dev; do cat /dev/zero > $d/fill 2>/dev/null; done; "
        "du -sm /workspace/fill /tmp/fill /dev/shm/fill; test -e /dev/fill && echo DEV-WRITABLE; true"
    )
    with open_sandbox(backend, LIMITS) as sb:
        started = time.monotonic()
        r = sb.run(fill, timeout_s=30)
        elapsed = time.monotonic() - started
        assert not r.timed_out, "a disk fill must end by running out of space, not by its timeout"
        assert "DEV-WRITABLE" not in r.stdout, "agent code can write files into /dev"
        sizes = {
            line.split()[1]: int(line.split()[0]) for line in r.stdout.splitlines() if line[:1].isdigit()
        }
        assert sizes["/workspace/fill"] <= workspace_mb + 1, sizes
        assert sizes["/tmp/fill"] <= tmp_mb + 1, sizes
        assert sizes["/dev/shm/fill"] <= shm_mb + 1, sizes
        # Together they leave room in the memory limit for the server and the next command.
        assert workspace_mb + tmp_mb + shm_mb <= LIMITS.memory_mb - 48
        assert_contained_and_serving(sb, min(elapsed, TIMEOUT_S))
        assert sb.run(["python3", "-c", "print(sum(range(10**6)))"]).stdout == "499999500000\n"
        sb.reset()
        assert sb.run("ls -A /workspace /tmp /dev/shm").stdout.split() == [
            "/dev/shm:",
            "/tmp:",
            "/workspace:",
        ]


def test_scratch_sizes_stay_inside_the_memory_limit():
    for memory_mb in (64, 128, 256, 512, 4096):
        workspace, tmp, shm = Limits(memory_mb=memory_mb).scratch_mb()
        assert workspace + tmp + shm <= memory_mb - max(48, memory_mb // 4)
        assert min(workspace, tmp, shm) >= 1
    assert Limits(memory_mb=512).scratch_mb() == (256, 64, 16)  # the defaults fit as they are


@pytest.mark.skipif(os.cpu_count() == 1, reason="needs a second CPU to ping while the bomb spins")
def test_control_plane_answers_while_pids_are_exhausted(backend):
    """While a fork bomb holds every pid of the sandbox, new connections and requests are still answered (a
    command gets a prompt refusal), and all is well again once the bomb's command is over."""
    with open_sandbox(backend, LIMITS) as sb:
        bomb = threading.Thread(target=lambda: sb.run(["python3", "-c", PY_FORK_BOMB], timeout_s=10))
        bomb.start()
        try:
            refused = None
            deadline = time.monotonic() + 8
            while refused is None and time.monotonic() < deadline:
                started = time.monotonic()
                r = sb.run(["true"], timeout_s=1)
                assert time.monotonic() - started < 2.5, "a command in an exhausted sandbox must not hang"
                if r.exit_code == 126 and "process limit" in r.stderr:
                    refused = r
                time.sleep(0.1)
            assert refused is not None, "the bomb never exhausted the pids limit"
            for _ in range(5):
                sb.client.drop_connections()  # a new connection each time: accepted with no new thread
                started = time.monotonic()
                assert sb.client.call("ping")["pid"] == 1
                assert time.monotonic() - started < 1.0
        finally:
            bomb.join()
        assert not survivors(sb)
        assert sb.run(["echo", "alive"]).stdout == "alive\n"

"""No leaks: runs killed mid-episode leave nothing once the reaper has run; SIGTERM cleans up at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from toolgym.sandbox import reaper
from toolgym.sandbox.backend import Owner

WORKER = textwrap.dedent(
    """
    import signal, sys, time
    # A job started in the background of a shell (nohup ... &) inherits SIGINT ignored, and Python then keeps
    # it ignored: restore the KeyboardInterrupt a user's Ctrl-C gives, which is what the test is about.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from toolgym.sandbox import open_sandbox
    boxes = [open_sandbox("docker") for _ in range(int(sys.argv[1]))]
    boxes[0].run("sleep 300 &")
    print("READY", flush=True)
    time.sleep(300)
    """
)


def start_worker(n: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "READY"
    return proc


def owner_of(proc: subprocess.Popen) -> Owner:
    from toolgym.sandbox.backend import process_start_time

    return Owner(Owner.me().host, proc.pid, process_start_time(proc.pid))


@pytest.mark.slow
def test_sigkilled_runs_are_reaped(docker_backend):
    client = docker_backend.client
    workers = [start_worker(2) for _ in range(3)]
    owners = [owner_of(w) for w in workers]
    assert sum(reaper.count(client, o) for o in owners) == 6
    for w in workers:
        w.send_signal(signal.SIGKILL)
        w.wait()
    assert sum(reaper.count(client, o) for o in owners) == 6  # SIGKILL leaves them behind...
    removed = reaper.reap_dead(client)
    assert removed >= 6
    assert sum(reaper.count(client, o) for o in owners) == 0  # ...until the reaper runs


def test_sigterm_cleans_up_its_own(docker_backend):
    client = docker_backend.client
    w = start_worker(2)
    owner = owner_of(w)
    assert reaper.count(client, owner) == 2
    w.send_signal(signal.SIGTERM)
    w.wait(timeout=30)
    assert reaper.count(client, owner) == 0


def test_sigint_cleans_up_its_own(docker_backend):
    client = docker_backend.client
    w = start_worker(1)
    owner = owner_of(w)
    w.send_signal(signal.SIGINT)
    try:
        # Its exit hook removes the container through the engine, which a loaded CI machine can make slow.
        w.wait(timeout=90)
    except subprocess.TimeoutExpired:
        w.kill()
        pytest.fail(f"the worker did not exit after SIGINT; stderr: {w.communicate()[1][-2000:]}")
    assert reaper.count(client, owner) == 0


def test_namespace_sandboxes_die_with_their_owner():
    from tests.conftest import backend_or_skip

    backend_or_skip("namespace")
    script = WORKER.replace('open_sandbox("docker")', 'open_sandbox("namespace")')
    proc = subprocess.Popen([sys.executable, "-c", script, "2"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{c}") for c in children):
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{c}") for c in children)

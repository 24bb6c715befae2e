"""The agent cgroup: the agent's processes (commands, agent Python sessions and what they fork) run in a cgroup
of their own inside the sandbox's, with the agent's memory limit and the CPU quota, while the in-sandbox server
and trusted sessions stay outside it. Checked on both real backends, as root (where the host can make one).
"""

from __future__ import annotations

import os
import socket

import pytest
from toolgym.sandbox import Limits, open_sandbox
from toolgym.sandbox.inside import wire

LIMITS = Limits(memory_mb=256, timeout_s=20, pids=128)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root makes cgroups")


def cgroups_of(text: str) -> dict[str, str]:
    """controller -> path, from a /proc/<pid>/cgroup."""
    out = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else ["unified"]:
            out[c] = path
    return out


def memory_and_cpu(text: str) -> list[str]:
    groups = cgroups_of(text)
    return [groups[c] for c in ("memory", "cpu") if c in groups] or [groups["unified"]]


def test_agent_processes_run_in_the_agent_cgroup_and_the_server_does_not(backend):
    with open_sandbox(backend, LIMITS) as sb:
        assert sb.client.call("ping")["agent_cgroup"] is True
        command = sb.run(["cat", "/proc/self/cgroup"]).stdout
        forked = sb.run(["sh", "-c", "cat /proc/self/cgroup & wait"]).stdout
        server = sb.run(["cat", "/proc/1/cgroup"]).stdout
        agent_session = sb.python().run("open('/proc/self/cgroup').read()").result
        trusted = sb.python(trusted=True).run("open('/proc/self/cgroup').read()").result
        for text in (command, forked, eval(agent_session)):
            assert all(path.endswith("/agent") for path in memory_and_cpu(text)), text
        for text in (server, eval(trusted)):
            assert not any(path.endswith("/agent") for path in memory_and_cpu(text)), text


def test_the_agent_memory_limit_holds_below_the_sandbox_limit(backend):
    limits = Limits(memory_mb=1024, timeout_s=20)
    agent_mb = limits.agent_memory_mb()
    assert agent_mb == 896
    # 32 MB more than the agent may have, which the sandbox still holds beside the server and its spare kernel
    # (about 35 MB): only the agent cgroup's limit stops it.
    grab = f"x = bytearray({agent_mb + 32} << 20)\nprint('kept')"
    fits = f"x = bytearray({agent_mb - 64} << 20)\nprint('kept')"
    with open_sandbox(backend, limits) as sb:
        r = sb.run(["python3", "-c", grab])
        assert r.oom_killed and "kept" not in r.stdout, r
        assert sb.run(["python3", "-c", fits]).stdout == "kept\n"
        py = sb.python()
        cell = py.run(grab)
        assert cell.restarted and "out of memory" in cell.error.message, cell
        assert sb.run("echo alive").stdout == "alive\n"


def test_agent_code_cannot_reach_the_cgroup_descriptors_or_files(backend):
    probe = (
        "import os\n"
        "links = []\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        links.append(os.readlink(f'/proc/self/fd/{fd}'))\n"
        "    except OSError:\n"
        "        pass  # the listing's own descriptor, closed by now\n"
        "print([l for l in links if 'cgroup' in l or 'tasks' in l])\n"
        "for name in ('/sys/fs/cgroup/memory/cgroup.procs', '/sys/fs/cgroup/memory/agent/tasks',\n"
        "             '/sys/fs/cgroup/cgroup.procs', '/sys/fs/cgroup/agent/cgroup.procs'):\n"
        "    try:\n"
        "        with open(name, 'w') as f:\n"
        "            f.write('1')\n"
        "        print('moved with', name)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    with open_sandbox(backend, LIMITS) as sb:
        assert sb.run(["python3", "-c", probe]).stdout == "[]\n"
        assert sb.python().run(probe).stdout == "[]\n"
        # The server still is where it was: nothing moved it.
        assert not any(p.endswith("/agent") for p in memory_and_cpu(sb.run(["cat", "/proc/1/cgroup"]).stdout))


def test_only_the_first_agent_cgroup_handed_over_is_kept(backend):
    with open_sandbox(backend, LIMITS) as sb:
        before = sb.run(["cat", "/proc/self/cgroup"]).stdout
        fd = os.open("/dev/null", os.O_WRONLY)
        assert sb.client.adopt_agent_cgroup((fd,), threads=False) is True  # it holds the first one still
        assert sb.run(["cat", "/proc/self/cgroup"]).stdout == before
        # A session moved after the second handover still lands in the agent cgroup: a server that took the
        # new descriptor would have written its pid to /dev/null.
        session = eval(sb.python().run("open('/proc/self/cgroup').read()").result)
        assert all(path.endswith("/agent") for path in memory_and_cpu(session)), session


def test_wire_carries_descriptors_only_where_asked():
    a, b = socket.socketpair()
    with a, b:
        r, w = os.pipe()
        try:
            wire.send(a, {"op": "x"}, (w,))
            fds: list[int] = []
            assert wire.recv(b, fds) == {"op": "x"}
            assert len(fds) == 1 and not os.get_inheritable(fds[0])
            os.write(fds[0], b"through")  # the same pipe, duplicated across the socket
            os.close(fds[0])
            assert os.read(r, 7) == b"through"
            wire.send(a, {"op": "y"}, (w,))
            assert wire.recv(b) == {"op": "y"}  # not asked for: the kernel closed the duplicate
            with pytest.raises(ValueError):
                wire.send(a, {"op": "z"}, (w,) * (wire.MAX_FDS + 1))
        finally:
            os.close(r)
            os.close(w)


def test_the_cpu_quota_still_bounds_the_agent(backend):
    """The quota moved from the sandbox's cgroup to the agent's: two spinning processes for 1.5 s of wall time
    get about one core between them (Limits.cpus = 1), not the two this machine has."""
    spin = (
        "import os, time\n"
        "kids = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        end = time.monotonic() + 1.5\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "for pid in kids:\n"
        "    os.waitpid(pid, 0)\n"
        "t = os.times()\n"
        "print(round(t.children_user + t.children_system, 2))\n"
    )
    with open_sandbox(backend, LIMITS) as sb:
        assert LIMITS.cpus == 1.0
        used = float(sb.run(["python3", "-c", spin]).stdout)
        assert 0.5 < used < 1.5 * 1.25, f"{used} s of CPU in 1.5 s of wall time"


STEAL = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
got = []
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        continue
    for fd in range(64):
        stolen = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
        if stolen >= 0:
            got.append([pid, fd, "pidfd_getfd", os.readlink(f"/proc/self/fd/{stolen}")])
            os.close(stolen)
        try:
            with open(f"/proc/{pid}/fd/{fd}", "w"):
                got.append([pid, fd, "open", os.readlink(f"/proc/{pid}/fd/{fd}")])
        except OSError:
            pass
    os.close(pidfd)
print(json.dumps([g for g in got if "cgroup" in g[3] or "tasks" in g[3]]))
"""


def test_agent_code_cannot_take_the_descriptors_from_any_process(backend):
    """The server, a trusted session that holds them for its zygote, and a spare kernel all hold the agent
    cgroup's descriptors, and an agent's session held them until its first cell; agent code tries every
    process's first 64 descriptors both ways. (Not closing them in the agent's session fails this on the
    namespace backend; on Docker its seccomp profile refuses pidfd_getfd as well.)"""
    with open_sandbox(backend, LIMITS) as sb:
        trusted = sb.python(trusted=True)
        assert trusted.run("import os; bool(os.environ.get('TOOLGYM_AGENT_CGROUP'))").result == "True"
        assert sb.python().run("1").result == "1"
        assert sb.run(["python3", "-c", STEAL]).stdout == "[]\n"
        assert sb.python().run(STEAL).stdout == "[]\n"


def test_cgroups_of_sandboxes_whose_owner_died_are_swept():
    """A namespace sandbox's owner killed before it stopped the sandbox leaves its cgroup (and, now, the agent
    leaf inside). The next backend start removes the empty ones of dead owners, and nothing else."""
    from toolgym.sandbox import cgroups
    from toolgym.sandbox.namespace_backend import Cgroup

    if not Cgroup.available():
        pytest.skip("no writable cgroups")
    dead = 2**22 + 1  # above the default pid_max range in use here: no such process
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    stale = Cgroup(f"{dead}-testsweep", LIMITS)
    live = Cgroup(f"{os.getpid()}-testsweep", LIMITS)
    try:
        assert stale.agent and all(path.is_dir() for path in stale.agent)
        Cgroup.sweep_stale(min_age_s=3600)  # too young: an owner elsewhere may be filling it
        assert all(path.exists() for path in stale.paths)
        assert Cgroup.sweep_stale(min_age_s=0) >= len(stale.paths)
        assert not any(path.exists() for path in stale.paths)
        assert all(path.exists() for path in live.paths + (live.agent or []))
        assert cgroups.AGENT in {p.name for p in live.paths[0].iterdir()}
    finally:
        live.remove()
        stale.remove()

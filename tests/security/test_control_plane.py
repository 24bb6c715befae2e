"""The control plane is the host's alone: hostile agent code (commands, an agent's Python session, and what they
start) cannot talk to the in-sandbox server, signal, trace or read it or a trusted session, or take their place.

Every test here runs the attack for real, on both backends, and fails if it succeeds.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
from toolgym.sandbox import Limits, open_sandbox
from toolgym.sandbox import backend as backend_module
from toolgym.sandbox.client import ServerClient
from toolgym.sandbox.errors import SandboxDied
from toolgym.sandbox.inside import wire

LIMITS = Limits(memory_mb=256, pids=128, timeout_s=20)

# Finds every Unix socket the sandbox can name (the server's own path, anything in its folder, every socket of
# the sandbox's network namespace in /proc/net/unix, the path through /proc/1/root) and sends each of them the
# requests a hostile agent wants answered: a ping, a trusted session, a reset of its own sandbox, a command.
SOCKET_PROBE = r"""
import json, os, socket, struct

def frame(message):
    data = json.dumps(message).encode()
    return struct.pack("!I", len(data)) + data

def attempt(path, message):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
    except OSError as e:
        return "connect-refused:%d" % e.errno
    try:
        s.sendall(frame(message))
        head = s.recv(4)
        if len(head) < 4:
            return "closed"
        return "ANSWERED:" + s.recv(1 << 20).decode("utf-8", "replace")
    except OSError as e:
        return "io-error:%d" % e.errno
    finally:
        s.close()

paths = {"/run/toolgym/server.sock", "/proc/1/root/run/toolgym/server.sock"}
try:
    paths |= {os.path.join("/run/toolgym", n) for n in os.listdir("/run/toolgym")}
except OSError:
    pass
with open("/proc/net/unix") as f:
    for line in f.read().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[-1].startswith("/"):
            paths.add(fields[-1])
for path in sorted(paths):
    for message in (
        {"op": "ping"},
        {"op": "run", "argv": ["touch", "/workspace/pwned"]},
        {"op": "py_open", "trusted": True},
        {"op": "reset"},
    ):
        # One line each, at once: a reset that works kills this probe before it could say so at the end.
        print(json.dumps([path + " " + message["op"], attempt(path, message)]), flush=True)
"""

# Signals, ptrace, /proc reads and fd theft against the pids in argv; also tries to become the trusted uid.
PROCESS_PROBE = r"""
import ctypes, json, os, signal, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long]

def errno_of(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return e.errno

def read(path):
    with open(path, "rb") as f:
        f.read(1)

out = {}
for pid in map(int, PIDS):
    r = {}
    for name in ("SIGSTOP", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGKILL"):
        r[name] = errno_of(lambda: os.kill(pid, getattr(signal, name)))
    r["PTRACE_ATTACH"] = [libc.ptrace(16, pid, None, None), ctypes.get_errno()]
    libc.ptrace(17, pid, None, None)  # detach, had it attached
    r["PTRACE_SEIZE"] = [libc.ptrace(0x4206, pid, None, None), ctypes.get_errno()]
    libc.ptrace(17, pid, None, None)
    for name in ("mem", "environ", "fd/0", "fd/3", "fd/4", "cwd/."):
        r["read " + name] = errno_of(lambda: read("/proc/%d/%s" % (pid, name)))
    r["write fd/0"] = errno_of(lambda: open("/proc/%d/fd/0" % pid, "wb").close())
    try:
        pidfd = os.pidfd_open(pid)
        r["pidfd_getfd"] = [libc.syscall(438, pidfd, 0, 0), ctypes.get_errno()]
        os.close(pidfd)
    except OSError as e:
        r["pidfd_getfd"] = [-1, e.errno]
    out[pid] = r
out["setresuid"] = errno_of(lambda: os.setresuid(TRUSTED, TRUSTED, TRUSTED))
print(json.dumps(out))
"""

DENIED = (1, 13)  # EPERM, EACCES
TRUSTED_UID = getattr(backend_module, "TRUSTED_UID", 1001)


def process_probe(pids) -> str:
    return f"PIDS = {[str(p) for p in pids]!r}\nTRUSTED = {TRUSTED_UID!r}\n" + PROCESS_PROBE


def as_command(sb, code: str) -> str:
    return sb.run(["python3", "-c", code], timeout_s=20).stdout


def as_agent_session(sb, code: str) -> str:
    return sb.python().run(code, timeout_s=20).stdout


def as_daemon_grandchild(sb, code: str) -> str:
    """From a setsid'd, orphaned process with an empty environment (what escapes process groups and tags)."""
    sb.write_file("probe.py", code)
    run = "python3 /workspace/probe.py > /workspace/probe.tmp 2>&1; mv /workspace/probe.tmp /workspace/probe.out"
    r = sb.run(f"env -i setsid sh -c '{run}' > /dev/null 2>&1 &")
    assert r.exit_code == 0, r.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sb.run(["test", "-e", "/workspace/probe.out"]).exit_code == 0:
            return sb.read_file("probe.out").decode()
        time.sleep(0.1)
    raise AssertionError("the daemon's probe did not finish")


AGENTS = {"command": as_command, "agent session": as_agent_session, "daemon": as_daemon_grandchild}


def kernel_count(sb) -> int:
    return sum("kernel.py" in p["cmd"] for p in sb.processes())


def must_split(backend) -> bool:
    """Whether trusted kernels must run under their own uid: always on Docker; on the namespace backend where
    toolgym runs as root (without root a user namespace maps one uid only, see the README)."""
    return backend.name == "docker" or os.geteuid() == 0


def trusted_uid_of(sb) -> int | None:
    return sb.client.call("ping").get("trusted_uid")


@pytest.mark.parametrize("agent", list(AGENTS))
def test_agent_code_cannot_use_the_control_socket(backend, agent):
    with open_sandbox(backend, LIMITS) as sb:
        before = sb.client.call("ping")
        kernels = kernel_count(sb)
        results = dict(json.loads(line) for line in AGENTS[agent](sb, SOCKET_PROBE).splitlines())
        answered = {k: v for k, v in results.items() if v.startswith("ANSWERED")}
        assert not answered, f"agent code was answered by the control socket: {answered}"
        after = sb.client.call("ping")
        assert after["generation"] == before["generation"], "agent code reset its own sandbox"
        assert sb.run(["test", "-e", "/workspace/pwned"]).exit_code != 0, "agent code ran a command"
        assert kernel_count(sb) == kernels, "agent code opened a Python session"
        assert any(k.startswith("/run/toolgym/server.sock ") for k in results), results  # it found the socket
        assert sb.run(["echo", "still serving"]).stdout == "still serving\n"
        assert after["refused"] > before["refused"], "the connections should have been seen and refused"


@pytest.mark.parametrize("agent", list(AGENTS))
def test_agent_code_cannot_signal_trace_or_read_server_or_trusted_session(backend, agent):
    with open_sandbox(backend, LIMITS) as sb:
        env_server = sb.python(trusted=True)
        env_server.run("state = 'env server state'")
        kernel_pid = int(env_server.run("import os; os.getpid()").result)
        generation = sb.client.call("ping")["generation"]
        results = json.loads(AGENTS[agent](sb, process_probe([1, kernel_pid])))

        server, kernel = results["1"], results[str(kernel_pid)]
        for r in (server, kernel):
            assert r["PTRACE_ATTACH"] == [-1, 1], r
            assert r["PTRACE_SEIZE"] == [-1, 1], r
            for key in ("read mem", "read environ", "read fd/0", "read fd/3", "read fd/4", "read cwd/."):
                assert r[key] in DENIED, (key, r)
            assert r["write fd/0"] in DENIED, r
            assert r["pidfd_getfd"] == [-1, 1], r
        if must_split(backend):
            for sig in ("SIGSTOP", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGKILL"):
                assert kernel[sig] == 1, f"agent code could send {sig} to a trusted session: {kernel}"
            assert results["setresuid"] == 1, "agent code could take the trusted uid"
        # The server (PID 1) ignores every signal its own namespace sends it; it answers, and did not reset.
        assert sb.client.call("ping")["generation"] == generation
        assert sb.client.call("ping")["pid"] == 1
        # The trusted session runs on with its state: it was neither killed nor stopped.
        r = env_server.run("state", timeout_s=5)
        assert r.result == "'env server state'" and not r.restarted, r
        assert int(env_server.run("os.getpid()").result) == kernel_pid


def test_trusted_kernel_runs_as_its_own_uid_and_agent_code_as_the_sandbox_uid(backend):
    if not must_split(backend):
        pytest.skip("no second uid on this backend here (namespace backend without root)")
    with open_sandbox(backend, LIMITS) as sb:
        trusted_uid = trusted_uid_of(sb)
        assert trusted_uid is not None, "this backend should run trusted kernels under their own uid"
        env_server = sb.python(trusted=True)
        agent = sb.python()
        ids = "import os; (os.getresuid(), open('/proc/self/status').read().count('CapEff:\\t0000000000000000'))"
        assert env_server.run(ids).result == f"(({trusted_uid}, 1000, {trusted_uid}), 1)"
        assert agent.run(ids).result == "((1000, 1000, 1000), 1)"
        # Files the trusted session writes still belong to the agent's uid (env state in /workspace).
        env_server.run("open('/workspace/state.txt', 'w').write('x')")
        assert sb.run(["stat", "-c", "%u", "/workspace/state.txt"]).stdout.strip() == "1000"
        assert sb.run("echo more >> /workspace/state.txt").exit_code == 0
        r = sb.run(["grep", "-E", "^Cap(Eff|Prm|Bnd|Amb|Inh):", "/proc/self/status"])
        assert all(line.split()[1] == "0000000000000000" for line in r.stdout.splitlines()), r.stdout


def test_agent_code_cannot_plant_a_listener_for_the_host(backend):
    with open_sandbox(backend, LIMITS) as sb:
        plant = (
            "import os, socket\n"
            "for path in ('/run/toolgym/server.sock', '/run/toolgym/server.sock.new', '/run/toolgym/x'):\n"
            "    try:\n        os.unlink(path)\n    except OSError as e:\n        print('unlink', e.errno)\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n        s.bind(path); print('BOUND', path)\n    except OSError as e:\n        print('bind', e.errno)\n"
        )
        r = sb.run(["python3", "-c", plant])
        if os.geteuid() == 0:  # the host locks the socket's folder
            assert "BOUND" not in r.stdout, r.stdout
        # Whatever happened there, the host still talks to the real server: the same process as at start.
        sb.client.drop_connections()
        assert sb.client.call("ping")["pid"] == 1
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(sb.handle.socket_path)
        pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        sock.close()
        assert pid == sb.client.server_pid != 0


def test_host_refuses_a_listener_that_is_not_the_server(tmp_path):
    """Where the host is not root and cannot lock the socket's folder, agent code could replace the socket with
    a listener of its own. The client pins the server's pid at start and refuses any other listener."""
    path = str(tmp_path / "server.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)

    def fake_server():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                wire.recv(conn)
                wire.send(conn, {"ok": True, "result": {"forged": True}})
            except (OSError, wire.ConnectionClosed):
                pass
            conn.close()

    threading.Thread(target=fake_server, daemon=True).start()
    try:
        assert ServerClient(path).call("ping") == {"forged": True}  # learns this (our own) pid first
        impostor = ServerClient(path, server_pid=os.getpid() + 1_000_000)
        with pytest.raises(SandboxDied, match="not by the sandbox server"):
            impostor.call("reset")
    finally:
        listener.close()


def test_host_connection_arrives_without_a_pid_inside(backend):
    """The peer check rests on this: inside the sandbox the host's connection reads pid 0 (it comes from outside
    the pid namespace), while any process of the sandbox has a pid there (the tests above)."""
    with open_sandbox(backend, LIMITS) as sb:
        before = sb.client.call("ping")["refused"]
        sb.client.drop_connections()
        for _ in range(3):
            sb.client.drop_connections()
            assert sb.client.call("ping")["pid"] == 1
        assert sb.client.call("ping")["refused"] == before  # none of the host's connections was refused

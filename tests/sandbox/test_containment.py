"""Containment: each test fails if the sandbox lets something out that it must not (both backends)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest
from toolgym.sandbox import Limits, SandboxPathError, open_sandbox


def test_only_loopback_interface_and_no_route_out(sandbox):
    r = sandbox.run(["python3", "-c", "import os; print(' '.join(sorted(os.listdir('/sys/class/net'))))"])
    if r.exit_code == 0:  # /sys may be absent in the namespace backend; the connect below still decides
        assert r.stdout.split() == ["lo"], r.stdout
    # TEST-NET-1 is never routed anywhere; with no interface but lo the kernel refuses at once.
    probe = (
        "import socket,errno\n"
        "s=socket.socket(); s.settimeout(2)\n"
        "try:\n    s.connect(('192.0.2.1', 80)); print('CONNECTED')\n"
        "except OSError as e:\n    print('ERR', e.errno)\n"
    )
    r = sandbox.run(["python3", "-c", probe])
    assert "CONNECTED" not in r.stdout
    assert r.stdout.strip() in ("ERR 101", "ERR 99"), r.stdout + r.stderr  # ENETUNREACH / EADDRNOTAVAIL


def test_host_loopback_service_unreachable(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    server.settimeout(3)

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    try:
        r = sandbox.run(
            ["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"]
        )
        assert r.exit_code != 0
        assert "ConnectionRefused" in r.stderr or "Errno" in r.stderr
    finally:
        t.join()
        server.close()
    assert not accepted, "the sandbox reached a service on the host's loopback"


def test_host_files_invisible(sandbox, tmp_path):
    secret = tmp_path / f"secret-{uuid.uuid4().hex}"
    secret.write_text("host secret")
    here = os.path.abspath(__file__)
    from toolgym.sandbox.paths import cache_dir

    for path in (str(secret), here, str(cache_dir()), "/var/run/docker.sock"):
        r = sandbox.run(["/bin/sh", "-c", f"test -e '{path}' && echo VISIBLE || echo hidden"])
        assert r.stdout.strip() == "hidden", f"{path} is visible inside the sandbox"


@pytest.mark.parametrize("path", ["/etc/evil", "/usr/evil", "/evil", "/opt/toolgym/evil", "/bin/evil"])
def test_writes_outside_workspace_refused(sandbox, path):
    r = sandbox.run(["/bin/sh", "-c", f"echo x > {path}"])
    assert r.exit_code != 0
    assert sandbox.run(["test", "-e", path]).exit_code != 0


def test_workspace_and_tmp_writable(sandbox):
    r = sandbox.run("echo a > /workspace/a && echo b > /tmp/b && cat /workspace/a /tmp/b")
    assert r.stdout == "a\nb\n"


def test_runs_unprivileged(sandbox):
    r = sandbox.run(["/bin/sh", "-c", "id -u; grep -E '^(CapEff|CapPrm|CapBnd):' /proc/self/status"])
    lines = r.stdout.split("\n")
    assert lines[0] == "1000"
    for line in lines[1:]:
        if line:
            assert line.split()[1] == "0000000000000000", line


def test_docker_sets_no_new_privileges(docker_backend):
    with open_sandbox(docker_backend) as sb:
        r = sb.run(["grep", "NoNewPrivs", "/proc/self/status"])
        assert r.stdout.split() == ["NoNewPrivs:", "1"]


def test_server_cannot_be_traced_or_killed_by_agent_code(sandbox):
    probe = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())\n"  # PTRACE_ATTACH to PID 1
        "try:\n    open('/proc/1/mem', 'rb').read(1)\nexcept OSError as e:\n    print('mem', e.errno)\n"
        "os.kill(1, 9)\n"
    )
    r = sandbox.run(["python3", "-c", probe])
    assert r.stdout.splitlines()[0] == "-1 1", r.stdout  # EPERM
    assert r.stdout.splitlines()[1].startswith("mem "), r.stdout
    time.sleep(0.2)
    sandbox.ping()  # the server (PID 1) survived kill -9 from inside


def test_server_code_is_pinned_and_agent_commands_start_with_nothing_locked(sandbox):
    """The server locks its code pages so a memory bomb cannot evict them (its answers would wait on the disk);
    locks do not pass to children, so agent commands start with none."""
    assert sandbox.client.call("ping")["pinned"] >= 4 << 20  # the interpreter's and libc's code at least
    r = sandbox.run(["sh", "-c", "grep VmLck /proc/self/status"])
    assert r.stdout.split()[1] == "0", r.stdout


def test_trusted_session_cannot_be_traced_but_an_agent_session_can(sandbox):
    """toolgym's own session (an env server) is non-dumpable like the server; agent sessions are ordinary."""
    probe = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "pid = int(sys.argv[1])\n"
        "print(libc.ptrace(16, pid, 0, 0), ctypes.get_errno())\n"  # PTRACE_ATTACH
        "libc.ptrace(17, pid, 0, 0)\n"  # PTRACE_DETACH, when it did attach
    )
    for trusted, attached in ((True, "-1 1"), (False, "0 0")):
        session = sandbox.python(trusted=trusted)
        pid = session.run("import os; os.getpid()").result
        r = sandbox.run(["python3", "-c", probe, pid])
        assert r.stdout.splitlines()[0] == attached, (trusted, r.stdout)
        session.close()


def test_fork_bomb_contained_by_pids_limit(backend):
    limits = Limits(memory_mb=256, pids=64, timeout_s=3)
    with open_sandbox(backend, limits) as sb:
        started = time.monotonic()
        r = sb.run(
            [
                "python3",
                "-c",
                "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            ]
        )
        assert r.timed_out
        assert time.monotonic() - started < 15
        sb.ping()
        assert sb.run("echo alive").stdout == "alive\n"
        assert len([p for p in sb.processes() if p["state"] != "Z"]) <= 2


def test_memory_bomb_reported_as_oom_killed(backend):
    with open_sandbox(backend, Limits(memory_mb=128, timeout_s=20)) as sb:
        r = sb.run(["python3", "-c", "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n"])
        assert r.oom_killed, r
        assert not r.timed_out
        assert sb.run("echo alive").stdout == "alive\n"


def test_cpu_spin_killed_at_timeout(sandbox):
    started = time.monotonic()
    r = sandbox.run(["python3", "-c", "while True: pass"], timeout_s=1)
    assert r.timed_out and r.exit_code == -9
    assert 0.9 < time.monotonic() - started < 4


@pytest.mark.parametrize(
    "cmd",
    [
        "(sleep 100; echo late) & wait",
        "setsid sleep 100 & sleep 100",
        "sh -c 'sleep 100 &' ; sleep 100",
    ],
)
def test_child_processes_killed_at_timeout(sandbox, cmd):
    started = time.monotonic()
    r = sandbox.run(cmd, timeout_s=1)
    assert r.timed_out
    assert time.monotonic() - started < 4
    time.sleep(0.1)
    sleeping = [p for p in sandbox.processes() if "sleep" in p["cmd"] and p["state"] != "Z"]
    assert not sleeping, sleeping


def test_background_process_survives_command_but_not_reset(sandbox):
    r = sandbox.run("sleep 300 > /dev/null 2>&1 &")
    assert r.exit_code == 0 and not r.timed_out
    assert any("sleep 300" in p["cmd"] for p in sandbox.processes())
    sandbox.write_file("left-behind.txt", "x")
    sandbox.run("echo x > /tmp/also")
    sandbox.reset()
    # Only the server (PID 1) and the one kernel it starts ahead of the next session remain.
    others = [p for p in sandbox.processes() if p["state"] != "Z" and p["pid"] != 1]
    assert len(others) <= 1 and all("kernel.py" in p["cmd"] for p in others), others
    assert any(p["pid"] == 1 for p in sandbox.processes())
    assert sandbox.run("ls -A /workspace /tmp").stdout.split() == ["/tmp:", "/workspace:"]


def test_reset_removes_sysv_ipc(sandbox):
    make_shm = "import ctypes; libc = ctypes.CDLL(None); print(libc.shmget(0, 4096, 0o1600))"
    r = sandbox.run(["python3", "-c", make_shm])
    assert int(r.stdout) >= 0
    assert sandbox.run(["cat", "/proc/sysvipc/shm"]).stdout.count("\n") == 2
    sandbox.reset()
    assert sandbox.run(["cat", "/proc/sysvipc/shm"]).stdout.count("\n") == 1


def test_output_flood_truncated(backend):
    with open_sandbox(backend, Limits(output_bytes=1000, timeout_s=5)) as sb:
        r = sb.run("yes | head -c 10000000")
        assert r.truncated and len(r.stdout_bytes) == 1000 and r.exit_code == 0
        r = sb.run("yes", timeout_s=1)
        assert r.truncated and r.timed_out and len(r.stdout_bytes) == 1000


def test_binary_and_non_utf8_output_survive(sandbox):
    r = sandbox.run(
        [
            "python3",
            "-c",
            "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3); "
            "sys.stderr.buffer.write(b'\\xff\\xfe\\x80')",
        ]
    )
    assert r.stdout_bytes == bytes(range(256)) * 3
    assert r.stderr_bytes == b"\xff\xfe\x80"
    assert "\ufffd" in r.stderr  # the str view decodes with replacement
    sandbox.write_file("blob.bin", bytes(range(256)))
    assert sandbox.read_file("blob.bin") == bytes(range(256))


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "/workspace/../tmp/x", "link/x"])
def test_path_traversal_refused(sandbox, path):
    sandbox.run("ln -s /etc /workspace/link")
    with pytest.raises(SandboxPathError, match="outside the workspace"):
        sandbox.write_file(path, b"x")
    with pytest.raises(SandboxPathError):
        sandbox.read_file(path)


def test_stdin_env_and_cwd(sandbox):
    sandbox.run("mkdir -p /workspace/sub")
    r = sandbox.run(
        ["/bin/sh", "-c", "cat; echo $GREETING; pwd"],
        stdin="piped\n",
        env={"GREETING": "hi"},
        cwd="/workspace/sub",
    )
    assert r.stdout == "piped\nhi\n/workspace/sub\n"
    r = sandbox.run(["no-such-command"])
    assert r.exit_code == 127


def test_read_only_mounts(backend, tmp_path):
    (tmp_path / "data.txt").write_text("shared data")
    tmp_path.chmod(0o755)
    with open_sandbox(backend, mounts={str(tmp_path): "/mnt/data"}) as sb:
        assert sb.run(["cat", "/mnt/data/data.txt"]).stdout == "shared data"
        assert sb.run("echo x > /mnt/data/new").exit_code != 0
        assert sb.run("echo x > /mnt/other").exit_code != 0
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="mount target"):
        open_sandbox(backend, mounts={str(tmp_path): "/workspace"})


def test_agent_code_cannot_replace_the_server_socket(sandbox):
    r = sandbox.run("rm -f /run/toolgym/server.sock; touch /run/toolgym/planted; ls -A /run/toolgym")
    assert r.stdout.split() == ["server.sock"]
    sandbox.ping()
    sandbox.reset()
    sandbox.ping()

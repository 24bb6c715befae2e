"""The in-sandbox server: commands, stateful Python sessions and workspace files, served over a Unix socket.

Stdlib only, so any image with a Python 3 runs it. Where it is PID 1 of its sandbox it acts as the init (reaps
orphans) and makes itself non-dumpable, so code it runs for an agent can neither ptrace it nor kill it; that is
what lets `reset` hand a sandbox to the next episode with nothing of the last one left.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DRAIN_GRACE_S = 0.05  # output still arriving after the command exited (from children holding the pipe)
INTERRUPT_GRACE_S = 1.0  # how long an interrupted cell may take to unwind before its session is restarted

SCRUB_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")


def libc():
    return ctypes.CDLL(None, use_errno=True)


class RequestError(Exception):
    """A request the server refuses; the message is for the caller."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- processes ---------------------------------------------------------------------------------------------


def read_proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def list_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def proc_stat(pid: int) -> tuple[str, int]:
    """(state, ppid) of a process, from /proc/<pid>/stat (the command name may hold spaces)."""
    stat = read_proc(pid, "stat")
    if not stat:
        return "", 0
    rest = stat[stat.rfind(b")") + 2 :].split()
    return rest[0].decode(), int(rest[1])


def processes() -> list[dict]:
    out = []
    for pid in list_pids():
        state, ppid = proc_stat(pid)
        cmd = read_proc(pid, "cmdline").replace(b"\0", b" ").strip().decode("utf-8", "replace")
        if state:
            out.append({"pid": pid, "ppid": ppid, "state": state, "cmd": cmd})
    return out


def leftover_processes() -> list[dict]:
    """Processes other than this server that a reset must have removed (zombies already reaped count too)."""
    me = os.getpid()
    procs = processes()
    if me == 1:
        return [p for p in procs if p["pid"] != me]
    children: dict[int, list[dict]] = {}
    for p in procs:
        children.setdefault(p["ppid"], []).append(p)
    out, stack = [], list(children.get(me, []))
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p["pid"], []))
    return out


def kill_tagged(tag: bytes, root_pid: int | None = None) -> int:
    """SIGKILL every process carrying `tag` in its environment or descending from `root_pid`.

    Repeats until a pass finds none, so a process forking as fast as it can (a fork bomb) is still caught.
    """
    me = os.getpid()
    killed = 0
    for _ in range(200):
        found = 0
        children: dict[int, list[int]] = {}
        for pid in list_pids():
            if pid == me:
                continue
            _, ppid = proc_stat(pid)
            children.setdefault(ppid, []).append(pid)
            if tag in read_proc(pid, "environ"):
                found += _kill(pid)
        if root_pid is not None:
            stack = [root_pid]
            while stack:
                pid = stack.pop()
                found += _kill(pid) if pid != me else 0
                stack.extend(children.get(pid, []))
        killed += found
        if not found:
            break
    return killed


def _kill(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
        return 1
    except ProcessLookupError:
        return 0
    except PermissionError:
        return 0


def oom_kills() -> int | None:
    """The cgroup's OOM-kill counter (v2 memory.events or v1 memory.oom_control), None where invisible."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return None


def raise_oom_score(pid: int) -> None:
    # Make the agent's processes, not this server, the OOM killer's choice. Raising needs no capability.
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


class Children:
    """The children this server waits on itself; the init reaper must leave their exit statuses alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pids: set[int] = set()

    def spawn(self, *args, **kwargs) -> subprocess.Popen:
        with self.lock:
            proc = subprocess.Popen(*args, **kwargs)
            self.pids.add(proc.pid)
        raise_oom_score(proc.pid)
        return proc

    def done(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.pids.discard(proc.pid)

    def reap_orphans(self) -> None:
        me = os.getpid()
        with self.lock:
            for pid in list_pids():
                if pid in self.pids:
                    continue
                state, ppid = proc_stat(pid)
                if state == "Z" and ppid == me:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass


CHILDREN = Children()


# --- commands ----------------------------------------------------------------------------------------------


def run_command(req: dict, workspace: str, base_env: dict) -> dict:
    argv = req["argv"]
    if not argv or not all(isinstance(a, str) for a in argv):
        raise RequestError("ValueError", "argv must be a non-empty list of strings")
    timeout = float(req.get("timeout_s") or 10.0)
    cap = int(req.get("max_output", 1 << 20))
    tag = "TOOLGYM_TAG=" + uuid.uuid4().hex
    env = dict(base_env)
    env.update(req.get("env") or {})
    env["TOOLGYM_TAG"] = tag.split("=", 1)[1]
    stdin_data = wire.unb64(req.get("stdin_b64"))
    cwd = req.get("cwd") or workspace
    started = time.monotonic()
    oom_before = oom_kills()
    try:
        proc = CHILDREN.spawn(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        return _spawn_failure(argv[0], 127, f"{argv[0]}: command not found\n", started)
    except PermissionError:
        return _spawn_failure(argv[0], 126, f"{argv[0]}: permission denied\n", started)
    except NotADirectoryError:
        return _spawn_failure(argv[0], 126, f"{cwd}: not a directory\n", started)
    if stdin_data:
        threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True).start()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    outputs = {out_fd: bytearray(), err_fd: bytearray()}
    truncated = False
    timed_out = False
    sel = selectors.DefaultSelector()
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None
    deadline = started + timeout
    exited_at = None
    open_fds = set(outputs)
    while open_fds:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at >= DRAIN_GRACE_S:
            break
        if not timed_out and now >= deadline:
            timed_out = True
            kill_tagged(tag.encode(), proc.pid)
            deadline = now + DRAIN_GRACE_S
            exited_at = exited_at or now
            continue
        wait = deadline - now
        if exited_at is not None:
            wait = min(wait, DRAIN_GRACE_S - (now - exited_at))
        elif pidfd is None:
            wait = min(wait, 0.01)
        for key, _ in sel.select(max(wait, 0.0)):
            fd = key.fd
            if fd == pidfd:
                sel.unregister(pidfd)
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(fd)
                open_fds.discard(fd)
                continue
            buf = outputs[fd]
            room = cap - len(buf)
            if len(chunk) > room:
                truncated = True
                chunk = chunk[: max(room, 0)]
            buf += chunk
    sel.close()
    if pidfd is not None:
        os.close(pidfd)
    remaining = max(deadline - time.monotonic(), 0.0) if not timed_out else 0.0
    try:
        proc.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_tagged(tag.encode(), proc.pid)
        proc.wait()
    CHILDREN.done(proc)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    oom_after = oom_kills()
    code = proc.returncode
    oom = (
        oom_before is not None
        and oom_after is not None
        and oom_after > oom_before
        and code == -signal.SIGKILL
        and not timed_out
    )
    return {
        "exit_code": code,
        "stdout_b64": wire.b64(bytes(outputs[out_fd])),
        "stderr_b64": wire.b64(bytes(outputs[err_fd])),
        "timed_out": timed_out,
        "oom_killed": oom,
        "truncated": truncated,
        "duration_s": time.monotonic() - started,
    }


def _spawn_failure(name: str, code: int, message: str, started: float) -> dict:
    return {
        "exit_code": code,
        "stdout_b64": "",
        "stderr_b64": wire.b64(message.encode()),
        "timed_out": False,
        "oom_killed": False,
        "truncated": False,
        "duration_s": time.monotonic() - started,
    }


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except OSError:
        pass


# --- files -------------------------------------------------------------------------------------------------


def confine(workspace: str, path: str) -> str:
    """The real path of `path` if it lies inside the workspace; relative paths start at the workspace."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise RequestError("PathError", "the path must be a non-empty string")
    full = os.path.realpath(os.path.join(workspace, path))
    root = os.path.realpath(workspace)
    if full != root and not full.startswith(root + os.sep):
        raise RequestError("PathError", f"{path!r} is outside the workspace {workspace}; use a path under it")
    return full


def write_file(req: dict, workspace: str) -> dict:
    path = confine(workspace, req["path"])
    data = wire.unb64(req.get("data_b64"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # O_NOFOLLOW: a symlink planted at the final component must not redirect the write.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, int(req.get("mode", 0o644)))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return {"path": path, "size": len(data)}


def read_file(req: dict, workspace: str) -> dict:
    path = confine(workspace, req["path"])
    limit = int(req.get("max_bytes", 64 << 20))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise RequestError("FileNotFoundError", f"no such file in the sandbox: {req['path']}") from None
    except IsADirectoryError:
        raise RequestError("IsADirectoryError", f"{req['path']} is a directory") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    return {"data_b64": wire.b64(data[:limit]), "truncated": len(data) > limit}


# --- python sessions ---------------------------------------------------------------------------------------


class Session:
    """One kernel process and the pipes to it."""

    def __init__(self, base_env: dict, workspace: str) -> None:
        self.base_env = base_env
        self.workspace = workspace
        self.lock = threading.Lock()
        self.counter = 0
        self.trusted = False
        self._start()

    def _start(self) -> None:
        to_kernel_r, to_kernel_w = os.pipe()
        from_kernel_r, from_kernel_w = os.pipe()
        self.tag = uuid.uuid4().hex
        env = dict(self.base_env, TOOLGYM_TAG=self.tag)
        self.proc = CHILDREN.spawn(
            [
                sys.executable,
                "-E",
                "-s",
                "-B",
                os.path.join(HERE, "kernel.py"),
                str(to_kernel_r),
                str(from_kernel_w),
            ],
            cwd=self.workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(to_kernel_r, from_kernel_w),
            start_new_session=True,
        )
        os.close(to_kernel_r)
        os.close(from_kernel_w)
        self.requests = os.fdopen(to_kernel_w, "w", encoding="utf-8")
        self.replies_fd = from_kernel_r
        self.buffer = b""

    def _read_reply(self, deadline: float) -> dict | None:
        while b"\n" not in self.buffer:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            sel = selectors.DefaultSelector()
            sel.register(self.replies_fd, selectors.EVENT_READ)
            ready = sel.select(wait)
            sel.close()
            if not ready:
                return None
            chunk = os.read(self.replies_fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def run(self, code: str, timeout: float, cap: int) -> dict:
        with self.lock:
            started = time.monotonic()
            self.counter += 1
            try:
                request = {"code": code, "id": self.counter, "max_output": cap, "harden": self.trusted}
                self.requests.write(json.dumps(request) + "\n")
                self.requests.flush()
            except OSError:
                self.restart()
                return _cell_failure(
                    "the Python session had died and was restarted; run the cell again",
                    started,
                    restarted=True,
                )
            reply = self._read_reply(started + timeout)
            if reply is not None:
                reply["timed_out"] = False
                reply["restarted"] = False
                return reply
            if self.proc.poll() is not None:
                oom = self.proc.returncode == -signal.SIGKILL
                self.restart()
                why = "ran out of memory" if oom else "crashed"
                return _cell_failure(
                    f"the Python session {why} and was restarted; its variables are lost",
                    started,
                    restarted=True,
                    oom=oom,
                )
            # Timed out: interrupt the cell (variables survive), and only if it will not stop, restart.
            cell_tag = f"TOOLGYM_CELL={self.proc.pid}-".encode()
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            reply = self._read_reply(time.monotonic() + INTERRUPT_GRACE_S)
            kill_tagged(cell_tag)
            if reply is not None:
                reply["timed_out"] = True
                reply["restarted"] = False
                reply["duration_s"] = time.monotonic() - started
                return reply
            self.restart()
            return _cell_failure(
                f"the cell ran past its {timeout:g} s limit and did not stop; the session was restarted",
                started,
                restarted=True,
                timed_out=True,
            )

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        kill_tagged(self.tag.encode(), self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        CHILDREN.done(self.proc)
        for closer in (self.requests.close, lambda: os.close(self.replies_fd)):
            try:
                closer()
            except OSError:
                pass


def _cell_failure(
    message: str, started: float, *, restarted: bool, timed_out: bool = False, oom: bool = False
) -> dict:
    return {
        "stdout": "",
        "stderr": "",
        "truncated": False,
        "result": None,
        "error": {
            "type": "SessionRestarted" if restarted else "SessionError",
            "message": message,
            "traceback": "",
        },
        "interrupted": timed_out,
        "timed_out": timed_out,
        "restarted": restarted,
        "oom_killed": oom,
        "duration_s": time.monotonic() - started,
    }


# --- the server --------------------------------------------------------------------------------------------


class Server:
    def __init__(self, socket_path: str, workspace: str) -> None:
        self.socket_path = socket_path
        self.workspace = workspace
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.base_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": workspace,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": "/tmp",
        }
        self.listener: socket.socket | None = None
        self.generation = 0
        self.spare: Session | None = None

    # Each request names an operation; the handlers return a dict or raise RequestError.
    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "uid": os.getuid(), "generation": self.generation}
        if op == "run":
            return run_command(req, self.workspace, self.base_env)
        if op == "write_file":
            return write_file(req, self.workspace)
        if op == "read_file":
            return read_file(req, self.workspace)
        if op == "py_open":
            session_id = uuid.uuid4().hex[:12]
            session = self._take_spare() or Session(self.base_env, self.workspace)
            session.trusted = bool(req.get("trusted"))
            with self.sessions_lock:
                self.sessions[session_id] = session
            return {"session": session_id}
        if op == "py_run":
            session = self._session(req["session"])
            timeout = float(req.get("timeout_s") or 120.0)
            return session.run(req["code"], timeout, int(req.get("max_output", 1 << 20)))
        if op == "py_close":
            with self.sessions_lock:
                session = self.sessions.pop(req["session"], None)
            if session is not None:
                session.close()
            return {}
        if op == "processes":
            return {"processes": processes()}
        if op == "reset":
            return self.reset()
        raise RequestError("ValueError", f"unknown operation {op!r}")

    def start_spare(self) -> None:
        """Start one kernel ahead of need, so the first session after a start or a reset (an episode's env
        server, in a pool) finds its interpreter already up instead of waiting ~30 ms for it."""
        with self.sessions_lock:
            if self.spare is None:
                self.spare = Session(self.base_env, self.workspace)

    def _take_spare(self) -> Session | None:
        with self.sessions_lock:
            spare, self.spare = self.spare, None
        if spare is not None and spare.proc.poll() is not None:  # killed by agent code: not usable
            spare.close()
            return None
        return spare

    def _session(self, session_id: str) -> Session:
        with self.sessions_lock:
            session = self.sessions.get(session_id)
        if session is None:
            raise RequestError("KeyError", f"no Python session {session_id!r}; open one with sb.python()")
        return session

    def reset(self) -> dict:
        """Return the sandbox to its first state and verify it: no process but this one, empty scratch space."""
        with self.sessions_lock:
            sessions, self.sessions = list(self.sessions.values()), {}
            if self.spare is not None:
                sessions.append(self.spare)
                self.spare = None
        for session in sessions:
            session.close()
        me = os.getpid()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if me == 1:
                # As PID 1 of its own namespace, kill(-1) reaches every other process and never this one.
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                # Not an init (a plain process on some host): only what this server started, never neighbours.
                kill_tagged(b"TOOLGYM_TAG=", root_pid=me)
            CHILDREN.reap_orphans()
            if not leftover_processes():
                break
            time.sleep(0.001)
        remove_sysv_ipc()
        problems = []
        for directory in (self.workspace, *SCRUB_DIRS):
            if os.path.isdir(directory) and not empty_dir(directory):
                problems.append(f"{directory} is not empty after the reset")
        # Where the host could not lock the socket's folder (not root), agent code could have replaced the
        # socket: a fresh listener makes sure nothing planted during the episode answers the host.
        if os.access(os.path.dirname(self.socket_path), os.W_OK):
            self.listen()
        others = leftover_processes()
        if others:
            problems.append(f"{len(others)} processes survived the reset: {others[:5]}")
        if sysv_ipc_objects():
            problems.append("System V IPC objects survived the reset")
        self.generation += 1
        if not problems:
            self.start_spare()
        return {"clean": not problems, "problems": problems, "generation": self.generation}

    def listen(self) -> None:
        empty_dir(os.path.dirname(self.socket_path))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0)  # the host user may not share our uid; the folder's own mode guards access
        tmp_path = self.socket_path + ".new"
        listener.bind(tmp_path)
        os.umask(old_umask)
        listener.listen(64)
        os.rename(tmp_path, self.socket_path)  # appears only when ready to accept
        old, self.listener = self.listener, listener
        threading.Thread(target=self.accept_loop, args=(listener,), daemon=True).start()
        if old is not None:
            old.close()

    def accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve_connection, args=(conn,), daemon=True).start()

    def serve_connection(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    req = wire.recv(conn)
                except (wire.ConnectionClosed, OSError):
                    return
                try:
                    reply = {"ok": True, "result": self.handle(req)}
                except RequestError as exc:
                    reply = {"ok": False, "error": {"type": exc.kind, "message": str(exc)}}
                except Exception as exc:  # noqa: BLE001 - reported to the host, the server stays up
                    reply = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}
                try:
                    wire.send(conn, reply)
                except OSError:
                    return


def empty_dir(directory: str) -> bool:
    """Remove everything inside `directory` (not following links); True when it is empty afterwards."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                raise
    return not os.listdir(directory)


# --- System V IPC: the one kind of state that outlives processes and lives outside the file systems --------


def sysv_ipc_objects() -> list[tuple[str, int]]:
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1:
                found.append((kind, int(fields[1])))
    return found


def remove_sysv_ipc() -> None:
    objects = sysv_ipc_objects()
    if not objects:
        return
    lib = libc()
    ipc_rmid = 0
    for kind, ident in objects:
        if kind == "shm":
            lib.shmctl(ident, ipc_rmid, None)
        elif kind == "sem":
            lib.semctl(ident, 0, ipc_rmid)
        else:
            lib.msgctl(ident, ipc_rmid, None)


def harden() -> None:
    """Non-dumpable: processes of the same uid cannot ptrace this one or open its memory."""
    pr_set_dumpable = 4
    try:
        libc().prctl(pr_set_dumpable, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--workspace", default="/workspace")
    args = parser.parse_args()
    harden()
    os.makedirs(args.workspace, exist_ok=True)
    os.chdir(args.workspace)
    server = Server(args.socket, args.workspace)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.listen()
    server.start_spare()
    while not stop.wait(0.5):
        if os.getpid() == 1:
            CHILDREN.reap_orphans()


if __name__ == "__main__":
    main()

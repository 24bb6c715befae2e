"""The in-sandbox server: commands, stateful Python sessions and workspace files, served over a Unix socket.

Stdlib only, so any image with a Python 3 runs it. Where it is PID 1 of its sandbox it acts as the init (reaps
orphans) and makes itself non-dumpable, so code it runs for an agent can neither ptrace it nor kill it; that is
what lets `reset` hand a sandbox to the next episode with nothing of the last one left.

The control plane is the host's alone:
- A connection whose peer is a process of this sandbox is refused (SO_PEERCRED: the host's connection comes
  from outside the sandbox's pid namespace, so its pid reads 0 here; every process inside has a pid).
- Where the backend gives it a second uid and the capabilities to use it, Python kernels start as that uid and
  take real/saved uid = it, effective uid = the agent's (see caps.py): a trusted session (an env server) can
  neither be signalled nor traced by agent code, and still writes the agent's files as the agent's uid.
- The server never needs a new thread or process to answer the host: one event loop accepts and answers the
  quick requests, and a few worker threads started before any agent code run commands and cells. A fork bomb
  that exhausts the pids limit cannot stop it from answering.
- A command past its timeout is stopped and killed as a whole (its process group at once, then SIGSTOP/SIGKILL
  sweeps over its session, descendants and tagged processes until none is left), so a fork bomb dies within its
  timeout however fast it forks.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import json
import os
import queue
import resource
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caps  # noqa: E402
import wire  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DRAIN_GRACE_S = 0.05  # output still arriving after the command exited (from children holding the pipe)
INTERRUPT_GRACE_S = 1.0  # how long an interrupted cell may take to unwind before its session is restarted
KILL_DEADLINE_S = 3.0  # how long the stop-and-kill sweeps of one command may take at most
STICKY_S = 0.2  # a worker keeps serving its connection this long after a reply before handing it back
WORKERS = 4  # worker threads started with the server, before any agent code
# Requests that may take long are served by workers, never on the event loop ("processes" too: reading the
# cmdline of a process that is forking waits for the fork).
WORKER_OPS = ("run", "py_run", "py_close", "processes")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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


def read_environ(pid: int) -> bytes | None:
    """A process's environment, None where we may not read it (another uid, or gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return None


def list_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


class Proc(NamedTuple):
    pid: int
    state: str
    ppid: int
    pgrp: int
    sid: int
    start: int  # clock ticks after boot


def proc_info(pid: int) -> Proc | None:
    """From /proc/<pid>/stat (the command name may hold spaces); readable for every process, any uid."""
    stat = read_proc(pid, "stat")
    if not stat:
        return None
    rest = stat[stat.rfind(b")") + 2 :].split()
    return Proc(pid, rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))


def proc_stat(pid: int) -> tuple[str, int]:
    """(state, ppid) of a process."""
    info = proc_info(pid)
    return (info.state, info.ppid) if info else ("", 0)


def snapshot() -> dict[int, Proc]:
    out = {}
    for pid in list_pids():
        info = proc_info(pid)
        if info is not None:
            out[pid] = info
    return out


def boot_ticks() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS)


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


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def with_descendants(procs: dict[int, Proc], members: set[int], me: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, stack = set(), list(members)
    while stack:
        pid = stack.pop()
        if pid in out or pid == me:
            continue
        out.add(pid)
        stack.extend(children.get(pid, []))
    return out


def sweep(select_members, group: int | None = None, deadline_s: float = KILL_DEADLINE_S) -> list[Proc]:
    """Kill every process `select_members(procs, me)` names, until none is left; returns those it killed.

    `group` (a process group) gets one SIGKILL first: the kernel delivers it to the whole group at once, and a
    process with SIGKILL pending can fork no more. What escaped the group (setsid, setpgid) is then swept: stop
    every running member (a stopped process cannot fork, and it keeps its pid, so the pids it would free cannot
    be refilled), and once none runs, kill them all; repeat until a pass finds nobody. Zombies this server
    inherits are reaped on every pass, so their pids are free again when it returns.
    """
    me = os.getpid()
    killed: dict[int, Proc] = {}
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + deadline_s
    passes = 0
    while True:
        procs = snapshot()
        reaped = CHILDREN.reap_orphans(procs)
        pids = select_members(procs, me)
        live = [procs[pid] for pid in pids if procs[pid].state not in "ZX"]
        if not live:
            # Done once the dead are reaped too, so that their pids are free again: what this server inherited
            # was reaped above, and a zombie whose parent is dying comes to it in a moment. (Popen reaps its own;
            # a zombie of a live process outside the sweep, a Python kernel's, is its parent's to reap.)
            dying = [
                p
                for p in procs.values()
                if p.state in "ZX"
                and p.pid not in CHILDREN.pids
                and (p.ppid == me or p.ppid in pids or p.ppid in killed)
            ]
            if (not dying and not reaped) or time.monotonic() > deadline:
                return list(killed.values())
            time.sleep(0.001)
            continue
        passes += 1
        running = [p for p in live if p.state not in "Tt"]
        if running and passes < 50 and time.monotonic() < deadline:
            for p in running:
                _signal(p.pid, signal.SIGSTOP)
            continue
        for p in live:
            if _signal(p.pid, signal.SIGKILL):
                killed[p.pid] = p
        if time.monotonic() > deadline + 1.0:
            return list(killed.values())
        time.sleep(0.001)  # let the killed exit before the next look


def orphans(procs: dict[int, Proc], me: int) -> list[Proc]:
    """Processes this server inherited (their parent died) and does not wait for itself: where a process that
    left its session ends up. Only these need their environment read (reading it waits while a process forks)."""
    return [p for p in procs.values() if p.ppid == me and p.pid not in CHILDREN.pids and p.state not in "ZX"]


def command_members(root: int, tag: bytes, since: int | None):
    """Who belongs to a command: its process group and session (both its pid: it starts a session), its
    descendants, anything carrying its tag, and where `since` is given (no other command or cell ran beside
    it), orphans started after it that carry no tag at all (env -i + setsid escapes)."""

    def select_members(procs: dict[int, Proc], me: int) -> set[int]:
        members = {p.pid for p in procs.values() if p.pid == root or p.sid == root or p.pgrp == root}
        for p in orphans(procs, me):
            if p.pid in members:
                continue
            env = read_environ(p.pid)
            if env is not None and (
                tag in env or (since is not None and p.start >= since and b"TOOLGYM_" not in env)
            ):
                members.add(p.pid)
        return with_descendants(procs, members, me)

    return select_members


def session_members(kernel: int, tag: bytes):
    """Everything of a Python session: its kernel, the kernel's session and group, descendants, tagged ones."""

    def select_members(procs: dict[int, Proc], me: int) -> set[int]:
        members = {p.pid for p in procs.values() if p.pid == kernel or p.sid == kernel or p.pgrp == kernel}
        for p in orphans(procs, me):
            if p.pid not in members:
                env = read_environ(p.pid)
                if env is not None and tag in env:
                    members.add(p.pid)
        return with_descendants(procs, members, me)

    return select_members


def cell_members(kernel: int, tag: bytes, since: int):
    """What one cell started: its kernel's descendants started during the cell, unless they carry another
    TOOLGYM_CELL (a background process of an earlier cell started them), and orphans carrying its tag. Copies
    of the kernel made by os.fork() carry no tag at all (their /proc environ is the kernel's own): they count."""

    def select_members(procs: dict[int, Proc], me: int) -> set[int]:
        members = set()
        late = {p.pid for p in procs.values() if p.ppid == kernel and p.start >= since}
        for pid in with_descendants(procs, late, me):
            env = read_environ(pid) if procs[pid].state not in "ZX" else b""
            if env is None or tag in env or b"TOOLGYM_CELL=" not in env:
                members.add(pid)
        for p in orphans(procs, me):
            env = read_environ(p.pid)
            if env is not None and tag in env:
                members.add(p.pid)
        return with_descendants(procs, members, me) - {kernel}

    return select_members


def tagged_members(tag: bytes, root: int | None):
    """What this server started (not being PID 1): tagged processes among its orphans, and its descendants."""

    def select_members(procs: dict[int, Proc], me: int) -> set[int]:
        members = set()
        for p in orphans(procs, me):
            env = read_environ(p.pid)
            if env is not None and tag in env:
                members.add(p.pid)
        if root is not None:
            members |= {p.pid for p in procs.values() if p.ppid == root}
        return with_descendants(procs, members, me)

    return select_members


class CgroupCounters:
    """The sandbox's own cgroup counters, as the backends show them read-only at /sys/fs/cgroup (v2, or v1
    controllers): OOM kills, and forks refused at the pids limit. The agent cgroup's OOM kills count too: v2's
    memory.events counts its children's, v1's memory.oom_control does not, so there the child's file is added.
    Which layout is here is looked up once."""

    FILES = {
        "oom_kill": (
            ("/sys/fs/cgroup/memory.events",),
            ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory/agent/memory.oom_control"),
        ),
        "max": (("/sys/fs/cgroup/pids.events",), ("/sys/fs/cgroup/pids/pids.events",)),
    }

    def __init__(self) -> None:
        self.paths: dict[str, tuple[str, ...] | None] = {}

    def read(self, key: str) -> int | None:
        if key not in self.paths:
            self.paths[key] = next((files for files in self.FILES[key] if os.path.exists(files[0])), None)
        paths = self.paths[key]
        if paths is None:
            return None
        total = None
        for path in paths:
            value = self._read_one(path, key)
            if value is not None:
                total = (total or 0) + value
        return total

    @staticmethod
    def _read_one(path: str, key: str) -> int | None:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            pass
        return None


COUNTERS = CgroupCounters()


def oom_kills() -> int | None:
    """The cgroup's OOM-kill counter, None where invisible."""
    return COUNTERS.read("oom_kill")


def pids_refusals() -> int | None:
    """How many forks the cgroup's pids limit refused so far, None where invisible."""
    return COUNTERS.read("max")


def increased(before: int | None, after: int | None) -> bool:
    return before is not None and after is not None and after > before


AGENT_NICE = 10
"""Agent commands run at this nice value: under contention inside the sandbox (a fork bomb against the CPU
quota) the server and trusted sessions still get the CPU to answer. Agent code cannot lower it again."""


def lower_priority(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, AGENT_NICE)
    except OSError:
        pass


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

    def reap_orphans(self, procs: dict[int, Proc] | None = None, wait: bool = True) -> int:
        """Reap the zombies this server inherited. `wait=False` (the event loop) skips the round while a spawn
        holds the lock: a fork can wait long in the agent cgroup's reclaim or CPU throttling, and the loop
        must go on answering the host meanwhile."""
        if procs is None:
            if not wait and self.lock.locked():
                return 0
            procs = snapshot()
        if not self.lock.acquire(blocking=wait):
            return 0
        try:
            me = os.getpid()
            reaped = 0
            for p in procs.values():
                if p.state == "Z" and p.ppid == me and p.pid not in self.pids:
                    try:
                        reaped += os.waitpid(p.pid, os.WNOHANG)[0] == p.pid
                    except ChildProcessError:
                        pass
            return reaped
        finally:
            self.lock.release()


CHILDREN = Children()


class AgentCgroup:
    """The cgroup of the agent's processes, a child of the sandbox's with the agent's memory limit and the CPU
    quota (the backends make it; see `Limits.agent_memory_mb` and sandbox/cgroups.py). A command that fills its
    memory meets its own cgroup's limit: the kernel reclaims and OOM-kills in there alone, while this server's
    allocations are charged to the sandbox's cgroup, which still has room; and the CPU its reclaim burns is
    paid back by the agent's cgroup alone. So the server answers the host at once. Without it, the server
    waited in the same reclaim, OOM kills and CPU throttling as the bomb (CI saw 2 s pings).

    The host hands over descriptors opened for writing on the host: the kernel checks such a write against the
    opener's credentials and cgroup namespace, so it succeeds from in here though the cgroup files are
    read-only here. They are close-on-exec and never passed on: agent code cannot move a process with them.
    - cgroup v1 (`threads`: the memory and cpu hierarchies' `tasks` files): one spawner thread of this server
      joins the agent cgroup, alone of its threads, and starts every command. A child starts in its forking
      thread's cgroups, so commands are born inside at no cost per command; the server's own memory is charged
      by its main thread (v1 charges a process's memory so), which stays in the sandbox's cgroup.
    - cgroup v2 (`cgroup.procs`; its memory controller has no per-thread membership): each command's child
      joins between fork and exec. That costs a fork instead of a vfork (about 2 ms per command)."""

    ENV = "TOOLGYM_AGENT_CGROUP"
    """Where a Python kernel finds the descriptors: a trusted session (an env server) hands them to the zygote
    its agent programs fork from (envs/inside/toolgym_env.py), so those are born inside too; a kernel that
    becomes an agent's session closes them before its first cell."""

    def __init__(self) -> None:
        self.fds: tuple[int, ...] = ()
        self.spawner: ThreadPoolExecutor | None = None
        self.failed = 0

    def adopt(self, fds: list[int], threads: bool) -> None:
        """Keep the descriptors the host sends the first time; close any sent later."""
        if self.fds or not fds:
            for fd in fds:
                os.close(fd)
            return
        self.fds = tuple(fds)
        if threads:
            spawner = ThreadPoolExecutor(1, thread_name_prefix="toolgym-agent-spawner")
            if spawner.submit(self._join, 0).result():
                self.spawner = spawner
            else:  # `tasks` files cannot take the processes of spawn()'s v2 path: no agent cgroup then
                spawner.shutdown(wait=False)
                self.close()

    def close(self) -> None:
        fds, self.fds = self.fds, ()
        for fd in fds:
            os.close(fd)

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start an agent command inside the cgroup (outside it where there is none)."""
        if self.spawner is not None:
            return self.spawner.submit(CHILDREN.spawn, argv, **kwargs).result()
        if not self.fds:
            return CHILDREN.spawn(argv, **kwargs)
        return CHILDREN.spawn(argv, preexec_fn=lambda: self._join(0), **kwargs)

    def move(self, pid: int) -> None:
        """Move a Python kernel that is becoming an agent's session (before its first cell runs). On v1 this
        moves its main thread, which its memory is charged by and every later thread and child inherits from."""
        if self.fds and not self._join(pid):
            self.failed += 1

    def _join(self, pid: int) -> bool:
        """Move process (v2) or thread (v1) `pid` in; 0 is the caller. False where the kernel refused: it stays
        in the sandbox's cgroup, still bounded by the sandbox's limits."""
        ok = True
        for fd in self.fds:
            try:
                os.write(fd, str(pid).encode())
            except OSError:
                ok = False
        return ok


AGENT_CGROUP = AgentCgroup()


class Activity:
    """Commands and cells in flight: a command may claim untagged orphans only if nothing ran beside it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.seq = 0

    def begin(self) -> tuple[int, bool]:
        with self.lock:
            self.running += 1
            self.seq += 1
            return self.seq, self.running == 1

    def end(self) -> None:
        with self.lock:
            self.running -= 1

    def alone(self, token: tuple[int, bool]) -> bool:
        with self.lock:
            return token[1] and self.seq == token[0]


ACTIVITY = Activity()


# --- privileges --------------------------------------------------------------------------------------------


class Privileges:
    """Who runs as whom. The Docker backend starts the server as root with CAP_SETUID, CAP_SETGID, CAP_SETPCAP
    and CAP_KILL only; the namespace backend (as root) gives the same capabilities to uid 1000 in a user
    namespace that maps a second uid. Either way the server then runs as the sandbox uid; one thread keeps
    what starting a protected kernel needs, every other thread keeps CAP_KILL alone with an empty bounding set
    (so agent commands get no capability), and without those capabilities everything runs as the sandbox uid
    as before (trusted sessions then are only non-dumpable)."""

    def __init__(self) -> None:
        self.agent_uid = os.getuid()
        self.trusted_uid: int | None = None
        self.spawner: ThreadPoolExecutor | None = None

    def setup(self, agent_uid: int, agent_gid: int, trusted_uid: int | None) -> None:
        """Runs first, while the process has one thread."""
        if os.geteuid() == 0:
            caps.become_user(agent_uid, agent_gid)  # fails closed: the server never serves as root
        self.agent_uid = os.getuid()
        try:
            _, permitted, _ = caps.get()
            caps.put(permitted, permitted, 0)
        except OSError:
            return
        if trusted_uid is not None and trusted_uid != self.agent_uid and caps.has(caps.KERNEL_CAPS):
            spawner = ThreadPoolExecutor(
                1,
                thread_name_prefix="toolgym-kernels",
                initializer=caps.keep_only,
                initargs=(caps.KERNEL_CAPS,),
            )
            try:
                if spawner.submit(caps.has, caps.KERNEL_CAPS).result():
                    self.spawner, self.trusted_uid = spawner, trusted_uid
            except Exception:  # noqa: BLE001 - no split then; trusted kernels are only non-dumpable
                spawner.shutdown(wait=False)
        if caps.has((caps.CAP_SETPCAP,)):
            caps.drop_bounding()
        caps.keep_only((caps.CAP_KILL,))

    def spawn_kernel(self, argv: list[str], **kwargs) -> subprocess.Popen:
        if self.spawner is None:
            return CHILDREN.spawn(argv, **kwargs)

        def spawn() -> subprocess.Popen:
            with caps.Ambient(caps.KERNEL_CAPS):
                return CHILDREN.spawn([*argv, str(self.agent_uid)], user=self.trusted_uid, **kwargs)

        return self.spawner.submit(spawn).result()

    def empty_as_trusted(self, directory: str) -> None:
        """Remove what is left in `directory` after the agent's uid emptied it: what a trusted session wrote (an
        env server's lib/ files, owned by the trusted uid so agent code cannot change them). Only entries the
        agent's uid could not remove are left by then, and every agent process is dead, so nothing here is the
        agent's; the remover gets the trusted uid and no capability."""
        if self.spawner is None:
            return
        entries = [os.path.join(directory, name) for name in sorted(os.listdir(directory))]
        if not entries:
            return

        def spawn() -> subprocess.Popen:
            return CHILDREN.spawn(
                ["rm", "-rf", "--one-file-system", "--", *entries],
                user=self.trusted_uid,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        proc = self.spawner.submit(spawn).result()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        CHILDREN.done(proc)


PRIVILEGES = Privileges()


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
    limits_before = (oom_kills(), pids_refusals())
    since = boot_ticks() - 1  # what starts from here on may be the command's (in /proc's clock ticks)
    token = ACTIVITY.begin()
    try:
        try:
            proc = AGENT_CGROUP.spawn(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            return _spawn_failure(127, f"{argv[0]}: command not found\n", started)
        except PermissionError:
            return _spawn_failure(126, f"{argv[0]}: permission denied\n", started)
        except NotADirectoryError:
            return _spawn_failure(126, f"{cwd}: not a directory\n", started)
        except (BlockingIOError, MemoryError) as exc:  # EAGAIN: the pids limit is reached
            why = "process limit" if isinstance(exc, BlockingIOError) else "memory"
            return _spawn_failure(
                126, f"{argv[0]}: cannot start, the sandbox's {why} is exhausted\n", started
            )
        lower_priority(proc.pid)
        try:
            return _wait_command(
                proc, tag.encode(), since, token, stdin_data, cap, timeout, started, limits_before
            )
        finally:
            CHILDREN.done(proc)
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
    finally:
        ACTIVITY.end()


def _wait_command(proc, tag: bytes, since, token, stdin_data, cap, timeout, started, limits_before) -> dict:
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    outputs = {out_fd: bytearray(), err_fd: bytearray()}
    truncated = False
    timed_out = False
    sel = selectors.DefaultSelector()
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    stdin_fd, stdin_view = None, memoryview(stdin_data)
    if stdin_data:  # fed from this loop: no thread to start, none to fail when the pids limit is reached
        stdin_fd = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None
    deadline = started + timeout
    exited_at = None
    open_fds = set(outputs)

    def kill() -> None:
        alone = since is not None and ACTIVITY.alone(token)
        sweep(command_members(proc.pid, tag, since if alone else None), group=proc.pid)

    while open_fds:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at >= DRAIN_GRACE_S:
            break
        if not timed_out and now >= deadline:
            timed_out = True
            kill()
            deadline = time.monotonic() + DRAIN_GRACE_S
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
            if fd == stdin_fd:
                try:
                    n = os.write(fd, stdin_view[:65536])
                    stdin_view = stdin_view[n:]
                except BlockingIOError:
                    continue
                except OSError:
                    stdin_view = stdin_view[:0]
                if not stdin_view:
                    sel.unregister(fd)
                    proc.stdin.close()
                    stdin_fd = None
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
        kill()
        proc.wait()
    code = proc.returncode
    oom_before, pids_before = limits_before
    oom_after, pids_after = oom_kills(), pids_refusals()
    oom = increased(oom_before, oom_after) and code == -signal.SIGKILL and not timed_out
    if not timed_out and (
        code == -signal.SIGKILL or increased(oom_before, oom_after) or increased(pids_before, pids_after)
    ):
        # It ran into a limit (the OOM killer, the pids limit: a fork bomb that left the foreground, as
        # `b(){ b|b& }; b` does): the whole command goes, as at its timeout, background processes included.
        kill()
    return {
        "exit_code": code,
        "stdout_b64": wire.b64(bytes(outputs[out_fd])),
        "stderr_b64": wire.b64(bytes(outputs[err_fd])),
        "timed_out": timed_out,
        "oom_killed": oom,
        "truncated": truncated,
        "duration_s": time.monotonic() - started,
    }


def _spawn_failure(code: int, message: str, started: float) -> dict:
    return {
        "exit_code": code,
        "stdout_b64": "",
        "stderr_b64": wire.b64(message.encode()),
        "timed_out": False,
        "oom_killed": False,
        "truncated": False,
        "duration_s": time.monotonic() - started,
    }


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
        # For a trusted session (kernel.py): an agent's session closes them first. Only to a protected kernel: an
        # unprotected one is the agent's uid and dumpable until its first cell, so agent code could reach them.
        fds = AGENT_CGROUP.fds if PRIVILEGES.spawner is not None else ()
        if fds:
            env[AGENT_CGROUP.ENV] = ",".join(map(str, fds))
        try:
            self.proc = PRIVILEGES.spawn_kernel(
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
                pass_fds=(to_kernel_r, from_kernel_w, *fds),
                start_new_session=True,
            )
        except BaseException:
            for fd in (to_kernel_r, to_kernel_w, from_kernel_r, from_kernel_w):
                os.close(fd)
            raise
        os.close(to_kernel_r)
        os.close(from_kernel_w)
        self.requests = os.fdopen(to_kernel_w, "w", encoding="utf-8")
        self.replies_fd = from_kernel_r
        self.buffer = b""
        self.in_agent_cgroup = False

    def _read_reply(self, deadline: float) -> dict | None:
        while b"\n" not in self.buffer:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            poller = select.poll()
            poller.register(self.replies_fd, select.POLLIN)
            if not poller.poll(wait * 1000):
                return None
            chunk = os.read(self.replies_fd, 1 << 20)
            if not chunk:
                # The kernel closed its end: it is dying (an OOM kill, a crash). Its pipe closes before it is
                # a zombie, so give it a moment to become one: else the caller, polling too early, takes a
                # killed cell for one that ran past its limit.
                try:
                    self.proc.wait(timeout=INTERRUPT_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def run(self, code: str, timeout: float, cap: int) -> dict:
        with self.lock:
            ACTIVITY.begin()
            try:
                return self._run(code, timeout, cap)
            finally:
                ACTIVITY.end()

    def _run(self, code: str, timeout: float, cap: int) -> dict:
        started = time.monotonic()
        since = boot_ticks() - 1
        self.counter += 1
        if not self.trusted and not self.in_agent_cgroup:
            AGENT_CGROUP.move(self.proc.pid)
            self.in_agent_cgroup = True
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
        _signal(self.proc.pid, signal.SIGINT)
        reply = self._read_reply(time.monotonic() + INTERRUPT_GRACE_S)
        killed = sweep(cell_members(self.proc.pid, cell_tag, since))
        if reply is not None:
            # What the cell forked is dead, but only the kernel may reap its own children (their pids stay
            # taken until it does): tell it which.
            forks = [p.pid for p in killed if p.ppid == self.proc.pid]
            if forks and self._reap(forks) is None:
                reply = None
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

    def _reap(self, pids: list[int]) -> dict | None:
        try:
            self.requests.write(json.dumps({"reap": pids}) + "\n")
            self.requests.flush()
        except OSError:
            return None
        return self._read_reply(time.monotonic() + INTERRUPT_GRACE_S)

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        sweep(session_members(self.proc.pid, self.tag.encode()), group=self.proc.pid)
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


def peer_pid(conn: socket.socket) -> int | None:
    try:
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid
    except OSError:
        return None


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
        self.new_listener: socket.socket | None = None
        self.generation = 0
        self.spare: Session | None = None
        self.refused = 0
        # The event loop's state: it alone touches the selector; workers hand connections back through a pipe.
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.handed_back: collections.deque[socket.socket] = collections.deque()
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.workers_lock = threading.Lock()
        self.idle_workers = 0
        self.workers = 0
        self.stopping = False
        self.pinned = 0

    # Each request names an operation; the handlers return a dict or raise RequestError.
    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {
                "pid": os.getpid(),
                "uid": os.getuid(),
                "generation": self.generation,
                "trusted_uid": PRIVILEGES.trusted_uid,
                "refused": self.refused,
                "pinned": self.pinned,
                "agent_cgroup": bool(AGENT_CGROUP.fds),
                "agent_cgroup_failures": AGENT_CGROUP.failed,
            }
        if op == "agent_cgroup":  # its descriptors came with the request, if any: see _receive
            self.start_spare()  # held back for them (--agent-cgroup)
            return {"adopted": bool(AGENT_CGROUP.fds)}
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

    def reply(self, req: dict) -> dict:
        try:
            return {"ok": True, "result": self.handle(req)}
        except RequestError as exc:
            return {"ok": False, "error": {"type": exc.kind, "message": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - reported to the host, the server stays up
            return {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}

    def start_spare(self) -> None:
        """Start one kernel ahead of need, so the first session after a start or a reset (an episode's env
        server, in a pool) finds its interpreter already up instead of waiting ~30 ms for it."""
        with self.sessions_lock:
            if self.spare is None:
                try:
                    self.spare = Session(self.base_env, self.workspace)
                except OSError:  # no pid or memory left for it now: the next session starts its own
                    pass

    def _take_spare(self) -> Session | None:
        with self.sessions_lock:
            spare, self.spare = self.spare, None
        if spare is not None and spare.proc.poll() is not None:  # killed (by a limit): not usable
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
        me = os.getpid()
        deadline = time.monotonic() + 2.0
        while True:
            if me == 1:
                # As PID 1 of its own namespace, kill(-1) reaches every other process and never this one; the
                # kernel sends it to all of them at once, so even a fork bomb has no time to fork again.
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                # Not an init (a plain process on some host): only what this server started, never neighbours.
                sweep(tagged_members(b"TOOLGYM_TAG=", root=me))
            CHILDREN.reap_orphans()
            for session in sessions:
                session.proc.poll()  # reaps the killed kernel
            if not leftover_processes() or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        for session in sessions:
            session.close()
        CHILDREN.reap_orphans()
        remove_sysv_ipc()
        problems = []
        for directory in (self.workspace, *SCRUB_DIRS):
            if os.path.isdir(directory) and not empty_dir(directory):
                # then what the trusted uid owns, then the agent's again
                PRIVILEGES.empty_as_trusted(directory)
                if not empty_dir(directory):
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
        """A fresh listening socket at the socket path; the event loop swaps it in for the old one."""
        empty_dir(os.path.dirname(self.socket_path))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0)  # the host user may not share our uid; the folder's own mode guards access
        tmp_path = self.socket_path + ".new"
        listener.bind(tmp_path)
        os.umask(old_umask)
        listener.listen(64)
        listener.setblocking(False)
        os.rename(tmp_path, self.socket_path)  # appears only when ready to accept
        self.new_listener = listener
        self._wake()

    # --- the event loop and its workers ---

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken

    def start_workers(self, n: int = WORKERS) -> None:
        for _ in range(n):
            self._grow()

    def _grow(self) -> bool:
        try:
            threading.Thread(target=self._worker, name="toolgym-worker", daemon=True).start()
            return True
        except RuntimeError:  # can't start new thread: the pids limit is reached; queued work waits
            return False

    def serve_forever(self) -> None:
        """Accept, read requests, answer the quick ones, hand the long ones to workers: on this one thread."""
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        next_reap = 0.0
        while not self.stopping:
            self._swap_listener()
            try:
                events = self.selector.select(0.5)
            except InterruptedError:
                continue
            for key, _ in events:
                try:
                    if key.data == "wake":
                        self._drain_wake()
                    elif key.data == "listener":
                        self._accept(key.fileobj)
                    else:
                        self._readable(key.fileobj)
                except Exception:  # noqa: BLE001 - the loop must outlive anything one connection does
                    pass
            now = time.monotonic()
            if os.getpid() == 1 and now >= next_reap:
                try:
                    CHILDREN.reap_orphans(wait=False)
                except Exception:  # noqa: BLE001
                    pass
                next_reap = now + 0.5

    def _swap_listener(self) -> None:
        listener, self.new_listener = self.new_listener, None
        if listener is None:
            return
        old, self.listener = self.listener, listener
        if old is not None:
            try:
                self.selector.unregister(old)
            except (KeyError, ValueError):
                pass
            old.close()
        self.selector.register(listener, selectors.EVENT_READ, "listener")

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self.handed_back:
            conn = self.handed_back.popleft()
            try:
                self.selector.register(conn, selectors.EVENT_READ, "conn")
            except (ValueError, OSError):  # closed meanwhile
                conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not self._allowed(conn):
                self.refused += 1
                conn.close()
                continue
            conn.setblocking(True)
            self.selector.register(conn, selectors.EVENT_READ, "conn")

    def _allowed(self, conn: socket.socket) -> bool:
        """Only the host may talk to this server. As PID 1 of the sandbox's pid namespace, every process of the
        sandbox has a pid here, and the host (outside the namespace) has none: its connection reads pid 0."""
        pid = peer_pid(conn)
        if pid is None:
            return False
        return pid == 0 if os.getpid() == 1 else True

    def _readable(self, conn: socket.socket) -> None:
        req = self._receive(conn)
        if req is None:
            self._drop(conn)
            return
        if req.get("op") in WORKER_OPS:
            self.selector.unregister(conn)
            self.tasks.put((conn, req))
            with self.workers_lock:
                idle = self.idle_workers
            if idle == 0:
                self._grow()
            return
        try:
            wire.send(conn, self.reply(req))
        except OSError:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _worker(self) -> None:
        while True:
            with self.workers_lock:
                self.idle_workers += 1
            conn, req = self.tasks.get()
            with self.workers_lock:
                self.idle_workers -= 1
            try:
                self._serve(conn, req)
            except Exception:  # noqa: BLE001 - a worker must outlive anything one request does
                conn.close()

    def _serve(self, conn: socket.socket, req: dict) -> None:
        """Answer `req`, then keep serving this connection while the host sends more soon (as a thread per
        connection would, with no hand-over per request); hand it back to the loop when it goes quiet."""
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        while True:
            reply = self.reply(req)
            try:
                wire.send(conn, reply)
            except OSError:
                conn.close()
                return
            if not poller.poll(STICKY_S * 1000):
                self.handed_back.append(conn)
                self._wake()
                return
            req = self._receive(conn)
            if req is None:
                conn.close()
                return

    @staticmethod
    def _receive(conn: socket.socket) -> dict | None:
        """The next request on `conn`, None when it closed or sent garbage. Only `agent_cgroup` may carry a
        descriptor (and only the host can connect); any other that arrives is closed."""
        fds: list[int] = []
        try:
            req = wire.recv(conn, fds)
        except (wire.ConnectionClosed, OSError, ValueError):
            req = None
        if isinstance(req, dict) and req.get("op") == "agent_cgroup":
            AGENT_CGROUP.adopt(fds, bool(req.get("threads")))
        else:
            for fd in fds:
                os.close(fd)
        return req


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


MLOCK_ONFAULT = 1


def pin_memory(maps: str = "/proc/self/maps") -> int:
    """Keep the server's code in memory; returns the bytes of mappings locked.

    When a command fills the sandbox's memory, the kernel reclaims file pages before it OOM-kills anything
    (anonymous pages have nowhere to go: no swap). Unpinned, the server's own code goes first and every answer
    it gives the host waits on the disk to fault it back in (measured: pings of 0.8-2 s during a memory bomb
    on a machine with busy I/O). So lock its file mappings, executable ones first, then read-only ones, within
    RLIMIT_MEMLOCK (the default 8 MiB holds the interpreter's and libc's; no capability needed). ONFAULT:
    pages are locked as they are touched, none read in for nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "mlock2"):
        return 0
    budget, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    regions = []
    try:
        with open(maps) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 6 or not fields[5].startswith("/") or "w" in fields[1]:
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                regions.append(("x" not in fields[1], start, end - start))
    except OSError:
        return 0
    locked = 0
    for _, start, size in sorted(regions):
        if budget != resource.RLIM_INFINITY and locked + size > budget:
            continue
        if libc.mlock2(ctypes.c_void_p(start), ctypes.c_size_t(size), MLOCK_ONFAULT) == 0:
            locked += size
    return locked


def harden() -> None:
    """Non-dumpable: processes of the same uid cannot ptrace this one or open its memory."""
    caps.set_dumpable(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--workspace", default="/workspace")
    parser.add_argument("--uid", type=int, default=1000, help="the agent's uid, where started as root")
    parser.add_argument("--gid", type=int, default=1000)
    parser.add_argument("--trusted-uid", type=int, default=None, help="the uid of protected Python kernels")
    parser.add_argument(
        "--agent-cgroup",
        action="store_true",
        help="the host hands over the agent cgroup: start the spare then",
    )
    args = parser.parse_args()
    PRIVILEGES.setup(args.uid, args.gid, args.trusted_uid)  # first: the process has one thread here
    harden()
    if os.getpid() != 1:  # orphans of commands come back to us, not to the host's init
        caps.prctl(caps.PR_SET_CHILD_SUBREAPER, 1)
    os.makedirs(args.workspace, exist_ok=True)
    os.chdir(args.workspace)
    server = Server(args.socket, args.workspace)
    if os.getpid() == 1:
        # PID 1 ignores the signals it has no handler for; give the default-handled ones a no-op handler (which,
        # unlike SIG_IGN, children do not inherit) so agent code cannot stop the server with them.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, lambda *_: None)
    else:

        def stop(*_) -> None:
            server.stopping = True

        signal.signal(signal.SIGTERM, stop)
    server.listen()
    server.start_workers()
    server.pinned = pin_memory()  # after the workers: what they loaded is mapped
    if not args.agent_cgroup:
        server.start_spare()
    server.serve_forever()


if __name__ == "__main__":
    main()

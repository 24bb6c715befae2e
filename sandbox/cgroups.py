"""Host-side cgroup files: the agent cgroup that both backends make inside a sandbox's own cgroup.

A sandbox's cgroup bounds everything in it (`Limits.memory_mb`). The agent's processes (commands and agent Python
sessions) go one level down, into `agent`, bounded by `Limits.agent_memory_mb()` and by the CPU quota
(`Limits.cpus`, which only the agent's processes then pay). A command that fills its
memory then meets its own cgroup's limit: the kernel reclaims and OOM-kills in there, and the in-sandbox server,
charged to the level above with room left, answers the host meanwhile. The host opens the agent cgroup's
`tasks` (v1) or `cgroup.procs` (v2) for writing and hands the descriptors to the server (`ServerClient.adopt_agent_cgroup`; how the server uses it is
in inside/server.py, `AgentCgroup`); the cgroup files stay read-only inside.

cgroup v1 (a memory hierarchy) lets a cgroup hold processes beside children: the server stays where it is. v2
does not once a controller is enabled for its children: the server moves to a `server` leaf first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
AGENT = "agent"
SERVER = "server"  # v2 only
SERVER_CPUS = 1.0
"""How much CPU (in cores) the sandbox as a whole may use past its agent's `Limits.cpus`: the server's, and the
trusted sessions' (env servers, verifiers)."""


def unified() -> bool:
    """Whether the host runs cgroup v2 alone (else v1 controllers, as Docker's cgroupfs driver on v1 uses)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def writable(controllers: tuple[str, ...] = ("memory", "cpu")) -> bool:
    """Whether this process may make cgroups of these controllers (root, and the cgroup files writable)."""
    if os.geteuid() != 0:
        return False
    if unified():
        return os.access(CGROUP_ROOT, os.W_OK)
    return all(os.access(CGROUP_ROOT / c, os.W_OK) for c in controllers)


def write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        if path.name not in ("memory.memsw.limit_in_bytes", "memory.swap.max", "cgroup.subtree_control"):
            raise  # swap accounting may be off in the kernel; everything else must hold


def limit_memory(cgroup: Path, v2: bool, memory_mb: int) -> None:
    """Memory without swap, in bytes."""
    memory = str(memory_mb * 1024 * 1024)
    if v2:
        write(cgroup / "memory.max", memory)
        write(cgroup / "memory.swap.max", "0")
    else:
        write(cgroup / "memory.limit_in_bytes", memory)
        write(cgroup / "memory.memsw.limit_in_bytes", memory)


def make_agent(sandbox: Path, cpu_sandbox: Path | None, v2: bool, memory_mb: int, cpus: float) -> list[Path]:
    """The agent cgroup inside a sandbox's, with the agent's memory and CPU limits: one directory on v2 (under
    `sandbox`, which must hold no process by now, see `move_all`), on v1 one in the memory hierarchy and one in
    the cpu hierarchy (under `cpu_sandbox`).

    The CPU quota (`cpus`) moves to the agent's cgroup, and the sandbox's gets `SERVER_CPUS` more. A quota is
    paid back by the whole cgroup it is set on: with the server under the agent's quota, a bomb whose reclaim
    ran past it stopped the server too until the debt was paid (a server thread runnable and not run for 0.6 s
    was seen in one). The sandbox's quota stays as a bound on the trusted sessions and the whole."""
    quota, outer = int(cpus * 100000), int((cpus + SERVER_CPUS) * 100000)
    if v2:
        write(sandbox / "cgroup.subtree_control", "+memory +cpu")
        agent = sandbox / AGENT
        agent.mkdir(exist_ok=True)
        limit_memory(agent, True, memory_mb)
        write(agent / "cpu.max", f"{quota} 100000")
        write(sandbox / "cpu.max", f"{outer} 100000")
        return [agent]
    agent, cpu_agent = sandbox / AGENT, cpu_sandbox / AGENT
    agent.mkdir(exist_ok=True)
    cpu_agent.mkdir(exist_ok=True)
    limit_memory(agent, False, memory_mb)
    write(cpu_agent / "cpu.cfs_period_us", "100000")
    write(cpu_agent / "cpu.cfs_quota_us", str(quota))  # first: a child's quota may not exceed its parent's
    write(cpu_sandbox / "cpu.cfs_quota_us", str(outer))
    return [agent, cpu_agent]


def open_agent(agent: list[Path], v2: bool) -> tuple[tuple[int, ...], bool]:
    """Descriptors for moving into the agent cgroup (the kernel checks their opener's rights, ours), and whether
    they move threads: v1's `tasks` files (a server thread joins and its children are born inside), v2's
    `cgroup.procs` (each child joins; v2 keeps a process's threads in one memory cgroup)."""
    name = "cgroup.procs" if v2 else "tasks"
    return tuple(os.open(path / name, os.O_WRONLY | os.O_CLOEXEC) for path in agent), not v2


def remove(cgroup: Path, wait_s: float = 0.0) -> bool:
    """Remove a sandbox's cgroup with its agent and server leaves; whether it is gone. rmdir refuses a cgroup
    with processes in it: `wait_s` gives those still exiting time to go."""
    deadline = time.monotonic() + wait_s
    for path in (cgroup / AGENT, cgroup / SERVER, cgroup):
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
    return True


def move_all(source: Path, target: Path, tries: int = 50) -> None:
    """Move every process of `source` into `target` (v2: what forks meanwhile is moved on the next round)."""
    for _ in range(tries):
        pids = (source / "cgroup.procs").read_text().split()
        if not pids:
            return
        for pid in pids:
            try:
                (target / "cgroup.procs").write_text(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    raise OSError(f"processes kept appearing in {source}")


def cgroup_of(pid: int, controller: str) -> Path | None:
    """The directory here of the cgroup of `controller` that process `pid` is in (None where not found, or the
    root: a process there is no container's)."""
    v2 = unified()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path == "/":
            continue
        if v2 and controllers == "":
            return CGROUP_ROOT / path.lstrip("/")
        if not v2 and controller in controllers.split(","):
            return CGROUP_ROOT / controllers / path.lstrip("/")
    return None


def split_container(pid: int, memory_mb: int, cpus: float) -> tuple[tuple[int, ...], bool] | None:
    """Make the agent cgroup inside the cgroup of a container whose init is host process `pid`; the descriptors
    to hand over, or None where it cannot be made (not root, cgroups not writable here, a layout not known):
    the sandbox then works as before, with the server and the agent in one cgroup."""
    if not writable() or pid <= 0:
        return None
    container, cpu = cgroup_of(pid, "memory"), cgroup_of(pid, "cpu")
    if container is None or cpu is None or not container.is_dir() or not cpu.is_dir():
        return None
    v2 = unified()
    try:
        if v2:
            server = container / SERVER
            server.mkdir(exist_ok=True)
            move_all(container, server)
        return open_agent(make_agent(container, cpu, v2, memory_mb, cpus), v2)
    except OSError:
        return None

"""What a sandbox backend provides, and the identity of this process as the owner of its sandboxes."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from .limits import Limits

SERVER_SOCKET = "/run/toolgym/server.sock"  # where the server listens, inside every sandbox
SERVER_DIR = "/opt/toolgym"  # where the in-sandbox code is mounted, read-only
WORKSPACE = "/workspace"
SANDBOX_UID = 1000
TRUSTED_UID = 1001
"""The uid of protected Python kernels (real and saved uid; their effective uid stays SANDBOX_UID)."""
SERVER_CAPS = ("SETUID", "SETGID", "SETPCAP", "KILL")
"""All the server ever holds, and only where a backend can give a second uid (see inside/caps.py)."""
MOUNT_ROOT = "/mnt"  # read-only mounts a caller asks for land below here


def process_start_time(pid: int) -> str:
    """The kernel's start time of a process: with the pid it names one process, even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


@dataclass(frozen=True)
class Owner:
    """The process that owns sandboxes; a sandbox whose owner is gone is a leak for the reaper."""

    host: str
    pid: int
    start: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))

    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        try:
            host, pid, start = label.rsplit(":", 2)
            return cls(host, int(pid), start)
        except ValueError:
            return None

    def is_alive(self) -> bool:
        """Whether the owner still runs. An owner on another host is assumed alive (we cannot see it)."""
        if self.host != socket.gethostname():
            return True
        return process_start_time(self.pid) == self.start


def server_command(
    python: str = "python3", trusted_uid: int | None = None, agent_cgroup: bool = False
) -> list[str]:
    """How every backend starts the in-sandbox server (-E -s: no host Python settings leak in). `trusted_uid`:
    where the backend maps a second uid and gives the server the capabilities to use it. `agent_cgroup`: the
    host sends an `agent_cgroup` request once the server answers (with the descriptors, or none where it could
    not make one), and the server starts its spare Python kernel only then, so that the kernel has them."""
    cmd = [
        python,
        "-E",
        "-s",
        "-B",
        f"{SERVER_DIR}/server.py",
        "--socket",
        SERVER_SOCKET,
        "--workspace",
        WORKSPACE,
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
    ]
    if trusted_uid is not None:
        cmd += ["--trusted-uid", str(trusted_uid)]
    if agent_cgroup:
        cmd.append("--agent-cgroup")
    return cmd


def check_mounts(mounts: dict[str, str] | None) -> dict[str, str]:
    """Read-only bind mounts, host path -> sandbox path under /mnt; anything else is refused."""
    import os

    out = {}
    for host, target in (mounts or {}).items():
        host = os.path.realpath(host)
        if not os.path.exists(host):
            raise ValueError(f"mount source {host} does not exist")
        # One place for mounts on every backend: under /mnt, which the namespace backend can create them in.
        if not target.startswith(MOUNT_ROOT + "/") or ".." in target.split("/"):
            raise ValueError(f"mount target {target!r} must be a path under {MOUNT_ROOT}/ (e.g. /mnt/envs)")
        out[host] = target
    return out


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Handle:
    """A started sandbox as its backend knows it."""

    id: str
    backend: str
    socket_path: str
    host_dir: str
    """A host folder private to this sandbox (its socket lives there); removed with the sandbox."""
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str
    agent_cgroup: bool
    """Whether sandboxes put the agent's processes in a cgroup of their own where the host can make one (see
    cgroups.py). True; False only to measure what it buys (bench/sandbox.py)."""

    def start(
        self,
        limits: Limits,
        run_id: str,
        mounts: dict[str, str] | None = None,
        requirements: frozenset[str] = frozenset(),
    ) -> Handle:
        """Start a sandbox and return once its server answers. `mounts`: host path -> sandbox path, read-only.
        `requirements`: hashes of prepared requirement sets, each read-only at requirements.site_path(h)."""
        ...

    def stop(self, handle: Handle) -> None:
        """Remove the sandbox and everything it held. Safe to call twice."""
        ...

    def oom_kills(self, handle: Handle) -> int | None:
        """The host-side OOM-kill counter of the sandbox, where the server cannot read its own; else None."""
        ...

"""Resource limits of one sandbox: what every backend enforces and every command inherits."""

from __future__ import annotations

from dataclasses import dataclass

SHM_MB = 16
"""Size of /dev/shm in every sandbox (less below 128 MB of memory)."""


@dataclass(frozen=True)
class Limits:
    """Limits for one sandbox. Every backend applies all of them (see the README for the namespace backend's gaps)."""

    memory_mb: int = 512
    """Memory for everything in the sandbox, tmpfs contents included; no swap. The agent's processes get
    `agent_memory_mb()` of it."""
    cpus: float = 1.0
    """CPU share, in cores. Where the agent cgroup exists (sandbox/cgroups.py) it is the agent's processes'
    quota, and the sandbox as a whole, with its server and trusted sessions, may use a core more."""
    pids: int = 256
    """Most processes and threads alive at once (stops fork bombs)."""
    timeout_s: float = 10.0
    """Default wall-clock limit of one command; a command's whole process tree is killed past it."""
    cell_timeout_s: float = 120.0
    """Default wall-clock limit of one Python cell (the DeepSeek-V3.2 code-interpreter prompt uses 120 s)."""
    output_bytes: int = 1 << 20
    """Most bytes kept of each of stdout and stderr; more sets `truncated`."""
    workspace_mb: int = 256
    """Most size of the /workspace tmpfs (see `scratch_mb`)."""
    tmp_mb: int = 64
    """Most size of the /tmp tmpfs (see `scratch_mb`)."""
    network: bool = False
    """Whether the sandbox may reach any network at all."""

    def scratch_mb(self) -> tuple[int, int, int]:
        """The sizes (MB) the backends give /workspace, /tmp and /dev/shm. Their contents are memory (charged to
        the sandbox's memory limit where a cgroup holds it), so /workspace and /tmp shrink in proportion until,
        with /dev/shm, they leave a quarter of `memory_mb` (at least 48 MB) for the server and the commands:
        filling every scratch file system then still leaves a sandbox that answers."""
        shm = min(SHM_MB, self.memory_mb // 8)
        budget = max(self.memory_mb - max(48, self.memory_mb // 4) - shm, 2)
        workspace, tmp = self.workspace_mb, self.tmp_mb
        if workspace + tmp > budget:
            scale = budget / (workspace + tmp)
            workspace, tmp = max(int(workspace * scale), 1), max(int(tmp * scale), 1)
        return workspace, tmp, shm

    def agent_memory_mb(self) -> int:
        """The memory of the agent's processes (commands, agent Python sessions and what they fork), in a cgroup
        of their own inside the sandbox's where the backend can make one (as root; see sandbox/cgroups.py). The
        rest, an eighth of `memory_mb` (at least 48 MB, at most half), is the in-sandbox server's and the trusted
        sessions': an agent that fills its memory meets its own limit, and the server never waits on it."""
        return self.memory_mb - min(max(48, self.memory_mb // 8), self.memory_mb // 2)

    def validate(self) -> Limits:
        for name in ("memory_mb", "pids", "output_bytes", "workspace_mb", "tmp_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        for name in ("cpus", "timeout_s", "cell_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        if self.memory_mb < 32:
            raise ValueError("Limits.memory_mb below 32 cannot start a Python process; use at least 64")
        return self

"""A sandbox as users see it: run commands, move files, hold stateful Python sessions; and `open_sandbox`."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable

from .backend import Backend, Handle, new_run_id
from .client import ServerClient
from .errors import SandboxError, SandboxUnavailable
from .inside import wire
from .limits import Limits
from .requirements import check_hashes
from .results import CellError, CellResult, RunResult

# Extra seconds the host waits beyond a command's own timeout before it calls the sandbox dead.
TRANSPORT_GRACE_S = 15.0


class PythonSession:
    """A stateful Python session inside a sandbox: globals persist across cells, like a notebook kernel."""

    def __init__(self, sandbox: Sandbox, session_id: str, trusted: bool = False) -> None:
        self.sandbox = sandbox
        self.id = session_id
        self.trusted = trusted

    def run(self, code: str, timeout_s: float | None = None) -> CellResult:
        """Run one cell. Past `timeout_s` the cell is interrupted and the session stays usable."""
        timeout = timeout_s or self.sandbox.limits.cell_timeout_s
        if not self.trusted:
            self.sandbox.tainted = True
        r = self.sandbox.client.call(
            "py_run",
            timeout=timeout + TRANSPORT_GRACE_S,
            session=self.id,
            code=code,
            timeout_s=timeout,
            max_output=self.sandbox.limits.output_bytes,
        )
        err = r.get("error")
        return CellResult(
            stdout=r["stdout"],
            stderr=r["stderr"],
            result=r.get("result"),
            error=CellError(err["type"], err["message"], err.get("traceback", "")) if err else None,
            timed_out=r.get("timed_out", False),
            restarted=r.get("restarted", False),
            truncated=r.get("truncated", False),
            duration_s=r["duration_s"],
        )

    async def arun(self, code: str, timeout_s: float | None = None) -> CellResult:
        return await asyncio.to_thread(self.run, code, timeout_s)

    def close(self) -> None:
        self.sandbox.client.call("py_close", session=self.id)

    def __enter__(self) -> PythonSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Sandbox:
    """One isolated sandbox. Use as a context manager, or call close()."""

    def __init__(
        self,
        backend: Backend,
        handle: Handle,
        limits: Limits,
        run_id: str,
        requirements: frozenset[str] = frozenset(),
    ) -> None:
        self.backend = backend
        self.handle = handle
        self.limits = limits
        self.run_id = run_id
        self.requirements = requirements
        """Hashes of the requirement sets this sandbox holds, each importable at requirements.site_path(h)."""
        self.client = ServerClient(handle.socket_path, handle.extra.get("server_pid"))
        self.tainted = False
        """Agent code ran here since the last reset (commands or Python cells)."""
        self.closed = False
        self._close_lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.handle.id

    def run(
        self,
        cmd: list[str] | str,
        *,
        timeout_s: float | None = None,
        stdin: bytes | str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> RunResult:
        """Run a command (an argv list, or a string for /bin/sh -c) and wait for it, at most `timeout_s`."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        timeout = timeout_s or self.limits.timeout_s
        if isinstance(stdin, str):
            stdin = stdin.encode()
        self.tainted = True
        before = self.backend.oom_kills(self.handle)
        r = self.client.call(
            "run",
            timeout=timeout + TRANSPORT_GRACE_S,
            argv=argv,
            timeout_s=timeout,
            env=env or {},
            cwd=cwd,
            stdin_b64=wire.b64(stdin) if stdin else None,
            max_output=self.limits.output_bytes,
        )
        oom = r["oom_killed"]
        if before is not None:
            after = self.backend.oom_kills(self.handle)
            oom = oom or (
                after is not None and after > before and r["exit_code"] == -9 and not r["timed_out"]
            )
        return RunResult(
            exit_code=r["exit_code"],
            stdout_bytes=wire.unb64(r["stdout_b64"]),
            stderr_bytes=wire.unb64(r["stderr_b64"]),
            timed_out=r["timed_out"],
            oom_killed=oom,
            truncated=r["truncated"],
            duration_s=r["duration_s"],
        )

    async def arun(self, cmd: list[str] | str, **kwargs) -> RunResult:
        return await asyncio.to_thread(self.run, cmd, **kwargs)

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write a file inside /workspace (relative paths start there); anything outside is refused."""
        if isinstance(data, str):
            data = data.encode()
        self.client.call("write_file", path=path, data_b64=wire.b64(data), mode=mode)

    def read_file(self, path: str) -> bytes:
        """Read a file inside /workspace."""
        return wire.unb64(self.client.call("read_file", path=path)["data_b64"])

    def python(self, *, trusted: bool = False) -> PythonSession:
        """Open a new stateful Python session. `trusted=True` is for toolgym's own code (an env server), whose
        cells do not count as agent code for the pool's "auto" recycling."""
        return PythonSession(self, self.client.call("py_open", trusted=trusted)["session"], trusted=trusted)

    def ping(self) -> float:
        """Round-trip seconds to the in-sandbox server (raises SandboxDied if it does not answer)."""
        started = time.perf_counter()
        self.client.call("ping", timeout=5.0)
        return time.perf_counter() - started

    def processes(self) -> list[dict]:
        """The processes running inside the sandbox (pid, ppid, state, cmd)."""
        return self.client.call("processes")["processes"]

    def reset(self) -> None:
        """Kill every process the episode left, empty /workspace, /tmp and IPC, and verify it; else raise."""
        r = self.client.call("reset", timeout=30.0)
        self.client.drop_connections()
        if not r["clean"]:
            raise SandboxError("the sandbox did not come back clean: " + "; ".join(r["problems"]))
        self.tainted = False

    def close(self) -> None:
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        self.client.close()
        self.backend.stop(self.handle)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox({self.backend.name}:{self.id})"


_backends: dict[tuple[str, str | None], Backend] = {}
_backends_lock = threading.Lock()


def _forget_backends_in_child() -> None:
    """A forked child makes its own backends: a Docker backend holds the parent's engine connection (see
    engine._forget_client_in_child), and a lock another thread held at the fork would stay held here."""
    global _backends_lock
    _backends.clear()
    _backends_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_backends_in_child)


def get_backend(name: str = "auto", image: str | None = None) -> Backend:
    """The backend called `name` ("docker", "namespace", or "auto": Docker when its engine answers)."""
    with _backends_lock:
        key = (name, image)
        if key in _backends:
            return _backends[key]
        if name == "auto":
            from .engine import engine_answers

            name = "docker" if engine_answers() else "namespace"
            try:
                backend = get_backend_uncached(name, image)
            except SandboxUnavailable as exc:
                if name == "docker":
                    raise
                raise SandboxUnavailable(
                    "No sandbox backend works here: no Docker engine answers, and the namespace backend says: "
                    f"{exc}"
                ) from None
        else:
            backend = get_backend_uncached(name, image)
        _backends[key] = backend
        return backend


def get_backend_uncached(name: str, image: str | None) -> Backend:
    if name == "docker":
        from .docker_backend import DockerBackend

        return DockerBackend(image)
    if name == "namespace":
        from .namespace_backend import NamespaceBackend

        return NamespaceBackend()
    raise ValueError(f"unknown sandbox backend {name!r}; use 'docker', 'namespace' or 'auto'")


def open_sandbox(
    backend: str | Backend = "auto",
    limits: Limits | None = None,
    *,
    image: str | None = None,
    run_id: str | None = None,
    mounts: dict[str, str] | None = None,
    requirements: Iterable[str] = (),
) -> Sandbox:
    """Start one sandbox. `with open_sandbox() as sb: sb.run(...)` removes it at the end of the block.

    `mounts` maps host paths to sandbox paths under /mnt, bound read-only (an env store, a data set).
    `requirements`: hashes of prepared requirement sets (requirements.prepare), each read-only at
    requirements.site_path(h); on Docker the first sandbox of a set builds its derived image, offline."""
    limits = (limits or Limits()).validate()
    impl = get_backend(backend, image) if isinstance(backend, str) else backend
    run_id = run_id or RUN_ID
    sets = check_hashes(requirements)
    # Without sets the backend is called as before, so a backend that knows nothing of them still works.
    handle = impl.start(limits, run_id, mounts, sets) if sets else impl.start(limits, run_id, mounts)
    return Sandbox(impl, handle, limits, run_id, sets)


RUN_ID = new_run_id()
"""The run this process belongs to unless told otherwise; it labels every sandbox it starts."""

"""`EnvLease`: where episodes run. The one place that turns (an environment, a pool | a sandbox | a backend to
open one on | trusted in-process) into the env-server operations an episode needs.

It owns the sandbox an episode runs in, its taint (agent code ran there), what happens to it between episodes
and when the environment changes, and the env server loaded in it. `ToolEnv` keeps only the episode; a rollout
worker keeps one lease across environments and the lease decides whether a switch may keep the sandbox.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

from toolgym.sandbox import BlockingSandboxPool, Limits, Sandbox, SandboxPool, open_sandbox
from toolgym.sandbox.backend import Backend

from .inside.envserver import FILE_CATEGORIES
from .runtime import (
    EnvRuntimeError,
    EnvServerHandle,
    EnvServerOps,
    LocalEnvServer,
    mounted_path,
    sandbox_mounts,
)
from .spec import EnvSpec

TRANSPORTS = ("auto", "mount", "push")
BY_NAME = "in-process env servers are chosen with backend=toolgym.envs.IN_PROCESS, for trusted actions only"


class InProcess:
    """Run env servers in this process, with no sandbox: tools run with this process's rights. Only for trusted
    actions (reference solutions, toolgym's own baselines and admission), never a model's: a type rather than a
    backend name so that choosing it is always explicit (`toolgym.envs.IN_PROCESS`)."""

    def __repr__(self) -> str:
        return "IN_PROCESS"


IN_PROCESS = InProcess()


def runs_agent_code(spec: EnvSpec) -> bool:
    """Agent code runs in the sandbox (code, code_interpreter): the env store must not be visible to it, and the
    sandbox is tainted once a tool runs."""
    return spec.category in FILE_CATEGORIES


def _others_can_read(env_dir: Path, mount_root: Path | None = None) -> bool:
    """Whether users other than the owner can read the env folder's files, and pass through every folder from
    the mounted store's root down to it (what the sandbox user needs of a read-only mount)."""
    env_dir = env_dir.resolve()
    folders = []
    if mount_root is not None:
        mount_root = mount_root.resolve()
        folders = [mount_root, *(p for p in env_dir.parents if mount_root in p.parents)]
    if any(not p.stat().st_mode & 0o001 for p in folders):
        return False
    paths = [env_dir, *env_dir.rglob("*")]
    return all(p.stat().st_mode & (0o005 if p.is_dir() else 0o004) for p in paths)


def requirement_sets(spec: EnvSpec) -> tuple[str, ...]:
    """The requirement sets (hashes) a sandbox must hold to serve the environment: none, or its one set."""
    if not spec.requirements:
        return ()
    from toolgym.sandbox.requirements import requirements_hash

    return (requirements_hash(spec.requirements),)


def _mount_root(env_dir: Path, mounts: dict[str, str]) -> Path | None:
    env_dir = env_dir.resolve()
    for host in mounts:
        root = Path(host).resolve()
        if env_dir == root or root in env_dir.parents:
            return root
    return None


def _host_paths(env_dir: Path, spec: EnvSpec) -> list[str]:
    """For an in-process server: the host's prepared site folders of the environment's requirements."""
    if not spec.requirements:
        return []
    from .schema import host_requirement_paths

    found = host_requirement_paths(env_dir)
    if not found:
        raise EnvRuntimeError(
            f"{spec.id} needs its requirements ({', '.join(spec.requirements)}), not prepared on this host: run "
            f"`toolgym sandbox build-image --with {env_dir}`"
        )
    return [str(p) for p in found]


class EnvLease:
    """Sandboxes (or in-process servers) for the episodes of one or more environments.

    Give exactly one source: `pool=` (a SandboxPool for `aopen`, a BlockingSandboxPool for `open`), `sandbox=`
    (yours; the lease resets it after agent code ran and never closes it), or `backend=` (a backend name or
    object to open its own sandbox on, default "auto"; or `IN_PROCESS`). `transport`: "push" sends the
    environment's files into the sandbox, "mount" reads them from a mounted store, "auto" mounts where the
    store is mounted and the agent runs no code (general, search), and pushes otherwise.

    Between episodes a sandbox where agent code ran is never used as is: a pooled one goes back to its pool
    (which resets or replaces it) and a new one is leased; a given or owned one gets a verified reset."""

    def __init__(
        self,
        *,
        backend: str | Backend | InProcess = "auto",
        pool: SandboxPool | BlockingSandboxPool | None = None,
        sandbox: Sandbox | None = None,
        limits: Limits | None = None,
        transport: str = "auto",
    ) -> None:
        if backend == "inprocess":
            raise ValueError(BY_NAME)
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be 'auto', 'mount' or 'push', not {transport!r}")
        if pool is not None and sandbox is not None:
            raise ValueError("give a lease a pool or a sandbox, not both")
        if isinstance(backend, InProcess) and (pool is not None or sandbox is not None):
            raise ValueError("IN_PROCESS runs no sandbox; do not give it a pool or a sandbox")
        self.backend = backend
        self.pool = pool
        self.limits = limits or Limits(memory_mb=512, timeout_s=30)
        self.transport = transport
        self._given = sandbox
        self._sandbox: Sandbox | None = None
        self._server: EnvServerOps | None = None
        self._env_dir: Path | None = None
        self._env_runs_code = False
        self._broken = False

    # -- what runs where ---------------------------------------------------------------------------------
    @property
    def in_process(self) -> bool:
        return isinstance(self.backend, InProcess)

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox the current episode runs in (None in-process or before the first `open`)."""
        return self._sandbox

    @property
    def server(self) -> EnvServerOps | None:
        return self._server

    def _mounts(self, env_dir: Path, spec: EnvSpec) -> dict[str, str]:
        """Mounts for a sandbox this lease opens itself, fixed by the first environment it serves."""
        if self.transport == "push" or (self.transport == "auto" and runs_agent_code(spec)):
            return {}
        return sandbox_mounts([env_dir.parent])

    def _sandbox_mounts(self, env_dir: Path, spec: EnvSpec) -> dict[str, str]:
        if self.pool is not None:
            inner = self.pool.pool if isinstance(self.pool, BlockingSandboxPool) else self.pool
            return inner.mounts or {}
        return self._mounts(env_dir, spec) if self._given is None else {}

    def _env_path(self, env_dir: Path, spec: EnvSpec) -> str | None:
        """Where the env folder is mounted in the sandbox, or None to push its files."""
        mounts = self._sandbox_mounts(env_dir, spec)
        path = mounted_path(env_dir, mounts)
        if self.transport == "mount" and path is None:
            raise EnvRuntimeError(
                f"the environment {env_dir} is in no store mounted in the sandbox; create the pool with "
                f"mounts=toolgym.envs.sandbox_mounts([{str(env_dir.parent)!r}]) or use transport='push'"
            )
        if runs_agent_code(spec) and mounts:
            warnings.warn(
                f"{spec.id} runs agent code in sandboxes that mount an env store: the agent can read its "
                "verify.py and tasks; use a pool without mounts for code and code_interpreter environments",
                stacklevel=4,
            )
        if self.transport == "push" or (self.transport == "auto" and runs_agent_code(spec)):
            return None
        if path is not None and not _others_can_read(env_dir, _mount_root(env_dir, mounts)):
            # The sandbox user (uid 1000) reads the mount; a private store can only be pushed.
            if self.transport == "mount":
                raise EnvRuntimeError(
                    f"the sandbox user cannot read {env_dir} through the mounted store; run "
                    f"`chmod -R a+rX {_mount_root(env_dir, mounts)}` or use transport='push'"
                )
            return None
        return path

    def _keeps_sandbox(self, env_dir: Path, spec: EnvSpec) -> bool:
        """Whether the next episode (of `env_dir`) may run in the current sandbox as it is: only where no agent
        code ran there, and, on a switch of environment, where neither environment runs agent code (so nothing
        in the sandbox was ever untrusted, and no file of one can reach the agent of another)."""
        sb = self._sandbox
        if sb is None or sb.closed or sb.tainted or self._broken:
            return False
        if (
            not set(requirement_sets(spec)) <= getattr(sb, "requirements", frozenset())
            and self._given is None
        ):
            return (
                False  # a sandbox of its own is opened again with them (a given one is refused when served)
            )
        if self._env_dir is None or self._env_dir == env_dir:
            return True
        return not (self._env_runs_code or runs_agent_code(spec))

    def _serve(self, env_dir: Path, spec: EnvSpec) -> EnvServerOps:
        """The env server of `env_dir` in the current sandbox: kept, loaded in place of another environment's,
        or started."""
        timeout = spec.limits.call_timeout_s
        if self.in_process:
            if self._server is None or self._env_dir != env_dir:
                self._drop_server()
                self._server = LocalEnvServer(env_dir, timeout, paths=_host_paths(env_dir, spec))
            self._env_dir, self._env_runs_code = env_dir, runs_agent_code(spec)
            return self._server
        paths = self._site_paths(spec)
        if self._server is None:
            self._server = EnvServerHandle(
                self._sandbox, env_dir, self._env_path(env_dir, spec), timeout, paths=paths
            )
        elif self._env_dir != env_dir:
            self._server.load(env_dir, self._env_path(env_dir, spec), timeout, paths=paths)
        self._env_dir, self._env_runs_code = env_dir, runs_agent_code(spec)
        return self._server

    def _site_paths(self, spec: EnvSpec) -> list[str]:
        """Where the environment's requirements are installed in the current sandbox; a sandbox without them
        is refused before the episode starts."""
        needed = requirement_sets(spec)
        if not needed:
            return []
        from toolgym.sandbox.requirements import site_path

        held = getattr(self._sandbox, "requirements", frozenset())
        missing = [h for h in needed if h not in held]
        if missing:
            raise EnvRuntimeError(
                f"{spec.id} needs its requirements ({', '.join(spec.requirements)}; set {missing[0]}) in the "
                "sandbox, which has not got them: run `toolgym sandbox build-image --with <env folder or "
                "store>` once, and open the pool or sandbox with requirements="
                f"toolgym.envs.requirement_sets(spec) (rollouts do it for you)"
            )
        return [site_path(h) for h in needed]

    def _drop_server(self, close: bool = True) -> None:
        """Forget the env server; `close=False` when its sandbox is about to be reset or handed back (that ends
        it anyway)."""
        if self._server is not None and close:
            try:
                self._server.close()
            except Exception:  # noqa: BLE001 - a server that died cannot be closed twice
                pass
        self._server = None
        self._env_dir = None

    # -- episodes, synchronously -------------------------------------------------------------------------
    def open(self, env_dir: Path, spec: EnvSpec) -> EnvServerOps:
        """The env server for the next episode of `env_dir`, in a sandbox fit for it."""
        if not self.in_process and not self._keeps_sandbox(env_dir, spec):
            self._replace_sync(env_dir, spec)
        return self._serve(env_dir, spec)

    def _replace_sync(self, env_dir: Path, spec: EnvSpec) -> None:
        if isinstance(self.pool, SandboxPool):
            raise TypeError(
                "an EnvLease on an asyncio SandboxPool is used with `await aopen(...)` (ToolEnv.areset); "
                "use a BlockingSandboxPool for reset()"
            )
        sb = self._sandbox
        self._drop_server(close=sb is None or not (sb.tainted or self._broken))
        if isinstance(self.pool, BlockingSandboxPool):
            if sb is not None:
                self._sandbox = None
                self.pool.release(sb, broken=self._broken)
            self._sandbox = self.pool.acquire()
        elif (
            sb is not None
            and not sb.closed
            and set(requirement_sets(spec)) <= getattr(sb, "requirements", set())
        ):
            sb.reset()  # a verified reset: every process killed, scratch folders emptied
        else:
            if sb is not None and not sb.closed and self._given is None:
                sb.close()  # it lacks the requirements of the next environment
            self._sandbox = self._given or open_sandbox(
                self.backend,
                self.limits,
                mounts=self._mounts(env_dir, spec),
                **({"requirements": requirement_sets(spec)} if spec.requirements else {}),
            )
        self._broken = False

    def release(self) -> None:
        """Hand a pooled sandbox back (the pool recycles it); keep a given or owned one."""
        if isinstance(self.pool, BlockingSandboxPool) and self._sandbox is not None:
            sb, self._sandbox = self._sandbox, None
            self._drop_server(close=False)
            self.pool.release(sb, broken=self._broken)
            self._broken = False

    def close(self) -> None:
        """Release everything: the env server, a pooled sandbox, a sandbox this lease opened."""
        self.release()
        self._drop_server()
        if self._sandbox is not None and self._given is None and self.pool is None:
            self._sandbox.close()
        self._sandbox = None

    # -- episodes, on an event loop ----------------------------------------------------------------------
    async def aopen(self, env_dir: Path, spec: EnvSpec) -> EnvServerOps:
        if isinstance(self.pool, SandboxPool) and not self._keeps_sandbox(env_dir, spec):
            await self.arelease()
            self._sandbox = await self.pool.acquire()
            return await asyncio.to_thread(self._serve, env_dir, spec)
        return await asyncio.to_thread(self.open, env_dir, spec)

    async def arelease(self) -> None:
        if isinstance(self.pool, SandboxPool) and self._sandbox is not None:
            sb, self._sandbox = self._sandbox, None
            self._drop_server(close=False)
            await self.pool.release(sb, broken=self._broken)
            self._broken = False
        else:
            await asyncio.to_thread(self.release)

    async def aclose(self) -> None:
        await self.arelease()
        await asyncio.to_thread(self.close)

    # -- what the episode tells the lease ----------------------------------------------------------------
    def agent_code_runs(self) -> None:
        """Tools of an environment that runs agent code are about to run: the sandbox is tainted from now on."""
        if self._env_runs_code and self._sandbox is not None:
            self._sandbox.tainted = True

    def server_failed(self) -> None:
        """The env server died mid-episode: drop it; the sandbox is replaced (or reset) before the next one."""
        self._drop_server()
        self._broken = self._sandbox is not None

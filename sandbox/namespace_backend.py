"""The namespace backend, for hosts without Docker: bubblewrap namespaces plus cgroup (or rlimit) limits.

Same server, same interface as the Docker backend. Its root is the image recipe's root file system from the
cache when built (else the host's own /usr, /lib and /etc, read-only). Requirement sets are their prepared host
folders bound read-only at requirements.site_path(h). Weaker than Docker in ways the README
lists: no seccomp filter, and without writable cgroups only per-process rlimits bound memory and no pids limit.

As root it prepares the user namespace itself, mapping a second uid (TRUSTED_UID) beside the sandbox uid, and
gives the server the capabilities to use it, as the Docker backend does: trusted Python kernels then run under
it, out of reach of agent code (inside/caps.py). Without root a user namespace maps one uid only, and trusted
sessions are protected by being non-dumpable alone (agent code could still signal them).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroups, reaper
from .backend import (
    MOUNT_ROOT,
    SANDBOX_UID,
    SERVER_CAPS,
    SERVER_DIR,
    TRUSTED_UID,
    WORKSPACE,
    Handle,
    Owner,
    check_mounts,
    server_command,
)
from .cgroups import CGROUP_ROOT
from .client import wait_for_server
from .errors import SandboxDied, SandboxUnavailable
from .image import reqs_mount_point, rootfs_dir, rootfs_ready
from .limits import Limits
from .paths import lock_sandbox_dir, new_sandbox_dir, remove_sandbox_dir
from .requirements import REQS_ROOT, require_prepared, site_path

INSIDE = Path(__file__).resolve().parent / "inside"
HOST_ROOT_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc")

# bwrap's --die-with-parent ties each sandbox to the *thread* that spawned it, so all spawns happen on one
# thread that lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toolgym-bwrap")


class Cgroup:
    """A cgroup (v1 controllers or v2 unified) that bounds one sandbox's memory, pids and CPU, with the agent
    cgroup inside it (see cgroups.py). On v2 the server starts in a `server` leaf beside `agent`."""

    def __init__(self, name: str, limits: Limits, agent: bool = True) -> None:
        self.paths: list[Path] = []
        self.v2 = cgroups.unified()
        if self.v2:
            parent = CGROUP_ROOT / "toolgym"
            parent.mkdir(exist_ok=True)
            for scope in (CGROUP_ROOT, parent):
                cgroups.write(scope / "cgroup.subtree_control", "+memory +pids +cpu")
            path = parent / name
            path.mkdir()
            self.paths = [path]
            cgroups.limit_memory(path, True, limits.memory_mb)
            cgroups.write(path / "pids.max", str(limits.pids))
            cgroups.write(path / "cpu.max", f"{int(limits.cpus * 100000)} 100000")
            self.joined = [path / cgroups.SERVER]
            self.joined[0].mkdir()
        else:
            for controller in ("memory", "pids", "cpu"):
                path = CGROUP_ROOT / controller / "toolgym" / name
                path.mkdir(parents=True)
                self.paths.append(path)
            mem, pids, cpu = self.paths
            cgroups.limit_memory(mem, False, limits.memory_mb)
            cgroups.write(pids / "pids.max", str(limits.pids))
            cgroups.write(cpu / "cpu.cfs_period_us", "100000")
            cgroups.write(cpu / "cpu.cfs_quota_us", str(int(limits.cpus * 100000)))
            self.joined = self.paths
        # Without an agent cgroup the agent shares the sandbox's cgroup with the server.
        self.agent: list[Path] | None = None
        if not agent:
            return
        try:
            self.agent = cgroups.make_agent(
                self.paths[0],
                None if self.v2 else self.paths[2],
                self.v2,
                limits.agent_memory_mb(),
                limits.cpus,
            )
        except OSError:
            pass

    @staticmethod
    def available() -> bool:
        return cgroups.writable(("memory", "pids", "cpu"))

    @staticmethod
    def sweep_stale(min_age_s: float = 60.0) -> int:
        """Remove the cgroups of sandboxes whose owner died without stopping them (killed): with their agent
        and server leaves they would pile up. Only an empty cgroup goes (rmdir refuses any other), only one
        whose owner pid is gone, and only one older than `min_age_s`: a live owner in another pid namespace
        fills its cgroup within moments of making it. Returns how many went."""
        if cgroups.unified():
            parents = [CGROUP_ROOT / "toolgym"]
        else:
            parents = [CGROUP_ROOT / c / "toolgym" for c in ("memory", "pids", "cpu")]
        removed, now = 0, time.time()
        for parent in parents:
            try:
                entries = [p for p in parent.iterdir() if p.is_dir()]
            except OSError:
                continue
            for path in entries:
                owner = path.name.partition("-")[0]
                if not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
                    continue
                try:
                    young = now - path.stat().st_mtime < min_age_s
                except OSError:
                    continue
                if not young and cgroups.remove(path):  # not removed: processes still in it, not stale
                    removed += 1
        return removed

    def join(self) -> None:
        """Move the calling process in (runs in the child between fork and exec)."""
        pid = str(os.getpid())
        for path in self.joined:
            with open(path / "cgroup.procs", "w") as f:
                f.write(pid)

    def oom_kills(self) -> int | None:
        """The sandbox's OOM kills, the agent cgroup's included (v2 counts a child's, v1 does not)."""
        if self.v2:
            return _oom_kill_count(self.paths[0] / "memory.events")
        counts = [
            _oom_kill_count(path / "memory.oom_control") for path in self.paths[:1] + (self.agent or [])[:1]
        ]
        return None if counts[0] is None else sum(c or 0 for c in counts)

    def remove(self) -> None:
        for path in self.paths:
            cgroups.remove(path, wait_s=1.0)  # processes may still be exiting


def _oom_kill_count(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except OSError:
        pass
    return None


def user_namespace() -> int | None:
    """As root: an fd of a new user namespace that maps SANDBOX_UID to us (as bwrap's own mapping does) and
    TRUSTED_UID to a uid of its own; bwrap joins it with --userns. None where we may not (not root)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    helper = subprocess.Popen(
        ["unshare", "--user", "--", "sh", "-c", "echo; exec cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not helper.stdout.readline():
            return None
        with open(f"/proc/{helper.pid}/uid_map", "w") as f:
            f.write(f"{SANDBOX_UID} {os.geteuid()} 1\n{TRUSTED_UID} {TRUSTED_UID} 1\n")
        with open(f"/proc/{helper.pid}/gid_map", "w") as f:
            f.write(f"{SANDBOX_UID} {os.getegid()} 1\n")
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY)  # keeps the namespace after the helper
    except OSError:
        return None
    finally:
        helper.kill()
        helper.wait()


def _bwrap_knows(bwrap: str, option: str) -> bool:
    try:
        return option in subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False


class NamespaceBackend:
    name = "namespace"

    def __init__(self) -> None:
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap is missing: install it (`apt-get install -y bubblewrap`) or start a Docker engine."
            )
        self.use_cgroups = Cgroup.available()
        self.agent_cgroup = True
        if self.use_cgroups:
            Cgroup.sweep_stale()
        self.owner = Owner.me()
        self.split_uids = os.geteuid() == 0 and _bwrap_knows(self.bwrap, "--userns")
        if self.split_uids and rootfs_ready() and rootfs_dir().stat().st_mode & 0o777 != 0o755:
            rootfs_dir().chmod(0o755)  # built 0700 by older versions: the trusted uid must reach into `/`

    def _command(
        self,
        limits: Limits,
        host_dir: Path,
        mounts: dict[str, str],
        userns: int | None,
        cgroup: Cgroup | None = None,
        requirements: frozenset[str] = frozenset(),
    ) -> list[str]:
        if userns is None:
            unshare = ["--unshare-all"] + (["--share-net"] if limits.network else [])
        else:
            unshare = ["--userns", str(userns), "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
            unshare += ["--unshare-cgroup-try"] + ([] if limits.network else ["--unshare-net"])
        workspace_mb, tmp_mb, shm_mb = limits.scratch_mb()
        cmd = [
            self.bwrap,
            *unshare,
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            "sandbox",
        ]
        if rootfs_ready():
            cmd += ["--ro-bind", str(rootfs_dir()), "/"]
        else:
            for d in HOST_ROOT_DIRS:
                if os.path.exists(d):
                    cmd += ["--ro-bind", d, d]
        if requirements:
            # As for mounts below: mount points in a fresh tmpfs, then read-only like the sets themselves.
            cmd += ["--tmpfs", REQS_ROOT]
            for h in sorted(requirements):
                cmd += ["--ro-bind", str(require_prepared(h)), site_path(h)]
            cmd += ["--remount-ro", REQS_ROOT]
        if mounts:
            # The root is read-only, so mount points are made in a fresh tmpfs that is then made read-only too.
            cmd += ["--tmpfs", MOUNT_ROOT]
            for host, target in mounts.items():
                cmd += ["--ro-bind", host, target]
            cmd += ["--remount-ro", MOUNT_ROOT]
        if cgroup is not None:
            # Its own cgroup's files, read-only where the server looks for them (as in a Docker container): the
            # counters of OOM kills and of forks refused at the pids limit.
            cmd += ["--tmpfs", "/sys"]
            if cgroup.v2:
                cmd += ["--ro-bind", str(cgroup.paths[0]), "/sys/fs/cgroup"]
            else:
                for path in cgroup.paths:
                    cmd += ["--ro-bind", str(path), f"/sys/fs/cgroup/{path.parent.parent.name}"]
            cmd += ["--remount-ro", "/sys"]
        cmd += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # bwrap's /dev is a tmpfs of the sandbox user with no size: bound /dev/shm, make the rest read-only.
            "--size",
            str(shm_mb << 20),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
            "--size",
            str(workspace_mb << 20),
            "--tmpfs",
            WORKSPACE,
            "--size",
            str(tmp_mb << 20),
            "--tmpfs",
            "/tmp",
            "--ro-bind",
            str(INSIDE),
            SERVER_DIR,
            "--bind",
            str(host_dir),
            "/run/toolgym",
            "--chdir",
            WORKSPACE,
            "--clearenv",
            "--setenv",
            "HOME",
            WORKSPACE,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--cap-drop",
            "ALL",
        ]
        if userns is not None:
            for cap in SERVER_CAPS:
                cmd += ["--cap-add", f"CAP_{cap}"]
        cmd += [
            "--remount-ro",
            "/",
            *server_command(
                trusted_uid=TRUSTED_UID if userns is not None else None,
                agent_cgroup=cgroup is not None and cgroup.agent is not None,
            ),
        ]
        return cmd

    def start(
        self,
        limits: Limits,
        run_id: str,
        mounts: dict[str, str] | None = None,
        requirements: frozenset[str] = frozenset(),
    ) -> Handle:
        for h in requirements:
            require_prepared(h)
        if requirements and rootfs_ready():
            try:
                reqs_mount_point(rootfs_dir())
            except OSError:
                raise SandboxUnavailable(
                    f"the root file system {rootfs_dir()} has no {REQS_ROOT} to mount requirement sets at: run "
                    "a sandbox with requirements once as root (it makes the folder)"
                ) from None
        host_dir = new_sandbox_dir(None)
        sandbox_id = uuid.uuid4().hex[:12]
        cgroup = (
            Cgroup(f"{self.owner.pid}-{sandbox_id}", limits, self.agent_cgroup) if self.use_cgroups else None
        )

        def preexec() -> None:
            if cgroup is not None:
                cgroup.join()
            else:
                memory = limits.memory_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        def spawn() -> subprocess.Popen:
            userns = user_namespace() if self.split_uids else None
            try:
                return subprocess.Popen(
                    self._command(limits, host_dir, check_mounts(mounts), userns, cgroup, requirements),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=preexec,
                    pass_fds=() if userns is None else (userns,),
                )
            finally:
                if userns is not None:
                    os.close(userns)

        proc = _spawner.submit(spawn).result()
        handle = Handle(
            sandbox_id,
            self.name,
            str(host_dir / "server.sock"),
            str(host_dir),
            {"proc": proc, "cgroup": cgroup},
        )
        reaper.on_exit(id(handle), lambda: self.stop(handle))
        try:
            client = wait_for_server(handle.socket_path, lambda: proc.poll() is None)
            if cgroup is not None and cgroup.agent is not None:
                client.adopt_agent_cgroup(*cgroups.open_agent(cgroup.agent, cgroup.v2))
            client.close()
            handle.extra["server_pid"] = client.server_pid
            lock_sandbox_dir(host_dir)
        except SandboxDied as exc:
            err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.poll() is not None else ""
            self.stop(handle)
            raise SandboxDied(f"{exc}: {err}" if err else str(exc)) from None
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its pipe from filling
        return handle

    def stop(self, handle: Handle) -> None:
        proc: subprocess.Popen = handle.extra["proc"]
        if proc.poll() is None:
            proc.kill()  # bwrap's child is PID 1 of the namespace: its death takes every process with it
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        cgroup: Cgroup | None = handle.extra["cgroup"]
        if cgroup is not None:
            cgroup.remove()
        remove_sandbox_dir(handle.host_dir)
        reaper.forget(id(handle))

    def oom_kills(self, handle: Handle) -> int | None:
        cgroup: Cgroup | None = handle.extra["cgroup"]
        return cgroup.oom_kills() if cgroup is not None else None

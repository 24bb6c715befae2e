"""The Docker backend: one locked-down container per sandbox, reached through its server's Unix socket.

Through the docker SDK, never the CLI. The server is the container's PID 1 (see inside/server.py for why it,
and not docker-init, is the init): memory without swap, CPU and pids limits, no network, a read-only root
with bounded tmpfs /workspace, /tmp and /dev/shm, no-new-privileges, owner labels. The server starts as root
with four capabilities (SETUID, SETGID, SETPCAP, KILL; every other one dropped) and at once becomes uid 1000:
it needs them to start trusted Python kernels under a second uid (inside/caps.py); agent commands run as uid
1000 with no capability and an empty bounding set. A sandbox that needs requirement sets runs on the derived
image that holds them (image.ensure_image), built once per backend and set of sets, never per sandbox.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from . import cgroups, reaper
from .backend import (
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
from .client import wait_for_server
from .engine import docker_client
from .errors import SandboxDied, SandboxUnavailable
from .image import default_image, ensure_image, image_present
from .limits import Limits
from .paths import lock_sandbox_dir, new_sandbox_dir, remove_sandbox_dir

CREATE_TRIES = 3
"""Tries to create and start a container when the engine answers 5xx."""

INSIDE = Path(__file__).resolve().parent / "inside"
LABEL = "toolgym.sandbox"
log = logging.getLogger(__name__)


class DockerBackend:
    name = "docker"

    def __init__(self, image: str | None = None) -> None:
        self.client = docker_client()
        self.api = self.client.api
        self.image = image or default_image()
        self.agent_cgroup = True
        if not image_present(self.client, self.image):
            raise SandboxUnavailable(
                f"The sandbox image {self.image} is missing: run `toolgym sandbox build-image` (offline, needs "
                "root), or set TOOLGYM_IMAGE to an image that has python3."
            )
        self.owner = Owner.me()
        self._derived: dict[frozenset[str], str] = {}
        self._derived_lock = threading.Lock()
        reaper.watch_docker(self.client)

    def image_for(self, requirements: frozenset[str]) -> str:
        """The image of sandboxes that need these requirement sets: the base image when none."""
        if not requirements:
            return self.image
        with self._derived_lock:  # the first starts of a pool wait for one build instead of racing it
            tag = self._derived.get(requirements)
            if tag is None:
                tag = ensure_image(self.client, requirements, log.info, base=self.image)
                self._derived[requirements] = tag
        return tag

    def start(
        self,
        limits: Limits,
        run_id: str,
        mounts: dict[str, str] | None = None,
        requirements: frozenset[str] = frozenset(),
    ) -> Handle:
        image = self.image_for(requirements)
        host_dir = new_sandbox_dir(SANDBOX_UID)
        tmpfs_opts = f"rw,nosuid,nodev,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755"
        workspace_mb, tmp_mb, shm_mb = limits.scratch_mb()
        host_config = self.api.create_host_config(
            binds={
                str(INSIDE): {"bind": SERVER_DIR, "mode": "ro"},
                str(host_dir): {"bind": "/run/toolgym", "mode": "rw"},
                **{host: {"bind": target, "mode": "ro"} for host, target in check_mounts(mounts).items()},
            },
            tmpfs={
                WORKSPACE: f"{tmpfs_opts},size={workspace_mb}m",
                "/tmp": f"{tmpfs_opts},size={tmp_mb}m",
            },
            read_only=True,
            network_mode="bridge" if limits.network else "none",
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            cap_drop=["ALL"],
            cap_add=list(SERVER_CAPS),
            security_opt=["no-new-privileges"],
            shm_size=f"{shm_mb}m",
            ipc_mode="private",
            init=False,
        )
        labels = {LABEL: "1", "toolgym.run": run_id, "toolgym.owner": self.owner.label()}
        split = self.agent_cgroup and cgroups.writable()  # then the agent cgroup is made after the start
        for attempt in range(CREATE_TRIES):
            container_id = None
            try:
                created = self.api.create_container(
                    image,
                    command=server_command(trusted_uid=TRUSTED_UID, agent_cgroup=split),
                    user="0:0",  # the server becomes SANDBOX_UID before it does anything else
                    working_dir=WORKSPACE,
                    environment={"HOME": WORKSPACE, "LANG": "C.UTF-8"},
                    hostname="sandbox",
                    labels=labels,
                    host_config=host_config,
                    network_disabled=not limits.network,
                )
                container_id = created["Id"]
                reaper.track(container_id)
                self.api.start(container_id)
                break
            except Exception as exc:
                if container_id is not None:
                    self._remove(container_id)
                # dockerd answers a rare 500 under concurrent creates (seen here: "invalid character 'P'
                # looking for beginning of value"); that is the engine's hiccup, worth another try.
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if attempt + 1 < CREATE_TRIES and status is not None and status >= 500:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                remove_sandbox_dir(host_dir)
                raise SandboxUnavailable(f"Docker could not start a sandbox from {image}: {exc}") from None
        handle = Handle(
            container_id[:12],
            self.name,
            str(host_dir / "server.sock"),
            str(host_dir),
            {"container": container_id},
        )
        try:
            client = wait_for_server(handle.socket_path, lambda: self._running(container_id))
            if split:
                agent = cgroups.split_container(
                    self._init_pid(container_id), limits.agent_memory_mb(), limits.cpus
                )
                client.adopt_agent_cgroup(*(agent or ((), False)))  # none: the server stops waiting for it
            client.close()
            handle.extra["server_pid"] = client.server_pid
            lock_sandbox_dir(host_dir)
        except SandboxDied as exc:
            logs = self._logs(container_id)
            self.stop(handle)
            raise SandboxDied(f"{exc}; container output:\n{logs}" if logs else str(exc)) from None
        return handle

    def _init_pid(self, container_id: str) -> int:
        """The host pid of the container's first process (the server), 0 where unknown."""
        try:
            return int(self.api.inspect_container(container_id)["State"]["Pid"])
        except Exception:  # noqa: BLE001 - unknown: no agent cgroup, as on an engine we may not reach into
            return 0

    def _running(self, container_id: str) -> bool:
        try:
            return self.api.inspect_container(container_id)["State"]["Running"]
        except Exception:  # noqa: BLE001 - gone counts as not running
            return False

    def _logs(self, container_id: str) -> str:
        try:
            return self.api.logs(container_id, tail=20).decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001
            return ""

    def stop(self, handle: Handle) -> None:
        self._remove(handle.extra["container"])
        remove_sandbox_dir(handle.host_dir)

    def _remove(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True)
        except Exception:  # noqa: BLE001 - already gone is fine; the reaper retries anything else
            pass
        reaper.untrack(container_id)

    def oom_kills(self, handle: Handle) -> int | None:
        return None  # the server reads the container's own cgroup counter

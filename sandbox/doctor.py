"""Health checks of the sandbox side: engine, image, backends, limits, requirement sets. Each failed check names
its fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    """A failed optional check is a warning: something works without it."""


def checks() -> list[Check]:
    from . import cgroups
    from .engine import docker_client
    from .errors import SandboxUnavailable
    from .image import default_image, image_present, rootfs_dir, rootfs_ready
    from .namespace_backend import Cgroup

    out = []
    client = None
    try:
        client = docker_client(timeout=10)
        version = client.version().get("Version", "?")
        out.append(Check("docker engine", True, f"Docker {version} answers"))
    except SandboxUnavailable as exc:
        out.append(Check("docker engine", False, "no engine answers", str(exc), required=False))
    image = default_image()
    if client is not None:
        present = image_present(client, image)
        out.append(
            Check(
                "sandbox image",
                present,
                image if present else f"{image} is missing",
                "run `toolgym sandbox build-image`",
            )
        )
    bwrap = shutil.which("bwrap")
    out.append(
        Check(
            "namespace backend",
            bwrap is not None,
            f"bubblewrap at {bwrap}" if bwrap else "no bwrap",
            "apt-get install -y bubblewrap",
            required=client is None,
        )
    )
    out.append(
        Check(
            "namespace root fs",
            rootfs_ready(),
            str(rootfs_dir())
            if rootfs_ready()
            else "not built (the namespace backend would fall back to the host's /usr and /etc)",
            "run `toolgym sandbox build-image`",
            required=False,
        )
    )
    cg = Cgroup.available()
    out.append(
        Check(
            "cgroups for namespace limits",
            cg,
            "writable" if cg else "not writable: only per-process rlimits bound the namespace backend",
            "run as root on a host with cgroups mounted",
            required=False,
        )
    )
    agent = cgroups.writable()
    out.append(
        Check(
            "agent cgroup",
            agent,
            "made in every sandbox: a bomb cannot stall the server"
            if agent
            else "not made: the agent shares its sandbox's cgroup with the server (a bomb can slow its answers)",
            "run as root on a host with cgroups mounted",
            required=False,
        )
    )
    out += requirement_checks(client, image)
    usable = (client is not None and image_present(client, image)) or bwrap is not None
    out.append(
        Check(
            "a usable backend",
            usable,
            "docker" if client is not None else ("namespace" if bwrap else "none"),
            "start Docker or install bubblewrap",
        )
    )
    out.append(
        Check(
            "running as root",
            os.geteuid() == 0,
            f"uid {os.geteuid()}",
            "building the image and the namespace backend's cgroups need root",
            required=False,
        )
    )
    return out


def requirement_checks(client, image: str) -> list[Check]:
    """One line per prepared requirement set: its lines, and whether its derived image exists yet."""
    from .image import derived_tag, image_present
    from .requirements import manifest, prepared_sets, reqs_dir

    sets = prepared_sets()
    detail = f"{len(sets)} prepared in {reqs_dir()}" if sets else "none prepared"
    out = [Check("requirement sets", True, detail, required=False)]
    for h in sets:
        try:
            held = manifest(h)
            detail = f"{', '.join(held['requirements'])} ({len(held['installed'])} distributions)"
        except (OSError, ValueError, KeyError) as exc:
            out.append(
                Check(f"requirements {h}", False, f"unreadable ({exc})", f"rm -r {reqs_dir() / h}", False)
            )
            continue
        if client is not None:
            tag = derived_tag(image, [h])
            detail += f"; image {tag}" if image_present(client, tag) else "; image built at first use"
        out.append(Check(f"requirements {h}", True, detail, required=False))
    return out

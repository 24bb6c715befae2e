"""Joining a Ray cluster: the one place that turns `--ray auto|local|ADDRESS` into a connected Ray.

Ray is an extra (`pip install -e '.[ray]'`): nothing here imports it until a command asks for it, so a run
without `--ray` never loads it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

MODES = ("auto", "local")
INSTALL_HINT = "Ray is not installed: pip install -e '.[ray]' (or pip install 'ray>=2.50')"


class ClusterError(RuntimeError):
    """A cluster that cannot be joined, said in one sentence with its fix."""


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def would_join() -> str:
    """Which cluster `--ray auto` would join, without joining it: RAY_ADDRESS, else the cluster a `ray start`
    on this machine recorded, else none."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    current = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if current.is_file():
        address = current.read_text().strip()
        if address:
            return address
    return ""


def describe() -> dict[str, Any]:
    """What `toolgym doctor` says about Ray."""
    if not ray_installed():
        return {"installed": False, "version": "", "would_join": "", "hint": INSTALL_HINT}
    from importlib.metadata import version

    target = would_join()
    return {
        "installed": True,
        "version": version("ray"),
        "would_join": target,
        "hint": ""
        if target
        else "no running cluster: `--ray local` starts one in-process, or `ray start --head`",
    }


def connect(address: str, *, num_cpus: int | None = None) -> dict[str, Any]:
    """Connect this process to Ray and return the cluster's resources.

    `address`: "auto" joins the running cluster (RAY_ADDRESS or the one `ray start` left on this machine);
    "local" starts a one-node cluster in this process (for trying it; `num_cpus` caps it); anything else is a
    cluster address (`HOST:PORT` or `ray://HOST:PORT`). Connecting twice is a no-op.
    """
    if not ray_installed():
        raise ClusterError(INSTALL_HINT)
    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address == "local":
            kwargs["num_cpus"] = num_cpus
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            if address == "auto":
                raise ClusterError(
                    "--ray auto found no running Ray cluster: start one with `ray start --head`, set "
                    "RAY_ADDRESS, or use --ray local"
                ) from exc
            raise ClusterError(
                f"cannot join the Ray cluster at {address!r} ({exc}): check the address"
            ) from exc
    return dict(ray.cluster_resources())


def disconnect() -> None:
    if ray_installed():
        import ray

        if ray.is_initialized():
            ray.shutdown()

"""Reaching the Docker engine, and starting one where none runs (root on Debian) for `toolgym sandbox setup`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

from .errors import SandboxUnavailable

SOCKET = "/var/run/docker.sock"
_client = None


def docker_client(timeout: float = 60.0):
    """A docker SDK client for the engine, or SandboxUnavailable with the sentence that fixes it."""
    global _client
    if _client is not None:
        return _client
    try:
        import docker
    except ImportError:
        raise SandboxUnavailable("The docker Python package is missing: run `pip install docker`.") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure here means the same thing to the user
        raise SandboxUnavailable(
            "No Docker engine answers (DOCKER_HOST or /var/run/docker.sock): start one, or run "
            "`toolgym sandbox setup` as root on Debian to install and start it, or use backend='namespace'."
        ) from None
    _client = client
    return client


def _forget_client_in_child() -> None:
    """A forked child (a multiprocessing worker) connects anew: the client's pooled HTTP connection is the
    parent's socket, and requests from both processes reach dockerd interleaved and garbled (seen in CI on
    container create: 400 Bad Request, and 500 "invalid character 'P' looking for beginning of value")."""
    global _client
    _client = None


os.register_at_fork(after_in_child=_forget_client_in_child)


def engine_answers() -> bool:
    try:
        docker_client()
        return True
    except SandboxUnavailable:
        return False


def _is_debian() -> bool:
    return os.path.exists("/etc/debian_version") and shutil.which("apt-get") is not None


def apt_install(packages: list[str], log: Callable[[str], None] = print) -> None:
    if os.geteuid() != 0 or not _is_debian():
        raise SandboxUnavailable(
            f"{', '.join(packages)} missing: install {'them' if len(packages) > 1 else 'it'} with your package "
            "manager (on Debian as root: apt-get install -y " + " ".join(packages) + ")."
        )
    log(f"apt-get install {' '.join(packages)} ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lists = "/var/lib/apt/lists"
    if not os.path.isdir(lists) or len(os.listdir(lists)) < 3:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL
        )


def ensure_engine(log: Callable[[str], None] = print, wait_s: float = 60.0):
    """Return a client for a running engine, installing and starting dockerd first where we may."""
    if engine_answers():
        return docker_client()
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"], log)
    if shutil.which("dockerd") is None:
        raise SandboxUnavailable(
            "dockerd is still missing after installing docker.io; install Docker by hand."
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "The Docker engine is not running and starting it needs root: `sudo dockerd &`."
        )
    log("starting dockerd ...")
    logfile = open("/tmp/toolgym-dockerd.log", "ab")
    # Its own session, so the engine outlives this command (make test, the demo) as a daemon does.
    subprocess.Popen(
        ["dockerd"],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if os.path.exists(SOCKET) and engine_answers():
            log("dockerd is up")
            return docker_client()
        time.sleep(0.25)
    raise SandboxUnavailable(
        f"dockerd did not answer within {wait_s:.0f} s; its log is /tmp/toolgym-dockerd.log."
    )

"""The host side of the wire: calls into one in-sandbox server over its Unix socket."""

from __future__ import annotations

import os
import socket
import struct
import threading

from .errors import SandboxDied, SandboxError, SandboxFileNotFound, SandboxPathError
from .inside import wire

_ERRORS = {"PathError": SandboxPathError, "FileNotFoundError": SandboxFileNotFound}


def peer_pid(sock: socket.socket) -> int:
    """The pid (in our pid namespace; 0 where invisible) of the process that listens at the other end."""
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid


class ServerClient:
    """Request/response calls to one server. Thread-safe: each concurrent call gets its own connection.

    `server_pid`: the host pid of the server, learnt from the first connection (made before any agent code
    ran). Every later connection must reach a listener of that same process, so a listener that agent code
    planted at the socket path (possible where the host is not root and cannot lock the folder) is refused."""

    def __init__(self, socket_path: str, server_pid: int | None = None) -> None:
        self.socket_path = socket_path
        self.server_pid = server_pid
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> socket.socket:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
            pid = peer_pid(sock)
        except OSError as exc:
            sock.close()
            raise SandboxDied(f"the sandbox server at {self.socket_path} is not answering ({exc})") from None
        if self.server_pid is None:
            self.server_pid = pid
        elif pid != self.server_pid and self.server_pid != 0:
            sock.close()
            raise SandboxDied(
                f"the socket at {self.socket_path} is served by process {pid}, not by the sandbox server "
                f"({self.server_pid}): something inside the sandbox replaced it"
            )
        return sock

    def call(self, op: str, timeout: float | None = 30.0, fds: tuple[int, ...] = (), **params) -> dict:
        """Send one request and return its result; server-side refusals raise the matching SandboxError.
        `fds` travel with the request (see `wire.send`)."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        sock = self._connect()
        try:
            sock.settimeout(timeout)
            wire.send(sock, {"op": op, **params}, fds)
            reply = wire.recv(sock)
        except TimeoutError:
            sock.close()
            raise SandboxDied(f"the sandbox server did not answer {op!r} within {timeout:g} s") from None
        except (OSError, wire.ConnectionClosed) as exc:
            sock.close()
            raise SandboxDied(f"the sandbox server closed the connection during {op!r} ({exc})") from None
        with self._lock:
            if self._closed:
                sock.close()
            else:
                self._idle.append(sock)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise _ERRORS.get(err.get("type"), SandboxError)(
                err.get("message", "the sandbox refused the request")
            )
        return reply["result"]

    def adopt_agent_cgroup(self, fds: tuple[int, ...], threads: bool) -> bool:
        """Hand the server the agent cgroup (descriptors from `cgroups.open_agent`) and close ours; whether it
        holds it now. Before any agent code runs: the server keeps the first it gets."""
        try:
            return bool(self.call("agent_cgroup", timeout=5.0, fds=fds, threads=threads)["adopted"])
        finally:
            for fd in fds:
                os.close(fd)

    def drop_connections(self) -> None:
        """Forget pooled connections (after a reset the server listens on a fresh socket)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def close(self) -> None:
        self._closed = True
        self.drop_connections()


def wait_for_server(socket_path: str, alive, timeout: float = 30.0) -> ServerClient:
    """Poll until the server's socket appears and answers a ping; `alive()` says if waiting still makes sense."""
    import os
    import time

    deadline = time.monotonic() + timeout
    delay = 0.001
    while time.monotonic() < deadline:
        if os.path.exists(socket_path):
            client = ServerClient(socket_path)
            try:
                client.call("ping", timeout=5.0)
                return client
            except SandboxDied:
                client.close()
        elif not alive():
            raise SandboxDied("the sandbox exited before its server started")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.02)
    raise SandboxDied(f"the sandbox server did not start within {timeout:g} s")

"""Length-prefixed JSON frames: the one wire format between the host and the in-sandbox server.

Stdlib only: this file is mounted into every sandbox. Bytes travel as base64 in fields ending in `_b64`.
"""

from __future__ import annotations

import array
import base64
import json
import socket
import struct

HEADER = struct.Struct("!I")
MAX_FRAME = 512 * 1024 * 1024
MAX_FDS = 2  # file descriptors one frame may carry (SCM_RIGHTS); the kernel closes any past these


class ConnectionClosed(Exception):
    """The peer closed the connection between or inside a frame."""


def send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """Send one frame; `fds` ride with its first bytes (a Unix socket's SCM_RIGHTS), as duplicates."""
    data = json.dumps(message, separators=(",", ":")).encode()
    data = HEADER.pack(len(data)) + data
    if fds:
        if len(fds) > MAX_FDS:
            raise ValueError(f"a frame carries at most {MAX_FDS} file descriptors")
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = data[sent:]
    sock.sendall(data)


def _recv_exactly(sock: socket.socket, n: int, fds: list[int] | None) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if fds is None:
            k = sock.recv_into(view[got:], n - got)
        else:
            k, ancdata, _, _ = sock.recvmsg_into(
                [view[got:]], socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
            )
            fds.extend(_passed_fds(ancdata))
        if k == 0:
            raise ConnectionClosed("connection closed")
        got += k
    return bytes(buf)


def _passed_fds(ancdata: list) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def recv(sock: socket.socket, fds: list[int] | None = None) -> dict:
    """Read one frame. With a list for `fds`, file descriptors sent with it are appended there (close-on-exec;
    the caller owns them); without, any sent are closed unread."""
    (length,) = HEADER.unpack(_recv_exactly(sock, HEADER.size, fds))
    if length > MAX_FRAME:
        raise ConnectionClosed(f"frame of {length} bytes is over the limit")
    return json.loads(_recv_exactly(sock, length, fds))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""

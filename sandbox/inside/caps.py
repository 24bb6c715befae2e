"""Linux capabilities and user ids for the in-sandbox server and its Python kernels (stdlib + ctypes only).

Capabilities, the bounding set and the ambient set are per thread in Linux, and a child inherits the ones of
the thread that forked it. The server uses that: it keeps CAP_SETUID, CAP_SETGID and CAP_SETPCAP on one thread
only (the one that starts Python kernels), its other threads hold CAP_KILL and nothing else and have an empty
bounding set, so every command they start for an agent runs with no capability at all.
"""

from __future__ import annotations

import ctypes
import os

CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
KERNEL_CAPS = (CAP_SETUID, CAP_SETGID, CAP_SETPCAP)
"""What a protected kernel needs at start: take its user ids, then drop its bounding set."""

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    return _libc.prctl(option, arg2, arg3, 0, 0)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def get() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread, as 64-bit masks."""
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    low, high = data
    return (
        low.effective | high.effective << 32,
        low.permitted | high.permitted << 32,
        low.inheritable | high.inheritable << 32,
    )


def put(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets."""
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    for word in (0, 1):
        data[word].effective = (effective >> (32 * word)) & 0xFFFFFFFF
        data[word].permitted = (permitted >> (32 * word)) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> (32 * word)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def mask(caps) -> int:
    out = 0
    for cap in caps:
        out |= 1 << cap
    return out


def has(caps) -> bool:
    """Whether the calling thread holds all of `caps` in its permitted set."""
    try:
        want = mask(caps)
        return get()[1] & want == want
    except OSError:
        return False


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def keep_only(caps) -> None:
    """The calling thread keeps `caps` (where it holds them) effective and permitted, nothing inheritable or
    ambient."""
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _, permitted, _ = get()
    keep = permitted & mask(caps)
    put(keep, keep, 0)


def drop_bounding() -> None:
    """Empty the calling thread's bounding set (needs CAP_SETPCAP): nothing it starts can gain a capability."""
    for cap in range(last_cap() + 1):
        prctl(PR_CAPBSET_DROP, cap)


def become_user(uid: int, gid: int) -> None:
    """From root to uid/gid, keeping the permitted capabilities (the caller then picks which stay)."""
    _check(prctl(PR_SET_KEEPCAPS, 1), "PR_SET_KEEPCAPS")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_KEEPCAPS, 0)


class Ambient:
    """While active, children this thread starts get `caps` (raised as ambient capabilities)."""

    def __init__(self, caps) -> None:
        self.caps = tuple(caps)

    def __enter__(self) -> Ambient:
        effective, permitted, _ = get()
        put(effective, permitted, mask(self.caps))
        for cap in self.caps:
            _check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap), "PR_CAP_AMBIENT_RAISE")
        return self

    def __exit__(self, *exc) -> None:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        effective, permitted, _ = get()
        put(effective, permitted, 0)


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def protect_kernel(agent_uid: int) -> None:
    """A kernel started as the trusted uid with ambient capabilities takes real and saved uid = trusted uid and
    effective (so file system) uid = the agent's, then drops every capability, its bounding set included.

    Signals need the sender's uid to match the target's real or saved uid, and ptrace needs all three to
    match, so agent code (all three ids the agent's) can neither signal nor trace it, while the files it writes
    in /workspace belong to the agent's uid as before."""
    trusted = os.getuid()
    os.setresuid(trusted, agent_uid, trusted)
    drop_bounding()
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    put(0, 0, 0)
    set_dumpable(False)


def demote_kernel(agent_uid: int) -> None:
    """A protected kernel that serves an agent session becomes an ordinary process of the agent's uid."""
    os.setresuid(agent_uid, agent_uid, agent_uid)
    set_dumpable(True)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # as every other agent process: the OOM killer's first choice
    except OSError:
        pass

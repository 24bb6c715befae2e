"""A stateful Python session, Jupyter-kernel style: globals persist across cells.

Started by the in-sandbox server, one process per session, talking JSON lines over two inherited pipes (so a
cell printing to the real stdout never corrupts the protocol). SIGINT interrupts a running cell and leaves the
session usable. Stdlib only, and few imports: a code or code-interpreter episode starts a kernel each time,
so `ast`, `tempfile` and `traceback` (a third of its start-up) are avoided or imported only when needed.
"""

from __future__ import annotations

import _ast
import builtins
import io
import json
import linecache
import os
import signal
import sys
import time


class CappedText(io.TextIOBase):
    """A text sink that keeps the first `cap` characters and remembers whether more came."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        room = self.cap - self.size
        if len(s) > room:
            self.truncated = True
            s = s[: max(room, 0)]
        if s:
            self.parts.append(s)
            self.size += len(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)


class Kernel:
    def __init__(self) -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.count = 0
        self.running = False
        # Output of child processes (os.system, subprocess) goes to fd 1/2: point them at files read after
        # each cell, so a chatty child can never block on a full pipe.
        self.fd_sinks = []
        for fd in (1, 2):
            sink = _anonymous_file(f"toolgym-kernel-fd{fd}")
            os.dup2(sink, fd)
            self.fd_sinks.append(sink)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self.running:
            raise KeyboardInterrupt

    def _drain_fd_sinks(self, cap: int) -> tuple[str, str]:
        out = []
        for fd in self.fd_sinks:
            data = os.pread(fd, cap, 0)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            out.append(data.decode("utf-8", "replace"))
        return out[0], out[1]

    def run_cell(self, code: str, cap: int) -> dict:
        self.count += 1
        filename = f"<cell-{self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        stdout, stderr = CappedText(cap), CappedText(cap)
        result = None
        error = None
        interrupted = False
        started = time.monotonic()
        old_out, old_err = sys.stdout, sys.stderr
        os.environ["TOOLGYM_CELL"] = f"{os.getpid()}-{self.count}"
        sys.stdout, sys.stderr = stdout, stderr
        try:
            self.running = True
            tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST)
            last = None
            if tree.body and isinstance(tree.body[-1], _ast.Expr):
                last = _ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    result = repr(value)
                    if len(result) > cap:
                        result = result[:cap] + "...[truncated]"
        except KeyboardInterrupt:
            interrupted = True
            error = {"type": "KeyboardInterrupt", "message": "the cell was interrupted", "traceback": ""}
        except BaseException as exc:  # noqa: BLE001 - everything a cell raises is reported, SystemExit too
            import traceback

            tb = exc.__traceback__
            # Drop this kernel's own frame so the traceback starts in the cell.
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, tb))[-cap:],
            }
        finally:
            self.running = False
            sys.stdout, sys.stderr = old_out, old_err
        fd_out, fd_err = self._drain_fd_sinks(cap)
        return {
            "stdout": stdout.getvalue() + fd_out,
            "stderr": stderr.getvalue() + fd_err,
            "truncated": stdout.truncated or stderr.truncated,
            "result": result,
            "error": error,
            "interrupted": interrupted,
            "duration_s": time.monotonic() - started,
        }


def _anonymous_file(name: str) -> int:
    """A file descriptor of a nameless read-write file: a memfd where the kernel has them, else a temp file."""
    try:
        return os.memfd_create(name)
    except (AttributeError, OSError):
        import tempfile

        return os.dup(tempfile.TemporaryFile(prefix=f".{name}-").fileno())


def harden() -> None:
    """Non-dumpable, as the server is: a trusted session (toolgym's env server) cannot be ptraced or have its
    memory read by agent code of the same uid. Children that exec (agent code) are dumpable again."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def protected_start(agent_uid: int):
    """Started as the trusted uid with capabilities (the server's uid split): take real/saved uid = trusted,
    effective = the agent's, drop every capability; returns what turns the kernel into an agent's session."""
    import caps  # beside this file, which is sys.path[0]

    caps.protect_kernel(agent_uid)
    return lambda: caps.demote_kernel(agent_uid)


def reap(pids: list[int]) -> int:
    """Wait for children the server has killed (a second at most): only a parent may free their pids."""
    done, deadline = 0, time.monotonic() + 1.0
    for pid in pids:
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    done += 1
                    break
            except ChildProcessError:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
    return done


def main() -> None:
    read_fd, write_fd = int(sys.argv[1]), int(sys.argv[2])
    # A third argument: the agent's uid, for a kernel the server started protected (trusted uid). It stays
    # protected if its first cell is trusted, and becomes an ordinary agent process otherwise.
    demote = protected_start(int(sys.argv[3])) if len(sys.argv) > 3 else None
    # The agent cgroup's descriptors (server.py, AgentCgroup): kept for a trusted session's zygote, closed before
    # an agent's first cell. Never inherited by what this kernel starts.
    agent_cgroup = os.environ.pop("TOOLGYM_AGENT_CGROUP", "")
    for fd in filter(None, agent_cgroup.split(",")):
        os.set_inheritable(int(fd), False)
    first = True
    requests = os.fdopen(read_fd, "r", encoding="utf-8")
    replies = os.fdopen(write_fd, "w", encoding="utf-8")
    kernel = Kernel()
    while True:
        try:
            line = requests.readline()
        except KeyboardInterrupt:  # a late interrupt that arrived between cells
            continue
        if not line:
            return
        request = json.loads(line)
        if "reap" in request:  # what a timed-out cell forked, which the server has killed
            replies.write(json.dumps({"reaped": reap(request["reap"])}) + "\n")
            replies.flush()
            continue
        if request.get("harden"):
            harden()
            if first and agent_cgroup:
                os.environ["TOOLGYM_AGENT_CGROUP"] = agent_cgroup
        elif first:
            for fd in filter(None, agent_cgroup.split(",")):
                os.close(int(fd))
            if demote is not None:
                demote()
            os.nice(10)  # an agent's session: yields to the server, as agent commands do
        demote, first = None, False
        try:
            reply = kernel.run_cell(request["code"], int(request.get("max_output", 1 << 20)))
        except KeyboardInterrupt:  # landed after the cell's own handler: still a clean interrupted reply
            reply = {
                "stdout": "",
                "stderr": "",
                "truncated": False,
                "result": None,
                "interrupted": True,
                "error": {
                    "type": "KeyboardInterrupt",
                    "message": "the cell was interrupted",
                    "traceback": "",
                },
                "duration_s": 0.0,
            }
        reply["id"] = request.get("id")
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()

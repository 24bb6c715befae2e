"""Code-interpreter tools: a stateful Python session (globals persist across calls, like a notebook) that runs
in its own process in the working folder, which holds the task's data files."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from toolgym_env import Context, ToolError, tool

CELL_TIMEOUT_S = 120.0  # as in DeepSeek-V3.2's code-interpreter prompt
MAX_OUTPUT = 20000

# The agent's interpreter: reads one JSON cell per line on stdin, answers one JSON line on the fd in argv[1].
REPL = r"""
import ast, io, json, os, signal, sys, traceback
out = os.fdopen(int(sys.argv[1]), "w")
g = {"__name__": "__main__"}
signal.signal(signal.SIGINT, signal.default_int_handler)
for line in sys.stdin:
    code = json.loads(line)
    buf = io.StringIO()
    sys.stdout = sys.stderr = buf
    result = None
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), g)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), g)
            result = None if value is None else repr(value)
    except BaseException:
        etype, evalue, tb = sys.exc_info()
        buf.write("".join(traceback.format_exception(etype, evalue, tb.tb_next if tb else None)))
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    out.write(json.dumps({"output": buf.getvalue(), "result": result}) + "\n")
    out.flush()
"""


class _Session:
    def __init__(self, cwd: str) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", REPL, str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            pass_fds=(write_fd,),
            text=True,
            start_new_session=True,
        )
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r")

    def run(self, code: str, timeout: float) -> dict | None:
        """The cell's reply; None when it would not stop even after an interrupt."""
        self.proc.stdin.write(json.dumps(code) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        self.interrupted = False
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.replies], [], [], max(left, 0))
            if ready:
                line = self.replies.readline()
                return json.loads(line) if line else None
            if self.interrupted:
                return None
            # Past the deadline: interrupt the cell (KeyboardInterrupt); the session and its variables survive.
            os.killpg(self.proc.pid, signal.SIGINT)
            self.interrupted, deadline = True, time.monotonic() + 2.0

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.replies.close()


def _session(ctx: Context) -> _Session:
    s = getattr(ctx, "_python", None)
    if s is None or s.proc.poll() is not None:
        s = _Session(ctx.state_dir)
        ctx._python = s
        ctx.on_close(s.close)
    return s


@tool(access="write")
def python(ctx: Context, code: str) -> str:
    """Run Python code in a stateful session (variables persist between calls) in the working folder, which
    holds the task's data files. Prints and the value of the last expression are returned; a cell may run
    at most 120 seconds.

    Args:
        code: The Python code to run.
    """
    session = _session(ctx)
    limit = min(CELL_TIMEOUT_S, ctx.call_timeout_s - 5)  # stop the cell before the env server stops the call
    reply = session.run(code, limit)
    if reply is None:
        session.close()
        ctx._python = None
        raise ToolError(
            f"the code ran past {limit:g} s and would not stop; the session was restarted, so earlier "
            "variables are gone. Make the computation faster."
        )
    text = reply["output"] + (reply["result"] + "\n" if reply["result"] is not None else "")
    if session.interrupted:
        text += f"[interrupted after {limit:g} s; the session keeps its variables. Make it faster.]\n"
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + f"\n[output cut at {MAX_OUTPUT} characters]"
    return text or "(no output)"


@tool
def list_files(ctx: Context) -> list[str]:
    """List the data files in the working folder."""
    out = []
    for root, _, files in os.walk(ctx.state_dir):
        out += [os.path.relpath(os.path.join(root, f), ctx.state_dir) for f in files]
    return sorted(out)

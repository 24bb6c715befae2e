"""Code tools over a small Python repository in the working folder: list, read, write and edit files, run
the tests or any shell command. Paths are relative to the repository root and may not leave it."""

from __future__ import annotations

import os
import re
import subprocess

from toolgym_env import Context, ToolError, tool

MAX_FILE_CHARS = 50000


def _path(ctx: Context, path: str) -> str:
    root = os.path.realpath(ctx.state_dir)
    full = os.path.realpath(os.path.join(root, path))
    if full != root and not full.startswith(root + os.sep):
        raise ToolError(f"{path!r} is outside the repository; use a path relative to its root.")
    return full


def _run(ctx: Context, argv: list[str], timeout: float) -> str:
    try:
        r = subprocess.run(
            argv,
            cwd=ctx.state_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"the command ran past {timeout:g} s and was stopped.") from None
    out = (r.stdout + r.stderr)[-MAX_FILE_CHARS:]
    return f"exit code {r.returncode}\n{out}"


@tool
def list_files(ctx: Context) -> list[str]:
    """List the repository's files."""
    out = []
    for root, dirs, files in os.walk(ctx.state_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out += [os.path.relpath(os.path.join(root, f), ctx.state_dir) for f in sorted(files)]
    return out


@tool
def read_file(ctx: Context, path: str) -> str:
    """Read a file of the repository.

    Args:
        path: The file's path relative to the repository root, e.g. "textkit/core.py".
    """
    full = _path(ctx, path)
    if not os.path.isfile(full):
        raise ToolError(f"there is no file {path!r}; list_files shows the files.")
    with open(full, encoding="utf-8", errors="replace") as f:
        return f.read(MAX_FILE_CHARS)


@tool(access="write")
def write_file(ctx: Context, path: str, content: str) -> str:
    """Create or overwrite a file of the repository.

    Args:
        path: The file's path relative to the repository root.
        content: The file's full new content.
    """
    full = _path(ctx, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(content)
    return f"wrote {len(content)} characters to {path}"


@tool(access="write")
def replace_in_file(ctx: Context, path: str, old: str, new: str) -> str:
    """Replace one exact occurrence of a text in a file.

    Args:
        path: The file's path relative to the repository root.
        old: The exact text to replace; it must occur exactly once.
        new: The replacement text.
    """
    text = read_file(ctx, path)
    count = text.count(old)
    if count != 1:
        raise ToolError(f"the text occurs {count} times in {path}; give an exact snippet that occurs once.")
    write_file(ctx, path, text.replace(old, new))
    return f"replaced 1 occurrence in {path}"


@tool
def run_tests(ctx: Context) -> str:
    """Run the repository's test suite (unittest) and return its output."""
    out = _run(ctx, ["python3", "-m", "unittest", "discover", "-s", "tests", "-t", "."], 120)
    # unittest prints its wall time; an episode replayed must read the same text.
    return re.sub(r"(Ran \d+ tests?) in [0-9.]+s", r"\1", out)


@tool(access="write")
def run_shell(ctx: Context, command: str) -> str:
    """Run a shell command in the repository root (at most 60 seconds) and return its exit code and output.

    Args:
        command: The command line, run by /bin/sh.
    """
    return _run(ctx, ["/bin/sh", "-c", command], 60)

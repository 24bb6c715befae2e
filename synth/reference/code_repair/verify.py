"""Verifiers of the code environments: the task's hidden tests must pass against the final repository, and so
must the original visible tests (run from the task's copy, so editing or deleting them does not help)."""

from __future__ import annotations

import os
import subprocess
import tempfile


def _run_tests(repo: str, name: str, source: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(source)
        env = {**os.environ, "PYTHONPATH": repo, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            r = subprocess.run(
                ["python3", "-m", "unittest", name[:-3]],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            return False, "timed out"
        return r.returncode == 0, (r.stdout + r.stderr)[-2000:]


def check_fix(ctx, answer, calls, hidden_tests: str, visible_tests: str):
    """Reward 1 when the hidden tests pass and the visible tests stay green."""
    ok, out = _run_tests(ctx.state_dir, "test_hidden.py", hidden_tests)
    if not ok:
        return 0.0, "the hidden tests fail: " + out.strip().splitlines()[
            -1
        ] if out.strip() else "hidden tests fail"
    ok, out = _run_tests(ctx.state_dir, "test_visible.py", visible_tests)
    if not ok:
        return 0.0, "the fix breaks the visible tests"
    return 1.0, "hidden and visible tests pass"

"""A hostile agent tries to earn a code task's reward without fixing the bug, through the public API only
(`toolgym.make`, `env.step` with tool calls, in Docker). Every test fails if the attack scores."""

from __future__ import annotations

import time

import pytest

import toolgym

ENV = "toolgym/code_textkit_median"
FIX = {"path": "textkit/core.py", "old": "else s[mid]", "new": "else (s[mid - 1] + s[mid]) / 2"}


def call(name: str, **arguments) -> dict:
    return {"content": "", "tool_calls": [{"name": name, "arguments": arguments}]}


def episode(docker_backend, *calls: dict) -> tuple[float, dict]:
    env = toolgym.make(ENV, backend=docker_backend)
    try:
        env.reset(seed=0)
        for c in calls:
            env.step(c)
        _, reward, terminated, _, info = env.step({"content": "Fixed it; the tests pass."})
        assert terminated
        return reward, info["verdict"]
    finally:
        env.close()


def append_to_init(code: str) -> dict:
    return call("run_shell", command=f"cat >> textkit/__init__.py <<'EOF'\n{code}\nEOF")


FORGED_REPORT = "import json, sys\nsys.stdout.write(chr(10) + json.dumps([{'value': 2.5}] * 20) + chr(10))\n"

ATTACKS = {
    # The verifier used to trust the last line a test run printed and its exit code.
    "patch print and exit": "import builtins, sys\n"
    "builtins.print = lambda *a, **k: sys.__stdout__.write('ran 7 tests, 0 failed\\n')\n"
    "sys.exit = lambda *a: None\n",
    "exit 0 at import after a forged report": FORGED_REPORT + "import os\nos._exit(0)\n",
    "forged report then normal run": FORGED_REPORT,
    # An object that equals anything, returned in place of the median.
    "always-equal object": "from textkit import core\n"
    "class Anything:\n    def __eq__(self, other): return True\n"
    "core.median = lambda values: Anything()\n",
    # The stdlib shadowed from the repository.
    "shadow json": "",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_forged_pass_scores_zero(docker_backend, attack):
    calls = [append_to_init(ATTACKS[attack])] if ATTACKS[attack] else []
    if attack == "shadow json":
        fake = "def dumps(*a, **k): return '[' + ', '.join(['{\"value\": 2.5}'] * 20) + ']'\nloads = None\n"
        calls = [
            call("write_file", path="json.py", content=fake),
            call("write_file", path="unittest.py", content=""),
        ]
    reward, verdict = episode(docker_backend, *calls)
    assert reward == 0.0, verdict


def test_the_real_fix_scores_one(docker_backend):
    """The control: the same path scores a genuine fix."""
    reward, verdict = episode(docker_backend, call("replace_in_file", **FIX))
    assert reward == 1.0, verdict


def _shell(env, command: str) -> str:
    _, _, _, _, info = env.step(call("run_shell", command=command))
    return info["messages"][-1]["content"]


def test_agent_code_runs_as_the_agent_and_cannot_touch_the_env_server(docker_backend):
    """Programs the env server's tools start are agent code: they run as the sandbox user, not as the env
    server's protected uid, so they cannot signal or trace it."""
    env = toolgym.make(ENV, backend=docker_backend)
    try:
        env.reset(seed=0)
        uids = _shell(env, "grep Uid /proc/self/status")
        assert uids.split()[-4:] == ["1000"] * 4, uids
        out = _shell(env, "kill -9 -1; echo done")
        assert "done" in out or "exit code" in out
        # the env server is alive: the fix still scores
        env.step(call("replace_in_file", **FIX))
        _, reward, terminated, _, info = env.step({"content": "Fixed it."})
        assert terminated and reward == 1.0 and "env_error" not in info, info.get("verdict")
    finally:
        env.close()


def test_every_agent_process_is_dead_before_the_verifier_runs(docker_backend):
    """A daemon the agent leaves behind (escaping its command's process group) is gone by verification."""
    env = toolgym.make(ENV, backend=docker_backend)
    try:
        env.reset(seed=0)
        _shell(env, "setsid nohup sh -c 'while true; do sleep 0.05; done' > /dev/null 2>&1 &")
        ps = "cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '"
        # the daemon starts after the shell returns: on a busy machine it may take a moment to show
        deadline = time.monotonic() + 5
        while "while true" not in env.lease.sandbox.run(ps, timeout_s=5).stdout:
            assert time.monotonic() < deadline, "the agent's daemon never started"
            time.sleep(0.05)
        env.step(call("replace_in_file", **FIX))
        _, reward, terminated, _, _ = env.step({"content": "Fixed it."})
        assert terminated and reward == 1.0
        assert "while true" not in env.lease.sandbox.run(ps, timeout_s=5).stdout
    finally:
        env.close()

"""Categories where agent code runs (code, code_interpreter): the env store is not visible to it, a session
keeps its variables, and agent code that kills the env server ends the episode instead of crashing it."""

from __future__ import annotations

import pytest
from toolgym.envs import ToolEnv
from toolgym.synth.reference import reference_envs


def _env(prefix: str, backend) -> ToolEnv:
    return ToolEnv(next(p for p in reference_envs() if p.name.startswith(prefix)), backend=backend)


def _call(env, name: str, **arguments) -> str:
    _, _, _, truncated, info = env.step({"tool_calls": [{"name": name, "arguments": arguments}]})
    return info.get("env_error") or info["messages"][-1]["content"]


@pytest.fixture(scope="module")
def code_env(module_docker):
    env = _env("code_textkit_", module_docker)
    yield env
    env.close()


def test_agent_code_cannot_read_the_store_or_the_verifier(code_env):
    code_env.reset(seed=0)
    out = _call(
        code_env,
        "run_shell",
        command="ls -A /mnt; grep -rl check_fix /mnt /tmp /workspace /opt /home /root 2>/dev/null; echo end",
    )
    assert out.endswith("end\n") and "verify" not in out and "envstore" not in out
    assert code_env.env_dir.name not in out


def test_agent_code_cannot_kill_the_env_server(code_env):
    code_env.reset(seed=0)
    out = _call(code_env, "run_shell", command="kill -9 $PPID; kill -9 -1; echo still-here")
    assert "still-here" in out or "not permitted" in out
    assert "core.py" in _call(code_env, "list_files")  # the same episode goes on


def test_an_env_server_that_dies_ends_the_episode(code_env):
    code_env.reset(seed=0)
    code_env.lease.server.session.close()  # as if it had died
    _, reward, terminated, truncated, info = code_env.step(
        {"tool_calls": [{"name": "list_files", "arguments": {}}]}
    )
    assert truncated and not terminated and reward == 0.0 and info["env_error"]
    code_env.reset(seed=0)  # a verified sandbox reset and a new env server
    assert "core.py" in _call(code_env, "list_files")


def test_code_interpreter_session_keeps_variables_and_reports_errors(module_docker):
    env = _env("code_interpreter", module_docker)
    env.reset(seed=0)
    assert _call(env, "python", code="x = 6\nprint('hi')") == "hi\n"
    assert _call(env, "python", code="x * 7") == "42\n"
    assert "ZeroDivisionError" in _call(env, "python", code="1 / 0")
    assert "sales.csv" in _call(env, "python", code="import os; sorted(os.listdir('.'))")
    env.reset(seed=0)  # a new episode: a fresh session
    assert "NameError" in _call(env, "python", code="x")
    env.close()


def test_a_cell_past_its_limit_is_interrupted_and_the_session_survives(tmp_path, module_docker):
    import json
    import shutil

    from toolgym.envs.spec import load_env_spec, write_env_spec

    from .conftest import readable

    src = next(p for p in reference_envs() if p.name == "code_interpreter")
    env_dir = tmp_path / "store" / "code_interpreter"
    shutil.copytree(src, env_dir)
    spec = load_env_spec(env_dir)
    write_env_spec(
        env_dir, spec.model_copy(update={"limits": spec.limits.model_copy(update={"call_timeout_s": 7})})
    )
    readable(tmp_path / "store")
    env = ToolEnv(env_dir, backend=module_docker)
    env.reset(seed=0)
    _call(env, "python", code="kept = 41")
    out = _call(env, "python", code="import time\nwhile True:\n    time.sleep(0.01)")
    assert "KeyboardInterrupt" in out and "[interrupted after 2 s; the session keeps its variables" in out
    assert _call(env, "python", code="kept + 1") == "42\n"
    out = _call(
        env, "python", code="import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    )
    assert out.startswith("Error: the code ran past 2 s and would not stop; the session was restarted")
    assert "NameError" in _call(env, "python", code="kept")
    env.close()
    assert json.loads((env_dir / "env.json").read_text())["limits"]["call_timeout_s"] == 7


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="only root makes cgroups")
def test_agent_code_the_env_server_runs_is_in_the_agent_cgroup(code_env, module_docker):
    """Programs the (trusted) env server forks for the agent come from its zygote, which joined the agent cgroup
    (sandbox/inside/server.py, AgentCgroup); the env server itself stays outside it."""

    def memory_cgroup(text: str) -> str:
        return next(line.split(":", 2)[2] for line in text.splitlines() if ":memory:" in line)

    code_env.reset(seed=0)
    shell = _call(code_env, "run_shell", command="cat /proc/self/cgroup; echo; cat /proc/$PPID/cgroup")
    program, parent = shell.split("\n\n", 1)
    assert memory_cgroup(program).endswith("/agent"), shell
    env = _env("code_interpreter", module_docker)
    try:
        env.reset(seed=0)
        cell = _call(env, "python", code="print(open('/proc/self/cgroup').read())")
        assert memory_cgroup(cell).endswith("/agent"), cell
        server = env.lease.server.session.run("open('/proc/self/cgroup').read()").result
        assert not memory_cgroup(eval(server)).endswith("/agent"), server
    finally:
        env.close()

"""The code-interpreter's Python sessions are forked from one pristine interpreter (the zygote) the env server
keeps. A forked session must be what a freshly started one was (modules, argv, path, open files, signal
handlers, ids), share nothing with another session, run as the agent through and through, and leave the zygote
out of agent code's reach in a protected sandbox; where the zygote is gone, sessions still start."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from toolgym.envs.inside import toolgym_env
from toolgym.envs.lease import EnvLease
from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import EnvSpec
from toolgym.synth.code_interpreter import FAMILY

PROBE = """
import os, signal, sys
{"modules": sorted(sys.modules), "argv": sys.argv, "path": sys.path, "fds": sorted(os.listdir("/proc/self/fd")),
 "cwd": os.getcwd(), "names": sorted(k for k in globals() if k != "__builtins__"),
 "handlers": [str(signal.getsignal(s)) for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE, signal.SIGTERM)],
 "ids": [os.getresuid(), os.getresgid()], "session": os.getsid(0) == os.getpid(), "flags": str(sys.flags),
 "dumpable": open("/proc/self/status").read().count("Uid")}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    key = FAMILY.plan("tiny")[0]
    env_dir = FAMILY.build_env(tmp_path_factory.mktemp("ci"), key, seed=0)
    return env_dir, FAMILY.variant_config(key, 0)["python"], load_tools_module(env_dir / "tools.py")


def _run(module, cwd: str, code: str):
    session = module._Session(cwd)
    try:
        reply = session.run(code, 20.0)
        return reply, session
    finally:
        session.close()


def test_a_forked_session_is_a_fresh_interpreter(env, tmp_path):
    _, _, module = env
    forked, session = _run(module, str(tmp_path), PROBE)
    assert isinstance(session.proc, module._Forked)
    saved = dict(toolgym_env.zygotes())
    toolgym_env.zygotes().update(dict.fromkeys(saved))  # none serves: the session starts its own interpreter
    try:
        fresh, session = _run(module, str(tmp_path), PROBE)
    finally:
        toolgym_env.zygotes().update(saved)
    assert not isinstance(session.proc, module._Forked)
    assert forked["output"] == fresh["output"] == ""
    got, want = eval(forked["result"]), eval(fresh["result"])  # noqa: S307 - our own probe's repr
    # The reply pipe's number is the one thing that differs (3 there; whatever this process had free here),
    # with the descriptor listdir holds open while it reads /proc/self/fd.
    assert got.pop("argv") == ["-c", "3"] and want.pop("argv")[0] == "-c"
    assert got.pop("fds") == ["0", "1", "2", "3", "4"] and len(want.pop("fds")) == 5
    assert got == want and got["session"]


def test_sessions_share_nothing(env, tmp_path):
    _, _, module = env
    leak = "import json, sys\njson.leaked = 1\nsys.modules['leaked'] = json\nimport collections\nsys.path.append('/x')"
    assert _run(module, str(tmp_path), leak)[0]["output"] == ""
    reply, _ = _run(
        module,
        str(tmp_path),
        "import json, sys\n[hasattr(json, 'leaked'), 'leaked' in sys.modules, '/x' in sys.path]",
    )
    assert reply["result"] == "[False, False, False]"


def test_closing_a_session_stops_what_it_started(env, tmp_path):
    _, _, module = env
    code = "import subprocess\np = subprocess.Popen(['sleep', '60'])\np.pid"
    reply, _ = _run(module, str(tmp_path), code)
    pid = int(reply["result"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the session's child outlived the session")


def test_a_dead_zygote_is_started_again(env, tmp_path):
    _, _, module = env
    assert _run(module, str(tmp_path), "1 + 1")[0]["result"] == "2"
    key = (("-u",), None, module._REPL_IMPORTS)
    zygote = toolgym_env.zygotes()[key]
    assert zygote is not None and zygote.served
    os.kill(zygote.pid, signal.SIGKILL)
    assert _run(module, str(tmp_path), "1 + 2")[0]["result"] == "3"  # this one starts its own interpreter
    assert _run(module, str(tmp_path), "1 + 3")[0]["result"] == "4"
    assert toolgym_env.zygotes()[key] is not None and toolgym_env.zygotes()[key] is not zygote


HOSTILE = """
import os, signal
out = {"ids": os.getresuid()}
zygote = os.getppid()
for sig in (signal.SIGSTOP, signal.SIGKILL):
    try:
        os.kill(zygote, sig)
        out[sig.name] = "sent"
    except PermissionError:
        out[sig.name] = "refused"
try:
    open(f"/proc/{zygote}/mem", "rb").close()
    out["mem"] = "opened"
except OSError:
    out["mem"] = "refused"
out["zygote"] = zygote
out
"""


@pytest.mark.docker
def test_agent_code_cannot_reach_the_zygote_in_a_sandbox(env, docker_backend):
    env_dir, python, _ = env
    spec = EnvSpec.model_validate_json((env_dir / "env.json").read_text())
    lease = EnvLease(backend=docker_backend, transport="push")
    try:
        ops = lease.open(env_dir, spec)
        seen = []
        for episode in range(2):  # the reset between them stops every process of the agent's
            ops.reset({"id": f"t{episode}"})
            reply = ops.call(python, {"code": HOSTILE})
            assert reply["ok"], reply
            got = eval(reply["content"])  # noqa: S307 - the probe's repr
            assert got["ids"] == (1000, 1000, 1000), got  # the agent's through and through
            assert (got["SIGSTOP"], got["SIGKILL"], got["mem"]) == ("refused",) * 3, got
            seen.append(got["zygote"])
        assert seen[0] == seen[1]  # one zygote served both episodes
    finally:
        lease.close()


def test_a_session_reply_is_json(env, tmp_path):
    _, _, module = env
    reply, _ = _run(module, str(tmp_path), "print('x')\n{'a': [1]}")
    assert json.loads(json.dumps(reply)) == {"output": "x\n", "result": "{'a': [1]}"}

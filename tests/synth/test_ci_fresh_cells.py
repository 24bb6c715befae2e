"""A cell whose answer cannot depend on running it (empty, one literal, one name a fresh namespace lacks) is
answered without starting the Python session while none runs, with exactly the text a fresh session gives;
every other cell, and every cell once a session runs, goes to the session. The same in a Docker sandbox, whose
env server is another interpreter than the session's parent here."""

from __future__ import annotations

import json

import pytest
from toolgym.envs.lease import EnvLease
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import EnvSpec
from toolgym.synth.code_interpreter import FAMILY

FRESH = [
    "",
    "# only a comment\n",
    "\n\n",
    "42",
    "0.0",
    "1e400",
    "3j",
    "'Paris'",
    "b'\\x00raw'",
    "'''two\nlines'''",
    "None",
    "True",
    "...",
    "0x" + "f" * 40,
    "What",
    "Saturday",
    "a",
    "_",
    "prnt",
    "lenn",
    "exi",
    "Tru",
    "__nam",
    "__file__",
    "__doc__x",
    "\n\n# a name on line 3\nwholesale",
    "(Paris)",
    "é",
]
SESSION = [
    "x = 1",
    "1 + 1",
    "-1",
    "print",
    "exit",
    "__name__",
    "__builtins__",
    "__doc__",
    "What; Saturday",
    "What\nSaturday",
    "pass",
    "import os",
    "0x" + "f" * 5000,  # a literal too long to print: the session's ValueError
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    key = FAMILY.plan("tiny")[0]
    env_dir = FAMILY.build_env(tmp_path_factory.mktemp("ci"), key, seed=0)
    return env_dir, FAMILY.variant_config(key, 0)["python"], load_tools_module(env_dir / "tools.py")


@pytest.mark.parametrize("code", FRESH)
def test_a_fresh_cell_reads_as_a_fresh_session_answers_it(env, code, tmp_path):
    _, _, module = env
    tree, error = module._parse(code)
    assert error is None
    fresh = module._fresh_reply(tree)
    session = module._Session(str(tmp_path))
    try:
        reply = session.run(code, 10.0)
    finally:
        session.close()
    assert fresh is not None and fresh == reply, json.dumps([fresh, reply])


@pytest.mark.parametrize("code", SESSION)
def test_other_cells_need_the_session(env, code):
    assert env[2]._fresh_reply(env[2]._parse(code)[0]) is None


def _contents(ops, python: str, cells: list[str]) -> list[str]:
    ops.reset({"id": "t"})
    return [ops.call(python, {"code": c})["content"] for c in cells]


def test_fresh_cells_start_no_interpreter_until_one_needs_it(env, monkeypatch):
    env_dir, python, _ = env
    starts = []
    server = LocalEnvServer(env_dir)
    session = server.server.tools_module._Session
    start = session.__init__

    def counted(self, cwd):
        starts.append(cwd)
        start(self, cwd)

    monkeypatch.setattr(session, "__init__", counted)
    try:
        probes = ["What", "42", "'Paris'", "", "x = 'now a session'", "What", "x", "42"]
        got = _contents(server, python, probes)
        assert len(starts) == 1  # the first cell that binds a name
        # The same cells, each after a cell that starts the session and changes nothing: the session's text.
        for code, early in zip(probes[:4], got[:4], strict=True):
            assert _contents(server, python, ["pass", code])[1] == early
        assert got[5] == got[0] and "NameError" in got[0]
        assert got[6].strip() == "'now a session'" and got[7].strip() == "42"
    finally:
        server.close()


def test_fresh_cells_in_a_sandbox_read_as_its_session_answers_them(env, docker_backend):
    env_dir, python, _ = env
    spec = EnvSpec.model_validate_json((env_dir / "env.json").read_text())
    lease = EnvLease(backend=docker_backend, transport="push")
    try:
        ops = lease.open(env_dir, spec)
        for code in FRESH[:4] + ["What", "prnt", "exi", "_", "__nam", "1e400", "0x" + "f" * 40]:
            assert _contents(ops, python, [code]) == _contents(ops, python, ["pass", code])[1:], code
    finally:
        lease.close()


def test_a_session_whose_cells_hide_traceback_still_answers(env, tmp_path):
    """The session imports traceback only for a failing cell, after the agent's files are in the folder: one
    that shadows it costs the traceback, never the session."""
    session = env[2]._Session(str(tmp_path))
    try:
        session.run("open('traceback.py', 'w').write('raise ImportError(1)')\nx = 7", 10.0)
        failed = session.run("1 / 0", 10.0)
        after = session.run("x * 6", 10.0)
    finally:
        session.close()
    assert failed is not None and failed["output"].startswith("ZeroDivisionError")
    assert after == {"output": "", "result": "42"}

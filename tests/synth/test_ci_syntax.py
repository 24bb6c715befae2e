"""A cell that does not parse is answered without starting the Python session, with exactly the text the
session itself would give (the same parse, the same formatting)."""

from __future__ import annotations

import json

import pytest
from toolgym.envs.schema import load_tools_module
from toolgym.synth.code_interpreter import FAMILY

BAD = [
    "What is the answer?",
    "def f(:\n  pass",
    "x = (1,\n",
    "print('a'",
    "\x00",
    "  indented = 1",
    "é = 1 +",
]


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    key = FAMILY.plan("tiny")[0]
    env = FAMILY.build_env(tmp_path_factory.mktemp("ci"), key, seed=0)
    return env, load_tools_module(env / "tools.py")


@pytest.mark.parametrize("code", BAD)
def test_a_malformed_cell_reads_as_the_session_would_answer_it(tools, code, tmp_path):
    env, module = tools
    early = module._syntax_error(code)
    assert early is not None and "Error" in early
    session = module._Session(str(tmp_path))
    try:
        reply = session.run(code, 10.0)
    finally:
        session.close()
    assert reply is not None and reply["result"] is None
    assert early == reply["output"], json.dumps([early, reply["output"]])


def test_a_cell_that_parses_goes_to_the_session(tools):
    _, module = tools
    assert module._syntax_error("x = 1\nx + 1") is None

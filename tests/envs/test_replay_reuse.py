"""Admission replays reuse an untouched scratch copy and answer repeated reads once: never across a write,
never in a live episode, and always with the same verdicts as fresh episodes."""

from __future__ import annotations

from toolgym.envs import Script, ToolCall
from toolgym.envs.runtime import LocalEnvServer

from .conftest import write_toy_env


def _task(value: int, tid: str = "t") -> dict:
    return {"id": tid, "verifier": "check_counter", "params": {"value": value}}


def test_reuse_gives_the_verdicts_of_fresh_episodes(tmp_path):
    ops = LocalEnvServer(write_toy_env(tmp_path))
    try:
        bump = ToolCall(name="bump", arguments={"by": 5})
        add = ToolCall(name="add", arguments={"a": 1})
        scripts = [
            Script(_task(0), [add, add]),  # reads only: the copy stays as it was
            Script(_task(0), []),
            Script(_task(5), [add, bump]),  # a write: the next episode must get a fresh copy
            Script(_task(0), [add]),
            Script(_task(5), [bump]),
            Script(_task(10), [bump, bump]),
            Script(_task(0), []),
        ]
        rewards = [v["reward"] for v in ops.replay_many(scripts)]
        assert rewards == [1.0] * len(scripts)
        # the same scripts one request each (always a fresh copy) agree
        assert [ops.replay_many([s])[0]["reward"] for s in scripts] == rewards
    finally:
        ops.close()


def test_a_read_that_writes_anyway_is_caught(tmp_path):
    env = write_toy_env(tmp_path)
    tools = (env / "tools.py").read_text()
    # A tool labelled read that changes the database: the reuse check sees the changed rows, not the label.
    (env / "tools.py").write_text(tools.replace('@tool(access="write")\ndef bump', "@tool\ndef bump"))
    ops = LocalEnvServer(env)
    try:
        bump = ToolCall(name="bump", arguments={"by": 3})
        verdicts = ops.replay_many([Script(_task(3), [bump]), Script(_task(0), []), Script(_task(3), [bump])])
        assert [v["reward"] for v in verdicts] == [1.0, 1.0, 1.0]
    finally:
        ops.close()

"""Admission replays reuse an untouched scratch copy and answer repeated reads once: never across a write,
never in a live episode, and always with the same verdicts as fresh episodes."""

from __future__ import annotations

import json
import textwrap

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


def test_a_read_of_the_task_clock_is_never_shared_across_tasks(tmp_path):
    """A read that used nothing of its task is answered once for every task; one that read the task's clock,
    seed, id or random numbers is answered per task, exactly as a fresh episode would."""
    env = write_toy_env(tmp_path)
    tools = (env / "tools.py").read_text()
    (env / "tools.py").write_text(
        tools
        + textwrap.dedent(
            '''
            RUNS = []


            @tool
            def plain(ctx) -> str:
                """The same for every task."""
                RUNS.append("plain")
                return "constant"


            @tool
            def today(ctx) -> str:
                """The task's date."""
                RUNS.append("today")
                return ctx.today()


            @tool
            def lucky(ctx) -> int:
                """The task's random number."""
                RUNS.append("lucky")
                return ctx.rng.randint(0, 10**9)
            '''
        )
    )
    spec = json.loads((env / "env.json").read_text())
    for name in ("plain", "today", "lucky"):
        spec["tools"].append(
            {
                "type": "function",
                "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
            }
        )
    (env / "env.json").write_text(json.dumps(spec))
    ops = LocalEnvServer(env)
    try:
        calls = [ToolCall(name=n, arguments={}) for n in ("plain", "today", "lucky")]
        tasks = [_task(0, f"task-{i}") for i in range(6)]
        cached = ops.replay_many([Script(t, calls, observe=True) for t in tasks] * 2)
        runs = ops.server.tools_module.RUNS
        assert runs.count("plain") == 1
        assert runs.count("today") == len(tasks)  # once per task
        assert runs.count("lucky") == 2 * len(tasks)  # it moves the task's random numbers: never cached
        fresh = []
        for t in tasks:
            alone = LocalEnvServer(env)
            try:
                fresh.append(alone.replay_many([Script(t, calls, observe=True)])[0])
            finally:
                alone.close()
        assert [v["observed"] for v in cached] == [v["observed"] for v in fresh] * 2
        assert len({v["observed"][1]["content"] for v in fresh}) > 1  # the clock does differ by task
    finally:
        ops.close()


def test_a_connection_a_tool_reconfigured_is_not_handed_to_the_next_episode(tmp_path):
    env = write_toy_env(tmp_path)
    tools = (env / "tools.py").read_text()
    (env / "tools.py").write_text(
        tools
        + textwrap.dedent(
            '''
            @tool
            def tuples(ctx) -> str:
                """Rows as tuples (and the connection left that way)."""
                ctx.db.row_factory = None
                return repr(ctx.db.execute("SELECT value FROM counter").fetchall())


            @tool
            def dicts(ctx) -> str:
                """Rows as dicts."""
                return repr(ctx.rows("SELECT value FROM counter"))
            '''
        )
    )
    spec = json.loads((env / "env.json").read_text())
    for name in ("tuples", "dicts"):
        spec["tools"].append(
            {
                "type": "function",
                "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
            }
        )
    (env / "env.json").write_text(json.dumps(spec))
    ops = LocalEnvServer(env)
    try:
        dicts = Script(_task(0, "b"), [ToolCall(name="dicts", arguments={})], observe=True)
        got = ops.replay_many([Script(_task(0, "a"), [ToolCall(name="tuples", arguments={})]), dicts])
        assert got[1]["observed"][0]["content"] == "[{'value': 0}]"
    finally:
        ops.close()


def test_other_answers_of_the_same_calls_get_the_verdicts_of_scripts_of_their_own(tmp_path):
    env = write_toy_env(tmp_path)
    (env / "verify.py").write_text(
        (env / "verify.py").read_text()
        + textwrap.dedent(
            '''
            def check_once(ctx, answer, calls, expected):
                """A verifier that writes: a second verify on the same end state would see its own write."""
                ctx.db.execute("UPDATE counter SET value = value + 1")
                bumped = ctx.db.execute("SELECT value FROM counter").fetchone()[0]
                return float(str(answer).strip() == expected and bumped == 1)
            '''
        )
    )
    ops = LocalEnvServer(env)
    try:
        add = ToolCall(name="add", arguments={"a": 2, "b": 3})
        answers = ["5", "4", " 5 ", "five"]
        for verifier in ("check_answer", "check_once"):
            task = {"id": "t", "verifier": verifier, "params": {"expected": "5"}}
            alone = [ops.replay_many([Script(task, [add], a)])[0] for a in answers]
            folded = ops.replay_many([Script(task, [add], answers[0], also=answers[1:])])[0]
            got = [folded, *folded.pop("also")]
            assert [(v["reward"], v["calls_ok"]) for v in got] == [
                (v["reward"], v["calls_ok"]) for v in alone
            ]
            assert [v["reward"] for v in alone] == [1.0, 0.0, 1.0, 0.0]
    finally:
        ops.close()

"""The env server in a Docker sandbox turns every bad call into a tool error for the model, enforces the
per-call limits, logs each call, and gives tools a clock and ids fixed per task."""

from __future__ import annotations

import json

import pytest
from toolgym.envs import ToolEnv


@pytest.fixture(scope="module")
def toy(toy_store, module_docker):
    env = ToolEnv(toy_store / "toy", backend=module_docker)
    yield env
    env.close()


def call(env, name: str, arguments) -> str:
    """One tool call in a fresh episode of toy-add; the tool message's content."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    env.reset(options={"task_id": "toy-add"})
    _, _, terminated, _, info = env.step(
        {
            "content": "",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}],
        }
    )
    tool_msg = info["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "c1" and not terminated
    return tool_msg["content"]


@pytest.mark.parametrize(
    "name, arguments, expected",
    [
        ("add", {"a": 2, "b": 3}, "5"),
        ("add", {"a": 2}, "3"),
        ("greet", {"name": "ada", "style": "loud"}, "HELLO ADA!"),
        (
            "mul",
            {"a": 1},
            "Error: there is no tool named 'mul'; the tools are: add, boom, bump, greet, huge, "
            "refuse, slow, stamp, submit.",
        ),
        ("add", '{"a": 2,', "Error: the arguments of add are not valid JSON"),
        ("add", "[1, 2]", "Error: the arguments of add must be a JSON object, got an array."),
        ("add", {"a": "two"}, "Error: argument 'a' must be an integer, got \"two\" (a string)."),
        ("add", {"a": True}, "Error: argument 'a' must be an integer, got true (a boolean)."),
        ("add", {"b": 1}, "Error: the call to add is missing the required argument 'a'."),
        ("add", {"a": 1, "c": 2}, "Error: the call to add got an unexpected argument 'c' (allowed: a, b)."),
        ("greet", {"name": "x", "style": "rude"}, 'Error: argument \'style\' must be one of "plain", "loud"'),
        ("boom", {}, "Error: boom failed with KeyError: 'missing' (line"),
        ("refuse", {}, "Error: no, ask nicely"),
        ("huge", {}, "Error: the result of huge is 100000 characters, over the limit of 5000; ask for less"),
        ("slow", {}, "Error: slow did not finish within 1 s; try a narrower request."),
    ],
)
def test_each_bad_call_is_a_tool_error_never_a_crash(toy, name, arguments, expected):
    assert call(toy, name, arguments).startswith(expected)


def test_the_call_log_records_every_call(toy):
    toy.reset(options={"task_id": "toy-add"})
    calls = [
        {"id": f"c{i}", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate([("add", '{"a": 1}'), ("nope", "{}"), ("add", '{"a": "x"}')])
    ]
    _, _, _, _, info = toy.step({"content": "", "tool_calls": calls})
    # Each call's outcome, with the kind of a failure from the server itself (not read off its wording).
    assert [(r["name"], r["ok"], r["error_kind"]) for r in info["tool_results"]] == [
        ("add", True, None),
        ("nope", False, "unknown_tool"),
        ("add", False, "invalid_arguments"),
    ]
    log = toy.call_log()
    assert [(c["name"], c["ok"]) for c in log] == [("add", True), ("nope", False), ("add", False)]
    assert [c.get("error_kind") for c in log] == [None, "unknown_tool", "invalid_arguments"]
    assert log[0]["arguments"] == {"a": 1} and len(log[0]["digest"]) == 16
    assert "must be an integer" in log[2]["error"]


def test_clock_ids_and_random_are_fixed_per_task(toy):
    first = json.loads(call(toy, "stamp", {}))
    again = json.loads(call(toy, "stamp", {}))
    assert first == again
    toy.reset(options={"task_id": "toy-bump"})
    _, _, _, _, info = toy.step({"tool_calls": [{"function": {"name": "stamp", "arguments": "{}"}}]})
    other = json.loads(info["messages"][-1]["content"])
    assert other["id"] != first["id"] and other["now"] != first["now"]


def test_reset_restores_the_state(toy):
    toy.reset(options={"task_id": "toy-bump"})
    before = toy.state_hash()
    toy.step({"tool_calls": [{"function": {"name": "bump", "arguments": '{"by": 5}'}}]})
    assert toy.state_hash() != before
    toy.reset(options={"task_id": "toy-bump"})
    assert toy.state_hash() == before

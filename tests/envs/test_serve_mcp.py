"""`toolgym envs serve-mcp`: an environment served as an MCP server on stdio, driven by the MCP SDK's own client
(stdio_client + ClientSession): list the tools, read the task, call the tools, submit, get the verdict."""

from __future__ import annotations

import sys

import anyio
import pytest
from toolgym.envs import IN_PROCESS, load_tasks
from toolgym.envs.mcp_serve import SUBMIT_TOOL, McpEpisode
from toolgym.synth.reference import reference_envs

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def order_desk():
    return next(d for d in reference_envs() if d.name == "order_desk")


async def drive(env_dir, task_id: str, calls: list[tuple[str, dict]], answer: str | None) -> dict:
    """Start `python -m toolgym.envs.mcp_serve` as the SDK's stdio client does, make `calls`, submit `answer`;
    what the client saw."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "toolgym.envs.mcp_serve", str(env_dir), "--task", task_id, "--backend", "docker"],
    )
    seen: dict = {"results": []}
    with anyio.fail_after(180):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                seen["instructions"] = init.instructions
                seen["tools"] = {t.name: t for t in (await session.list_tools()).tools}
                prompt = await session.get_prompt("task")
                seen["prompt"] = prompt.messages[0].content.text
                for name, arguments in calls:
                    result = await session.call_tool(name, arguments)
                    seen["results"].append((result.is_error, result.content[0].text))
                if answer is not None:
                    result = await session.call_tool(SUBMIT_TOOL, {"answer": answer})
                    seen["submitted"] = (result.is_error, result.content[0].text)
                    after = await session.call_tool("get_customer", {"customer_id": "C001"})
                    seen["after"] = (after.is_error, after.content[0].text)
    return seen


def test_an_mcp_client_drives_an_episode_to_reward_1():
    env_dir = order_desk()
    task = load_tasks(env_dir)[1]
    calls = [(c.name, c.arguments) for c in task.solution]
    seen = anyio.run(drive, env_dir, task.id, [("no_such_tool", {}), *calls], task.answer or "Done.")
    assert set(seen["tools"]) >= {"find_customer", "get_order", "change_quantity", SUBMIT_TOOL}
    assert seen["tools"]["get_order"].annotations.read_only_hint is True
    assert seen["tools"]["change_quantity"].annotations.read_only_hint is False
    assert seen["prompt"] == task.prompt[0] and task.prompt[0] in seen["instructions"]
    unknown, *made = seen["results"]
    assert unknown[0] and "there is no tool named 'no_such_tool'" in unknown[1]
    assert [error for error, _ in made] == [False] * len(calls)
    assert seen["submitted"][0] is False
    assert "reward 1 (the database is in the expected state)" in seen["submitted"][1]
    assert seen["after"][0] and "the episode has ended (reward 1)" in seen["after"][1]


def test_submitting_without_doing_the_task_scores_0():
    env_dir = order_desk()
    task = load_tasks(env_dir)[1]
    seen = anyio.run(drive, env_dir, task.id, [], "I changed the quantity to 4.")
    assert "reward 0" in seen["submitted"][1]


def test_an_imported_mcp_environment_is_served_back_over_mcp(tmp_path):
    """MCP both ways: the SDK's client -> serve-mcp -> a Docker sandbox -> McpToolset -> the notes server."""
    from tests.synth.mcp_servers import NOTES_REQUIREMENTS, import_notes
    from tests.synth.test_import_mcp import prepared

    prepared(NOTES_REQUIREMENTS)
    env_dir = import_notes(tmp_path)
    task = next(t for t in load_tasks(env_dir) if t.id == "notes-urgent")
    calls = [(c.name, c.arguments) for c in task.solution]
    seen = anyio.run(drive_notes, env_dir, task.id, calls)
    assert seen["results"][1][0] is False and '"urgent"' in seen["results"][1][1]
    assert "reward 1 (the notes are as asked)" in seen["submitted"][1]


async def drive_notes(env_dir, task_id: str, calls: list[tuple[str, dict]]) -> dict:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    code = "import sys; from toolgym.envs.mcp_serve import main; sys.exit(main(sys.argv[1:]))"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", code, str(env_dir), "--task", task_id, "--backend", "docker"],
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    seen: dict = {"results": []}
    with anyio.fail_after(180):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for name, arguments in calls:
                    result = await session.call_tool(name, arguments)
                    seen["results"].append((result.is_error, result.content[0].text))
                result = await session.call_tool(SUBMIT_TOOL, {"answer": "Tagged it."})
                seen["submitted"] = (result.is_error, result.content[0].text)
    return seen


def test_serve_mcp_never_runs_an_environment_in_process():
    with pytest.raises(ValueError, match="sandbox only"):
        McpEpisode(order_desk(), backend=IN_PROCESS)
    with pytest.raises(ValueError, match="has no task 'nope'"):
        McpEpisode(order_desk(), "nope", backend="docker")


def test_a_multi_turn_task_goes_on_turn_by_turn_over_mcp(tmp_path):
    """Each toolgym_submit ends a user turn: the next turn's messages come back, the last one the verdict."""
    from tests.envs import multiturn_env

    env_dir = multiturn_env.build(tmp_path)
    turns = multiturn_env.turns()
    seen = anyio.run(drive_turns, env_dir, f"{env_dir.name}-0", turns)
    assert seen[0] == (
        False,
        "The user replies: [system] The user may ask you to keep notes.\n\n"
        "What is B's balance now? Write it in a note.",
    )
    assert seen[1] == (False, "The user replies: Also order me a pizza.")
    assert seen[2] == (False, "The user replies: Move 10 back from B to A.")
    assert seen[3][0] is False and "reward 1 (all 4 turns match the ground truth)" in seen[3][1]


async def drive_turns(env_dir, task_id: str, turns: list[dict]) -> list:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "toolgym.envs.mcp_serve", str(env_dir), "--task", task_id, "--backend", "docker"],
    )
    replies = []
    with anyio.fail_after(180):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for turn in turns:
                    for c in turn["solution"]:
                        result = await session.call_tool(c["name"], c["arguments"])
                        assert not result.is_error, result.content[0].text
                    result = await session.call_tool(SUBMIT_TOOL, {"answer": turn["answer"]})
                    replies.append((result.is_error, result.content[0].text))
    return replies

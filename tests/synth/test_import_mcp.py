"""`toolgym envs import-mcp`: an MCP server's tools become an environment whose episodes each run the server, inside
the sandbox, as a process of their own; the client turns every way a server can fail into a tool error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import pytest
from toolgym.agent.loop import run_episode
from toolgym.agent.policies import OraclePolicy
from toolgym.envs import IN_PROCESS, ToolEnv, load_env_spec, load_tasks, validate_env
from toolgym.envs.inside import toolgym_env
from toolgym.envs.inside.toolgym_mcp import McpToolset
from toolgym.synth.importers.mcp import PRELOAD_MODULE, McpImportError, import_mcp

from tests.synth.mcp_servers import (
    NOTES_REQUIREMENTS,
    SERVERS,
    TIME_REQUIREMENTS,
    import_notes,
)

SEED_TITLES = ["Dentist", "Old ideas"]


@pytest.fixture(scope="module")
def notes_local(tmp_path_factory):
    """The notes server imported without requirements: in-process episodes use this host's MCP SDK."""
    return import_notes(tmp_path_factory.mktemp("store"), requirements=())


def prepared(lines: list[str]) -> None:
    """The requirement set ready for Docker sandboxes (offline from the wheel cache), or the test skipped."""
    from toolgym.sandbox.requirements import RequirementsError, prepare

    try:
        prepare(lines, log=lambda _: None)
    except RequirementsError as exc:
        pytest.skip(f"cannot prepare {lines}: {exc}")


def gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether process `pid` has ended (exited, or a zombie its parent has yet to reap) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def oracle(env: ToolEnv, task_id: str) -> float:
    return asyncio.run(run_episode(env, OraclePolicy(), task_id=task_id)).reward


def call(env: ToolEnv, name: str, arguments: dict) -> dict:
    """One tool call as an assistant step; the tool message."""
    action = {
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }
    _, _, _, _, info = env.step(action)
    return {"ok": info["tool_results"][0]["ok"], "content": info["messages"][-1]["content"]}


# -- what the import writes ------------------------------------------------------------------------------------
def test_import_writes_the_servers_tools_as_a_lenient_environment(tmp_path):
    env_dir = import_notes(tmp_path)
    spec = load_env_spec(env_dir)
    assert [t.name for t in spec.tools] == ["add_note", "list_notes", "get_note", "tag_note", "delete_note"]
    access = {t.name: t.access for t in spec.tools}
    assert access == {  # "read" exactly where the server says readOnlyHint
        "add_note": "write",
        "list_notes": "read",
        "get_note": "read",
        "tag_note": "write",
        "delete_note": "write",
    }
    add = spec.tool("add_note")
    assert add.function.parameters["required"] == ["title", "body"]
    assert add.returns["properties"]["id"] == {"title": "Id", "type": "string"}  # the outputSchema
    assert add.metadata["mcp"]["name"] == "add_note"
    assert (spec.category, spec.schema_check, spec.requirements) == ("general", "lenient", NOTES_REQUIREMENTS)
    assert spec.metadata["mcp"]["command"] == ["python3", "-m", "notes_server"]
    assert (env_dir / "lib" / "notes_server" / "server.py").is_file()
    preload = (env_dir / "lib" / f"{PRELOAD_MODULE}.py").read_text()
    assert "'notes_server.server'" in preload and "'mcp.server.mcpserver'" in preload
    assert "state_tool='list_notes'" in (env_dir / "tools.py").read_text()
    assert [t.id for t in load_tasks(env_dir)] == ["notes-count", "notes-groceries", "notes-urgent"]


def test_an_imported_environment_validates(notes_local):
    assert validate_env(notes_local) == []


def test_the_same_import_writes_the_same_bytes(tmp_path):
    a, b = import_notes(tmp_path / "a"), import_notes(tmp_path / "b")
    for rel in ("env.json", "tools.py", "verify.py", f"lib/{PRELOAD_MODULE}.py"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_tool_names_that_are_not_function_names_are_mapped(tmp_path):
    env_dir = import_mcp("python3 -m plain_server", "plain", tmp_path, lib=SERVERS)
    spec = load_env_spec(env_dir)
    assert "get_picture" in [t.name for t in spec.tools]
    assert spec.tool("get_picture").metadata["mcp"]["name"] == "get-picture"
    assert "names={'get_picture': 'get-picture'}" in (env_dir / "tools.py").read_text()
    assert spec.description == "A counter and some ways to fail."  # the server's instructions


def test_mistakes_are_one_sentence_naming_the_fix(tmp_path):
    with pytest.raises(McpImportError, match="did not answer initialize.*--lib"):
        import_mcp("python3 -m no_such_server", "x", tmp_path)
    with pytest.raises(McpImportError, match="not one of the server's tools"):
        import_mcp("python3 -m notes_server", "x", tmp_path, lib=SERVERS, state_tool="notes")
    with pytest.raises(McpImportError, match="not marked read-only"):
        import_mcp("python3 -m notes_server", "x", tmp_path, lib=SERVERS, state_tool="add_note")
    with pytest.raises(McpImportError, match="not a valid environment id"):
        import_mcp("python3 -m notes_server", "Bad Id", tmp_path, lib=SERVERS)


def test_the_command_line_imports(tmp_path, capsys):
    from toolgym.commands.mcp import add_mcp_parsers

    parser = argparse.ArgumentParser()
    add_mcp_parsers(parser.add_subparsers())
    args = parser.parse_args(
        ["import-mcp", "--command", "python3 -m notes_server", "--id", "cli-notes", "--out", str(tmp_path)]
        + ["--lib", str(SERVERS), "--state-tool", "list_notes", "--json"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["read_only"] == ["list_notes", "get_note"] and out["preload"] is True
    assert load_env_spec(tmp_path / "cli-notes").id == "cli-notes"


# -- episodes, in-process (trusted: the oracle) -----------------------------------------------------------------
def test_oracle_scores_1_and_doing_nothing_0_in_process(notes_local):
    env = ToolEnv(notes_local, backend=IN_PROCESS)
    try:
        for task in env.tasks:
            assert oracle(env, task.id) == 1.0, task.id
        env.reset(options={"task_id": "notes-groceries"})
        _, reward, terminated, _, info = env.step({"content": "Done."})
        assert terminated and reward == 0.0
        assert "not ['Dentist', 'Groceries']" in info["verdict"]["reason"]
    finally:
        env.close()


# -- the client: one server per episode, every failure a tool error ---------------------------------------------
PLAIN_TOOLS = {
    "bump": "write",
    "count": "read",
    "nap": "write",
    "die": "write",
    "fail": "write",
    "get_picture": "read",
}


@pytest.fixture(params=["forked", "subprocess"])
def plain(request, tmp_path, monkeypatch):
    """The stdlib server as a toolset: `python -m` (forked from a zygote) or a script path (a subprocess)."""
    monkeypatch.syspath_prepend(str(SERVERS))  # the server inherits sys.path as PYTHONPATH
    if request.param == "forked":
        command = [sys.executable, "-m", "plain_server"]
    else:
        command = [sys.executable, str(SERVERS / "plain_server.py")]
    toolset = McpToolset(command, PLAIN_TOOLS, names={"get_picture": "get-picture"}, state_tool="count")
    contexts = []

    def episode(task_id: str = "t", call_timeout_s: float = 10.0):
        ctx = toolgym_env.Context(
            str(tmp_path / f"ep{len(contexts)}"), task_id, call_timeout_s=call_timeout_s
        )
        toolset.start(ctx)
        contexts.append(ctx)
        return ctx

    yield toolset, episode, request.param
    for ctx in contexts:
        ctx.close()


def test_each_episode_has_a_server_of_its_own(plain):
    toolset, episode, how = plain
    first, second = episode(), episode()
    assert (toolset.call(first, "bump", {}), toolset.call(first, "bump", {})) == ("1", "2")
    assert toolset.call(second, "bump", {}) == "1"  # nothing of the first episode's state
    assert toolset.snapshot(first) == {"count": 2} and toolset.snapshot(second) == {"count": 1}
    server = first.objects["mcp"]["server"]
    assert server.forked == (how == "forked")
    pid = server.pid
    first.close()
    assert gone(pid)  # the episode's end killed its server


def test_the_next_episodes_server_is_started_ahead_and_untouched(plain):
    toolset, episode, _ = plain
    first = episode()
    (spare, _), *more = toolset._spares
    assert not more and spare.alive() and spare.cwd != first.state_dir  # a working folder of its own
    assert toolset.call(first, "bump", {}) == "1"
    second = episode()
    assert second.objects["mcp"]["server"] is spare
    assert toolset.snapshot(second) == {"count": 0}
    second.close()
    assert not os.path.exists(spare.cwd)  # removed with its server


def test_results_and_errors_reach_the_model(plain):
    toolset, episode, _ = plain
    ctx = episode()
    assert toolset.call(ctx, "get_picture", {}) == "[image image/png, 8 base64 characters]"
    assert toolset.call(ctx, "count", {}) == {"count": 0}  # structured content alone: JSON data
    with pytest.raises(toolgym_env.ToolError, match="^that did not work$"):
        toolset.call(ctx, "fail", {})  # isError


def test_a_slow_call_times_out_below_the_env_servers_limit(plain):
    toolset, episode, _ = plain
    ctx = episode(call_timeout_s=1.0)
    with pytest.raises(toolgym_env.ToolError, match="did not finish within 0.75 s"):
        toolset.call(ctx, "nap", {"seconds": 1.2})
    # The server lives on: the next call is answered once the nap is over, and the nap's late answer is dropped.
    assert toolset.call(ctx, "bump", {}) == "1"


def test_a_server_that_dies_is_a_tool_error_for_the_rest_of_the_episode(plain):
    toolset, episode, _ = plain
    ctx = episode()
    with pytest.raises(toolgym_env.ToolError, match="exited.*dying as asked"):
        toolset.call(ctx, "die", {})
    with pytest.raises(toolgym_env.ToolError, match="state is lost for this episode"):
        toolset.call(ctx, "bump", {})
    assert "error" in toolset.snapshot(ctx)
    killed = episode()
    os.killpg(killed.objects["mcp"]["server"].pid, signal.SIGKILL)
    with pytest.raises(toolgym_env.ToolError, match="the MCP server"):
        toolset.call(killed, "bump", {})
    assert toolset.call(episode(), "bump", {}) == "1"  # the next episode starts a new one


def test_a_server_that_does_not_start_fails_its_calls(tmp_path):
    toolset = McpToolset([sys.executable, "-c", "import sys; sys.exit('no server here')"], {"x": "write"})
    ctx = toolgym_env.Context(str(tmp_path), "t")
    toolset.start(ctx)
    with pytest.raises(toolgym_env.ToolError, match="did not start.*no server here"):
        toolset.call(ctx, "x", {})
    ctx.close()


# -- episodes in Docker sandboxes --------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.slow
def test_notes_in_docker_oracle_no_leak_and_do_nothing(tmp_path):
    prepared(NOTES_REQUIREMENTS)
    env = ToolEnv(import_notes(tmp_path), backend="docker")
    try:
        assert oracle(env, "notes-groceries") == 1.0  # adds Groceries, deletes Old ideas
        sandbox = env.lease.sandbox
        for task in env.tasks:
            assert oracle(env, task.id) == 1.0, task.id
        env.reset(options={"task_id": "notes-count"})
        assert env.lease.sandbox is sandbox  # the same sandbox: only the episode's own server process is new
        listed = call(env, "list_notes", {})
        assert listed["ok"] and [n["title"] for n in json.loads(listed["content"])["notes"]] == SEED_TITLES
        env.reset(options={"task_id": "notes-groceries"})
        _, reward, terminated, _, _ = env.step({"content": "All done!"})
        assert terminated and reward == 0.0
        env.reset(options={"task_id": "notes-urgent"})
        wrong = call(env, "tag_note", {"note_id": "n9", "tag": "urgent"})
        assert not wrong["ok"] and "there is no note 'n9'" in wrong["content"]
    finally:
        env.close()


@pytest.mark.docker
@pytest.mark.slow
def test_mcp_server_time_from_pypi_in_docker(tmp_path):
    pytest.importorskip(
        "mcp_server_time",
        reason="the import runs the server on this host: pip install mcp-server-time==2026.10.19",
    )
    prepared(TIME_REQUIREMENTS)
    env_dir = import_mcp(
        "python3 -m mcp_server_time --local-timezone UTC",
        "mcp-time",
        tmp_path,
        requirements=TIME_REQUIREMENTS,
    )
    task = {
        "id": "time-tokyo-kolkata",
        "env_id": "mcp-time",
        "category": "general",
        "prompt": ["It is 12:00 in Tokyo. What time is it in Kolkata?"],
        "verifier": "answer_contains",
        "params": {"text": "08:30"},
        "solution": [
            {
                "name": "convert_time",
                "arguments": {
                    "source_timezone": "Asia/Tokyo",
                    "time": "12:00",
                    "target_timezone": "Asia/Kolkata",
                },
            }
        ],
        "answer": "It is 08:30 in Kolkata.",
        "provenance": {"producer": "import", "family": "mcp"},
    }
    (env_dir / "tasks.jsonl").write_text(json.dumps(task) + "\n")
    assert {t.name: t.access for t in load_env_spec(env_dir).tools} == {
        "get_current_time": "read",
        "convert_time": "read",
    }
    env = ToolEnv(env_dir, backend="docker")
    try:
        assert oracle(env, "time-tokyo-kolkata") == 1.0
        env.reset()
        converted = call(env, "convert_time", task["solution"][0]["arguments"])
        assert converted["ok"] and json.loads(converted["content"])["target"]["datetime"].endswith(
            "T08:30:00+05:30"
        )
        now = call(env, "get_current_time", {"timezone": "Europe/Warsaw"})
        assert (
            now["ok"] and json.loads(now["content"])["timezone"] == "Europe/Warsaw"
        )  # the sandbox's tz data
        bad = call(
            env, "convert_time", {"source_timezone": "Mars/Base", "time": "12:00", "target_timezone": "UTC"}
        )
        assert not bad["ok"] and "Invalid timezone" in bad["content"]
    finally:
        env.close()


@pytest.mark.docker
def test_a_server_that_runs_agent_code_is_imported_as_such(tmp_path):
    """--category code_interpreter: the sandbox counts as running agent code (pushed, never mounted; tainted after
    an episode, so the next one gets a reset sandbox), and answers still verify."""
    from toolgym.envs import TaskSpec, validate_env, write_tasks
    from toolgym.synth.importers.mcp import import_mcp

    from tests.synth.mcp_servers import NOTES_TASKS, NOTES_VERIFY, SERVERS

    prepared(NOTES_REQUIREMENTS)
    env_dir = import_mcp(
        "python3 -m notes_server",
        "mcp-notes-code",
        tmp_path,
        lib=SERVERS,
        requirements=NOTES_REQUIREMENTS,
        state_tool="list_notes",
        verify=NOTES_VERIFY,
        category="code_interpreter",
    )
    tasks = [
        TaskSpec.model_validate_json(line) for line in NOTES_TASKS.read_text().splitlines() if line.strip()
    ]
    update = {"category": "code_interpreter", "env_id": "mcp-notes-code"}
    write_tasks(env_dir, [t.model_copy(update=update) for t in tasks])
    assert validate_env(env_dir) == []
    env = ToolEnv(env_dir, backend="docker")
    try:
        assert env.runs_agent_code
        assert oracle(env, "notes-count") == 1.0
        # pushed (never mounted), and tainted: the next episode gets a reset sandbox
        assert env.lease.sandbox.tainted and env.lease.server.env_path is None
        assert oracle(env, "notes-count") == 1.0
    finally:
        env.close()

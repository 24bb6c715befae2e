"""Multi-turn tasks over class-based tools: per-turn verification against the ground truth, the oracle turn by
turn, per-turn tools and budgets, and the policies that a once-at-the-end check would have passed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from toolgym.agent.loop import Budgets, run_episode
from toolgym.agent.policies import OraclePolicy, Turn
from toolgym.envs import IN_PROCESS, ToolEnv, validate_env

from tests.conftest import backend_or_skip
from tests.envs import multiturn_env


class Scripted:
    """Plays fixed steps: a list of calls ({"name", "arguments"}) is one assistant message, a string an answer."""

    name = "scripted"
    trusted = True

    def __init__(self, steps: list) -> None:
        self.steps = steps

    def start(self, task) -> None:
        self.i = 0

    async def act(self, messages, tools) -> Turn:
        step = self.steps[min(self.i, len(self.steps) - 1)]
        self.i += 1
        if isinstance(step, str):
            return Turn(message={"role": "assistant", "content": step})
        calls = [
            {
                "id": f"c{self.i}_{k}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for k, c in enumerate(step)
        ]
        return Turn(message={"role": "assistant", "content": "", "tool_calls": calls})


def play(env_dir, policy, backend=IN_PROCESS, **env_kwargs):
    env = ToolEnv(env_dir, backend=backend, **env_kwargs)
    try:
        return asyncio.run(run_episode(env, policy, budgets=Budgets(max_steps=30)))
    finally:
        env.close()


T = multiturn_env.turns()
GT = [t["solution"] for t in T]


@pytest.fixture(scope="module", params=[False, True], ids=["strict", "lenient"])
def env_dir(request, tmp_path_factory):
    return multiturn_env.build(tmp_path_factory.mktemp("store"), lenient=request.param)


def test_validates(env_dir):
    assert validate_env(env_dir) == []


def test_oracle_passes_every_turn(env_dir):
    traj = play(env_dir, OraclePolicy())
    assert traj.reward == 1.0, traj.verdict
    assert [t["reward"] for t in traj.verdict["turns"]] == [1.0, 1.0, 1.0, 1.0]
    users = [m for m in traj.messages if m["role"] == "user"]
    assert len(users) == 4 and users[1]["content"].startswith("What is B")
    assert any(m["role"] == "system" and "notes" in m["content"] for m in traj.messages[1:])


@pytest.mark.parametrize(
    "steps, failing",
    [
        # every call before the first answer: the state at turn 1's end is not the ground truth's
        ([GT[0] + GT[1][:1] + GT[3], "ok", [GT[1][1]], "ok", "no", "ok"], [0, 1, 3]),
        # the last turn's calls dropped: a turn with no action fails although the final answer is right
        ([GT[0], "Done.", GT[1], "noted", "I cannot order food.", "Moved."], [3]),
        # a call in the turn the tools cannot serve
        (
            [
                GT[0],
                "Done.",
                GT[1],
                "noted",
                [{"name": "list_notes", "arguments": {}}],
                "no",
                GT[3],
                "Moved.",
            ],
            [2],
        ),
        # only answers
        (["Done.", "B has 80", "no", "Moved."], [0, 1, 3]),
        # the right calls, one turn late each: states and results differ at every turn's end
        (["ok", GT[0], "ok", GT[1], "no", "ok"], [0, 1, 2, 3]),
    ],
    ids=["all-calls-first", "last-turn-dropped", "irrelevance", "answers-only", "one-turn-late"],
)
def test_shortcuts_fail_the_turns_they_skip(env_dir, steps, failing):
    traj = play(env_dir, Scripted(steps))
    assert traj.reward == 0.0
    got = [i for i, t in enumerate(traj.verdict["turns"]) if t["reward"] < 1.0]
    assert got == failing, traj.verdict


def test_turn_tools_and_budget(env_dir):
    # add_note is not offered in turn 1; turn 4's budget of 3 steps moves the episode to its end
    traj = play(
        env_dir,
        Scripted(
            [[{"name": "add_note", "arguments": {"text": "x"}}], GT[0], "Done.", GT[1], "ok", "no"]
            + [[{"name": "list_notes", "arguments": {}}]] * 5
        ),
    )
    first = traj.steps[0].errors
    assert first and first[0]["kind"] == "unknown_tool" and "not available in this turn" in first[0]["detail"]
    assert traj.terminated and traj.reward == 0.0
    assert traj.verdict["turns"][:3] == [
        {"reward": 1.0, "reason": "turn 1: passed"},
        {"reward": 1.0, "reason": "turn 2: passed"},
        {"reward": 1.0, "reason": "turn 3: passed (no call needed)"},
    ]
    assert len([s for s in traj.steps]) == 6 + 3


def test_arguments_unchecked_where_the_env_says_so(tmp_path):
    env_dir = multiturn_env.build(tmp_path, lenient=True)
    steps = [[{"name": "transfer", "arguments": {"source": "A", "target": "B", "amount": "30"}}], "Done."]
    steps += [GT[1], "ok", "no", GT[3], "Moved."]
    traj = play(env_dir, Scripted(steps))
    assert traj.reward == 1.0, traj.verdict


def test_each_episode_gets_fresh_instances(env_dir):
    env = ToolEnv(env_dir, backend=IN_PROCESS)
    try:
        for _ in range(2):
            traj = asyncio.run(run_episode(env, OraclePolicy()))
            assert traj.reward == 1.0, traj.verdict
    finally:
        env.close()


@pytest.mark.docker
@pytest.mark.parametrize("transport", ["push", "mount"])
def test_in_docker(env_dir, transport):
    backend = backend_or_skip("docker")
    if transport == "mount":  # pytest's folders are private (0700): a mounted store must be readable
        subprocess.run(["chmod", "-R", "a+rX", str(env_dir.parent)], check=True)
    traj = play(env_dir, OraclePolicy(), backend=backend, transport=transport)
    assert traj.reward == 1.0, traj.verdict
    bad = play(
        env_dir,
        Scripted([GT[0] + GT[1] + GT[3], "ok", "ok", "no", "ok"]),
        backend=backend,
        transport=transport,
    )
    assert bad.reward == 0.0 and bad.verdict["turns"][0]["reward"] == 0.0


@pytest.mark.docker
@pytest.mark.parametrize("name", ["docker", "namespace"])
def test_a_private_store_works_in_every_backend(tmp_path, name):
    """A store only its owner can read (mktemp -d makes 0700 folders): episodes push its files instead of
    mounting it; asking for the mount fails before the first episode with one sentence naming the fix."""
    backend = backend_or_skip(name)
    store = tmp_path / "private"
    store.mkdir(mode=0o700)
    env_dir = multiturn_env.build(store)
    os.chmod(store, 0o700)
    traj = play(env_dir, OraclePolicy(), backend=backend)
    assert traj.reward == 1.0, traj.verdict
    env = ToolEnv(env_dir, backend=backend, transport="mount")
    try:
        with pytest.raises(Exception, match="cannot read .* through the mounted store; run `chmod -R a\\+rX"):
            env.reset()
    finally:
        env.close()


def test_the_native_twin_is_judged_by_its_database(tmp_path):
    """Without toolsets, the built-in verifier compares the database's digest at every turn's end."""
    env_dir = multiturn_env.build_native(tmp_path)
    assert validate_env(env_dir) == []
    assert play(env_dir, OraclePolicy()).reward == 1.0
    bad = play(env_dir, Scripted([GT[0] + GT[1][:1] + GT[3], "ok", [GT[1][1]], "ok", "no", "ok"]))
    assert [t["reward"] for t in bad.verdict["turns"]] == [0.0, 0.0, 1.0, 0.0]


@pytest.mark.docker
@pytest.mark.parametrize("name", ["docker", "namespace"])
def test_pushed_lib_is_the_trusted_uids_and_a_reset_removes_it(env_dir, name):
    """The env server writes a pushed lib/ as the trusted uid: agent code (the sandbox user) can read it but not
    change it, and the sandbox's verified reset still comes back clean."""
    from toolgym.sandbox import open_sandbox

    backend = backend_or_skip(name)
    with open_sandbox(backend) as sb:
        env = ToolEnv(env_dir, sandbox=sb, transport="push")
        try:
            assert play_in(env).reward == 1.0
            probe = (
                "import glob, os\n"
                "lib = glob.glob('/tmp/toolgym-lib-*/lib/bank/__init__.py')[0]\n"
                "print(os.stat(lib).st_uid != os.getuid(), open(lib).read(3))\n"
                "try:\n    open(lib, 'a').write('x')\n    print('WROTE')\nexcept OSError as e:\n    print(type(e).__name__)\n"
            )
            out = sb.run(["python3", "-c", probe]).stdout
            assert out.split() == ["True", '"""', "PermissionError"], out
        finally:
            env.close()
        sb.reset()  # raises unless /tmp came back empty
        assert sb.run(["sh", "-c", "ls -A /tmp | wc -l"]).stdout.strip() == "0"


def play_in(env):
    return asyncio.run(run_episode(env, OraclePolicy(), budgets=Budgets(max_steps=30)))


def test_a_state_that_cannot_be_taken_fails_the_turn(tmp_path):
    """A snapshot that raises (or a value that cannot be copied) never compares equal: the turn fails with why,
    even where the ground truth's snapshot fails the same way."""
    env_dir = multiturn_env.build(tmp_path)
    tools = env_dir / "tools.py"
    tools.write_text(
        tools.read_text().replace('read=["balance"])', 'read=["balance"], state=lambda bank: 1 / 0)')
    )
    from toolgym.envs import load_env_spec, write_env_spec

    write_env_spec(env_dir, load_env_spec(env_dir))
    traj = play(env_dir, OraclePolicy())
    assert traj.reward == 0.0
    assert "state not taken: the snapshot raised ZeroDivisionError" in traj.verdict["turns"][0]["reason"]

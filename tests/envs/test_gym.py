"""ToolEnv as a gymnasium.Env: check_env, make()/gymnasium.make, parsers, multi-turn prompts, truncation,
sandbox pools (blocking and asyncio) and the async twins."""

from __future__ import annotations

import asyncio
import json
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from toolgym.envs import IN_PROCESS, EnvLease, ToolEnv, add_store, make, sandbox_mounts
from toolgym.sandbox import BlockingSandboxPool, Limits, SandboxPool

from .conftest import oracle_actions, run_actions

ADD = {
    "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    ]
}
SUBMIT = {"tool_calls": [{"function": {"name": "submit", "arguments": {"answer": "5"}}}]}


@pytest.fixture(scope="module")
def toy(toy_store, module_docker):
    env = ToolEnv(toy_store / "toy", backend=module_docker)
    yield env
    env.close()


def test_check_env_passes(toy_store, module_docker):
    env = ToolEnv(toy_store / "toy", backend=module_docker)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gymnasium.error.Error)
        check_env(env, skip_render_check=True)
    env.close()


def test_an_episode_observation_messages_and_reward(toy):
    obs, info = toy.reset(options={"task_id": "toy-add"})
    assert toy.observation_space.contains(obs) and obs.startswith("[system]\nA toy environment.")
    assert [m["role"] for m in info["messages"]] == ["system", "user"]
    assert {t["function"]["name"] for t in info["tools"]} >= {"add", "submit"}
    obs, reward, terminated, truncated, info = toy.step(ADD)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["messages"][-1] == {"role": "tool", "tool_call_id": "a", "name": "add", "content": "5"}
    assert "[tool add]\n5" in obs
    obs, reward, terminated, truncated, info = toy.step(SUBMIT)
    assert (reward, terminated, truncated) == (1.0, True, False) and info["answer"] == "5"
    with pytest.raises(RuntimeError, match="call reset"):
        toy.step(ADD)


def test_submit_without_the_required_call_scores_zero(toy):
    reward, info = run_actions(toy, "toy-add", [SUBMIT])
    assert reward == 0.0 and info["verdict"]["reason"] == "add was never called"


def test_calls_after_submit_are_not_run(toy):
    toy.reset(options={"task_id": "toy-bump"})
    both = {"tool_calls": SUBMIT["tool_calls"] + [{"function": {"name": "bump", "arguments": '{"by": 1}'}}]}
    _, _, terminated, _, info = toy.step(both)
    assert terminated and info["messages"][-1]["content"].startswith("Error: not run")


def test_multi_turn_prompt_and_final_answer_without_tools(toy):
    toy.reset(options={"task_id": "toy-bump"})
    toy.step({"tool_calls": [{"function": {"name": "bump", "arguments": '{"by": 7}'}}]})
    _, reward, terminated, _, info = toy.step({"content": "bumped"})
    assert not terminated and info["messages"][-1] == {"role": "user", "content": "Again by 1."}
    toy.step({"tool_calls": [{"function": {"name": "bump", "arguments": '{"by": 1}'}}]})
    _, reward, terminated, _, info = toy.step({"content": "done"})
    assert terminated and reward == 1.0 and info["answer"] == "done"


def test_truncation_at_the_step_budget(toy):
    toy.reset(options={"task_id": "toy-add"})
    for _ in range(3):
        assert toy.step(ADD)[3] is False
    _, reward, terminated, truncated, _ = toy.step(ADD)
    assert truncated and not terminated and reward == 0.0


def test_raw_text_goes_through_the_injected_parser(toy_store, module_docker):
    def parser(text: str) -> dict:
        if not text.startswith("CALL "):
            raise ValueError("no call")
        name, args = text[5:].split(" ", 1)
        return {"content": "", "tool_calls": [{"function": {"name": name, "arguments": args}}]}

    env = ToolEnv(toy_store / "toy", backend=module_docker, parser=parser)
    env.reset(options={"task_id": "toy-add"})
    _, _, _, _, info = env.step('CALL add {"a": 40, "b": 2}')
    assert info["messages"][-1]["content"] == "42"
    _, _, terminated, _, info = env.step("garbled")
    assert terminated and info["parse_error"] == "ValueError: no call"
    env.close()


def test_seed_picks_the_task_deterministically(toy):
    assert toy.reset(seed=0)[1]["task_id"] == toy.reset(seed=0)[1]["task_id"] == "toy-add"
    assert toy.reset(seed=1)[1]["task_id"] == "toy-bump"
    with pytest.raises(ValueError, match="has no task 'nope'"):
        toy.reset(options={"task_id": "nope"})


def test_make_and_gymnasium_make(toy_store, module_docker):
    add_store(toy_store)
    env = make("toolgym/toy", backend=module_docker)
    assert isinstance(env, ToolEnv) and env.env_id == "toy"
    env.close()
    env = gymnasium.make("toolgym/toy", backend=module_docker)
    assert isinstance(env.unwrapped, ToolEnv)
    reward, _ = run_actions(env.unwrapped, "toy-add", [ADD, SUBMIT])
    assert reward == 1.0
    env.close()
    ref = gymnasium.make("toolgym/trip_planning", backend=module_docker)
    assert ref.unwrapped.env_spec.domain == "trip_planning"
    ref.close()


def test_blocking_pool_keeps_a_clean_sandbox_and_releases_on_close(toy_store, module_docker):
    with BlockingSandboxPool(
        1, backend=module_docker, limits=Limits(memory_mb=256), mounts=sandbox_mounts([toy_store])
    ) as pool:
        env = ToolEnv(toy_store / "toy", pool=pool)
        leased = []
        for _ in range(2):
            reward, _ = run_actions(env, "toy-add", [ADD, SUBMIT])
            assert reward == 1.0
            leased.append(env.lease.sandbox)
        assert leased[0] is leased[1]  # no agent code ran: the env server's reset is enough
        leased[0].tainted = True  # as if agent code had run: the next episode gets a recycled sandbox
        env.reset(seed=0)
        env.close()
        assert env.lease.sandbox is None
        with pool.lease() as sb:  # the single sandbox went back to the pool
            assert sb.ping() < 5


def test_a_clean_sandbox_and_its_server_pass_to_the_next_environment(tmp_path, module_docker):
    import sqlite3

    from .conftest import write_toy_env

    store = tmp_path / "store"
    write_toy_env(store, "toy")
    write_toy_env(store, "toy2")
    db = sqlite3.connect(store / "toy2" / "state" / "db.sqlite")  # toy2 counts from 100: tells the two apart
    db.execute("UPDATE counter SET value = 100")
    db.commit()
    db.close()
    bump = {"tool_calls": [{"name": "bump", "arguments": {"by": 1}}]}
    with BlockingSandboxPool(1, backend=module_docker, limits=Limits(memory_mb=256)) as pool:
        lease = EnvLease(pool=pool)  # one lease across environments, as a rollout worker holds it
        first = ToolEnv(store / "toy", lease=lease)
        first.reset(options={"task_id": "toy-add"})
        assert first.step(bump)[-1]["messages"][-1]["content"] == "1"
        sandbox, session = lease.sandbox, lease.server.session
        second = ToolEnv(store / "toy2", lease=lease)
        second.reset(options={"task_id": "toy-add"})
        # the same sandbox and interpreter, but toy2's state, tools and verifier
        assert lease.sandbox is sandbox and lease.server.session is session
        assert second.step(bump)[-1]["messages"][-1]["content"] == "101"
        assert run_actions(second, "toy-add", [ADD, SUBMIT])[0] == 1.0
        # a sandbox where agent code ran is never handed on: it goes back to the pool for a verified reset
        sandbox.tainted = True
        third = ToolEnv(store / "toy", lease=lease)
        assert run_actions(third, "toy-add", [ADD, SUBMIT])[0] == 1.0
        assert lease.server.session is not session
        lease.close()
        assert lease.sandbox is None
        with pool.lease() as sb:  # the single sandbox went back to the pool
            assert sb.ping() < 5


def test_a_given_sandbox_is_reset_after_agent_code_ran(toy_store, module_docker):
    """A daemon the agent planted in one episode must not outlive it, even in a sandbox the caller gave."""
    from toolgym.sandbox import open_sandbox

    with open_sandbox(module_docker, Limits(memory_mb=256)) as sb:
        env = ToolEnv(toy_store / "toy", sandbox=sb, transport="push")
        env.reset(seed=0)
        sb.run("sleep 300 > /dev/null 2>&1 &", timeout_s=5)  # as agent code would
        sb.tainted = True
        ps = "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"  # the minimal image has no ps
        assert "sleep 300" in sb.run(ps, timeout_s=5).stdout
        env.reset(seed=0)
        assert "sleep 300" not in sb.run(ps, timeout_s=5).stdout
        assert run_actions(env, "toy-add", [ADD, SUBMIT])[0] == 1.0
        env.close()
        assert not sb.closed  # the caller's sandbox stays the caller's


def test_a_pool_without_mounts_gets_the_files_pushed(toy_store, module_docker):
    with BlockingSandboxPool(1, backend=module_docker, limits=Limits(memory_mb=256)) as pool:
        env = ToolEnv(toy_store / "toy", pool=pool)
        assert run_actions(env, "toy-add", [ADD, SUBMIT])[0] == 1.0
        env.close()
        env = ToolEnv(toy_store / "toy", pool=pool, transport="mount")
        with pytest.raises(RuntimeError, match="mounts=toolgym.envs.sandbox_mounts"):
            env.reset(seed=0)
        env.close()


def test_push_and_mount_transports_agree(toy_store, module_docker):
    hashes = []
    for transport in ("push", "mount"):
        env = ToolEnv(toy_store / "toy", backend=module_docker, transport=transport)
        reward, _ = run_actions(
            env, "toy-bump", [{"tool_calls": [{"name": "bump", "arguments": {"by": 8}}]}, {}, {}]
        )
        hashes.append((reward, env.state_hash()))
        env.close()
    assert hashes[0] == hashes[1] and hashes[0][0] == 1.0


def test_areset_astep_with_an_asyncio_pool(toy_store, module_docker):
    async def episode(pool, task_id):
        env = ToolEnv(toy_store / "toy", pool=pool)
        task = next(t for t in env.tasks if t.id == task_id)
        await env.areset(options={"task_id": task_id})
        reward = 0.0
        for action in oracle_actions(task):
            _, reward, terminated, truncated, _ = await env.astep(action)
            if terminated or truncated:
                break
        await env.aclose()
        return reward

    async def main():
        async with SandboxPool(
            2, backend=module_docker, limits=Limits(memory_mb=256), mounts=sandbox_mounts([toy_store])
        ) as pool:
            return await asyncio.gather(*(episode(pool, t) for t in ["toy-add", "toy-bump"] * 2))

    assert asyncio.run(main()) == [1.0] * 4


def test_tool_call_arguments_as_dicts_are_accepted(toy):
    toy.reset(options={"task_id": "toy-add"})
    _, _, _, _, info = toy.step({"tool_calls": [{"name": "add", "arguments": {"a": 1}}]})
    msg = info["messages"][-2]["tool_calls"][0]
    assert json.loads(msg["function"]["arguments"]) == {"a": 1} and info["messages"][-1]["content"] == "2"


def test_malformed_tool_calls_become_tool_errors(toy):
    toy.reset(options={"task_id": "toy-add"})
    calls = [
        "not a call",
        {"function": "add"},
        {"name": "add", "arguments": [1, 2]},
        {"function": {"name": 5}},
    ]
    _, _, terminated, truncated, info = toy.step({"content": None, "tool_calls": calls})
    results = [m["content"] for m in info["messages"] if m["role"] == "tool"]
    assert (
        len(results) == 4 and all(r.startswith("Error: ") for r in results) and not (terminated or truncated)
    )
    assert "must be a JSON object, got an array" in results[2]


def test_a_private_store_is_pushed_instead_of_mounted(tmp_path, module_docker):
    from .conftest import write_toy_env

    env_dir = write_toy_env(tmp_path / "private")
    env_dir.joinpath("tools.py").chmod(0o600)
    env = ToolEnv(env_dir, backend=module_docker)
    assert run_actions(env, "toy-add", [ADD, SUBMIT])[0] == 1.0
    env.close()
    env = ToolEnv(env_dir, backend=module_docker, transport="mount")
    with pytest.raises(RuntimeError, match="chmod -R a\\+rX"):
        env.reset(seed=0)
    env.close()


def test_inprocess_is_a_typed_choice_not_a_backend_name(toy_store):
    with pytest.raises(ValueError, match="IN_PROCESS"):
        ToolEnv(toy_store / "toy", backend="inprocess")


def test_inprocess_backend_runs_reference_solutions_without_a_sandbox():
    import asyncio

    from toolgym.agent.loop import run_episode
    from toolgym.agent.policies import OraclePolicy
    from toolgym.envs import make

    env = make("toolgym/order_desk", backend=IN_PROCESS)
    try:
        rewards = [asyncio.run(run_episode(env, OraclePolicy(), task_id=t.id)).reward for t in env.tasks]
        hashes = set()
        for _ in range(2):
            asyncio.run(run_episode(env, OraclePolicy(), task_id=env.tasks[0].id))
            hashes.add(env.state_hash())
    finally:
        env.close()
    assert rewards == [1.0] * len(env.tasks) and len(hashes) == 1

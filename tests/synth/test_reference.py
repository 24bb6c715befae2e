"""Every reference task, through ToolEnv in a Docker sandbox: the reference solution scores 1, a do-nothing
policy scores 0, and replaying the same actions gives the same final state. Builders are deterministic."""

from __future__ import annotations

import json

import pytest
from toolgym.envs import ToolEnv, load_tasks, validate_env
from toolgym.synth.reference import build_all, reference_envs, reference_store

from tests.conftest import backend_or_skip
from tests.envs.conftest import oracle_actions, run_actions

STORE = reference_store()
ENVS = [p.name for p in reference_envs()]
TASKS = [(name, t.id) for name in ENVS for t in load_tasks(STORE / name)]


@pytest.fixture(scope="module")
def module_docker():
    return backend_or_skip("docker")


@pytest.fixture(scope="module")
def envs(module_docker):
    opened = {name: ToolEnv(STORE / name, backend=module_docker) for name in ENVS}
    yield opened
    for env in opened.values():
        env.close()


def test_every_reference_env_validates_and_has_tasks():
    categories = set()
    for name in ENVS:
        assert validate_env(STORE / name) == [], name
        assert load_tasks(STORE / name), name
        categories.add(ToolEnv(STORE / name).env_spec.category)
    assert categories == {"general", "code_interpreter", "search", "code"}


@pytest.mark.parametrize("env_name, task_id", TASKS)
def test_reference_solution_scores_one_and_doing_nothing_scores_zero(envs, env_name, task_id):
    env = envs[env_name]
    task = next(t for t in env.tasks if t.id == task_id)
    reward, info = run_actions(env, task_id, oracle_actions(task))
    assert reward == 1.0, info.get("verdict")
    first = env.state_hash()
    reward, _ = run_actions(env, task_id, oracle_actions(task))
    assert reward == 1.0 and env.state_hash() == first  # the same actions replay to the same final state
    reward, info = run_actions(env, task_id, [{"content": "I cannot help with that."}] * len(task.prompt))
    assert reward == 0.0 and info["verdict"]["reward"] == 0.0


def test_a_trip_plan_submitted_without_lookups_scores_zero(envs):
    env = envs["trip_planning"]
    task = env.tasks[0]
    submit = next(c for c in task.solution if c.name == "submit_result")
    action = {
        "tool_calls": [{"function": {"name": "submit_result", "arguments": json.dumps(submit.arguments)}}]
    }
    reward, info = run_actions(env, task.id, [action])
    assert reward == 0.0 and "never" in info["verdict"]["reason"]


def test_a_trip_plan_that_breaks_the_day2_rule_scores_zero(envs):
    env = envs["trip_planning"]
    task = next(t for t in env.tasks if t.params.get("day2_min_hotel_price"))
    calls = [c.model_copy(deep=True) for c in task.solution]
    plan = calls[-1].arguments["plan"]
    plan[1]["hotel"], plan[0]["hotel"] = plan[0]["hotel"], plan[1]["hotel"]  # day 2 hotel in the wrong city
    action = {"tool_calls": [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]}
    reward, info = run_actions(env, task.id, [action])
    assert reward == 0.0 and "is not one in" in info["verdict"]["reason"]


def test_order_desk_rejects_a_wrong_write(envs):
    env = envs["order_desk"]
    task = next(t for t in env.tasks if any(c.name == "change_quantity" for c in t.solution))
    calls = [c.model_copy(deep=True) for c in task.solution]
    calls[-1].arguments["quantity"] = 1 if calls[-1].arguments["quantity"] != 1 else 2
    action = {"tool_calls": [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]}
    reward, info = run_actions(env, task.id, [action, {"content": "done"}])
    assert reward == 0.0 and "differs" in info["verdict"]["reason"]


def _files(env_dir):
    return {
        p.relative_to(env_dir).as_posix(): p.read_bytes() for p in sorted(env_dir.rglob("*")) if p.is_file()
    }


def test_builders_are_deterministic(tmp_path):
    a, b = build_all(tmp_path / "a", seed=0), build_all(tmp_path / "b", seed=0)
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b, strict=True):
        assert _files(x) == _files(y), x.name
        assert _files(x) == _files(STORE / x.name), x.name  # the cached store is the same build
    other = build_all(tmp_path / "c", seed=1)
    assert _files(other[0])["state/db.sqlite"] != _files(a[0])["state/db.sqlite"]

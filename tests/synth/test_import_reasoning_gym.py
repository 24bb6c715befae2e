"""reasoning-gym generators imported as environments: they validate, the oracle scores 1.0 and a wrong answer less
(in process, and in a Docker sandbox with the prepared requirement), entries without a checkable gold answer are
dropped, the same arguments give the same bytes, and user errors are one sentence naming the fix."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

pytest.importorskip("reasoning_gym", reason="needs `pip install 'toolgym[reasoning]'`")

from toolgym.agent.loop import run_episode  # noqa: E402
from toolgym.agent.policies import OraclePolicy  # noqa: E402
from toolgym.envs import IN_PROCESS, ToolEnv, load_env_spec, load_tasks, validate_env  # noqa: E402
from toolgym.synth.importers import reasoning_gym as rg  # noqa: E402

from tests.conftest import backend_or_skip  # noqa: E402

GENERATORS = ["leg_counting", "basic_arithmetic", "arc_agi"]
"""Small and quick; arc_agi's gold grids are tuples, which only the tagged encoding keeps comparable."""
SIZE = 5


def submit(answer: str) -> dict:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "submit_answer", "arguments": json.dumps({"answer": answer})},
    }
    return {"content": "", "tool_calls": [call]}


def python_call(code: str) -> dict:
    call = {
        "id": "p1",
        "type": "function",
        "function": {"name": "python", "arguments": json.dumps({"code": code})},
    }
    return {"content": "", "tool_calls": [call]}


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The generators imported, and their requirement set prepared (episodes need it in process and in Docker;
    offline from the wheel cache once filled), or the tests skipped."""
    from toolgym.sandbox.requirements import RequirementsError, prepare

    try:
        prepare([rg.REQUIREMENT], log=lambda _: None)
    except RequirementsError as exc:
        pytest.skip(f"cannot prepare {rg.REQUIREMENT}: {exc}")
    out = tmp_path_factory.mktemp("rg-store")
    results = rg.import_generators(GENERATORS, out, size=SIZE, seed=0)
    assert [r.env_id for r in results] == ["rg-leg-counting", "rg-basic-arithmetic", "rg-arc-agi"]
    assert all(r.kept == SIZE and not r.dropped for r in results), results
    return out


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_becomes_a_valid_environment_with_its_tasks(store, name):
    env_dir = store / rg.env_id_of(name)
    assert validate_env(env_dir) == []
    spec = load_env_spec(env_dir)
    assert (spec.category, spec.domain) == ("code_interpreter", "reasoning_gym")
    assert spec.requirements == ["reasoning-gym==0.1.25"]
    assert [t.name for t in spec.tools] == ["python", "submit_answer"] and spec.submit_tool == "submit_answer"
    assert (spec.provenance.producer, spec.provenance.family) == ("import", f"reasoning_gym:{name}")
    tasks = load_tasks(env_dir)
    assert [t.id for t in tasks] == [f"{spec.id}-0-{i:05d}" for i in range(SIZE)]
    for t in tasks:
        assert t.verifier == "score" and t.params["dataset"] == name
        assert t.prompt[0].startswith(t.params["entry"]["question"].rstrip())
        assert "submit_answer" in t.prompt[0]
        assert [c.name for c in t.solution] == ["submit_answer"]
        assert t.solution[0].arguments["answer"] == t.params["entry"]["answer"]


@pytest.mark.parametrize("name", GENERATORS)
def test_the_oracle_scores_one_and_a_wrong_answer_less_in_process(store, name):
    env = ToolEnv(store / rg.env_id_of(name), backend=IN_PROCESS)
    try:
        for task in env.tasks:
            traj = asyncio.run(run_episode(env, OraclePolicy(), task_id=task.id))
            assert traj.reward == 1.0 and traj.stop_reason == "submit", env.last_verdict
        task = env.tasks[0]
        env.reset(options={"task_id": task.id})
        _, reward, terminated, _, info = env.step(submit("I do not know"))
        assert terminated and reward < 1.0, info["verdict"]
    finally:
        env.close()


def test_the_python_tool_computes_before_the_answer_is_submitted(store):
    env = ToolEnv(store / "rg-leg-counting", backend=IN_PROCESS)
    try:
        task = env.tasks[0]
        env.reset(options={"task_id": task.id})
        gold = task.params["entry"]["answer"]
        obs, _, terminated, _, _ = env.step(python_call(f"x = {gold} - 1\nx + 1"))
        assert not terminated and gold in obs
        _, reward, terminated, _, _ = env.step(submit(gold))
        assert terminated and reward == 1.0
    finally:
        env.close()


def test_the_same_arguments_give_the_same_bytes_in_any_process(tmp_path):
    """isomorphic_strings iterates a set of strings: its entries follow Python's string hashing unless fixed."""
    names = ["leg_counting", "isomorphic_strings"]
    rg.import_generators(names, tmp_path / "a", size=SIZE, seed=3)
    rg.import_generators(names, tmp_path / "a2", size=SIZE, seed=3)
    for folder, hash_seed in (("b", "1"), ("c", "12345")):
        code = (
            "from toolgym.synth.importers.reasoning_gym import import_generators\n"
            f"import_generators({names!r}, {str(tmp_path / folder)!r}, size={SIZE}, seed=3)\n"
        )
        subprocess.run(
            [sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}
        )
    for name in names:
        env_id = rg.env_id_of(name)
        first = files_of(tmp_path / "a" / env_id)
        assert set(first) == {"env.json", "tools.py", "verify.py", "tasks.jsonl"}
        for folder in ("a2", "b", "c"):
            assert files_of(tmp_path / folder / env_id) == first, (folder, name)
    other = rg.import_generators(["leg_counting"], tmp_path / "d", size=SIZE, seed=4)[0]
    assert (other.path / "tasks.jsonl").read_bytes() != (
        tmp_path / "a" / "rg-leg-counting" / "tasks.jsonl"
    ).read_bytes()


def test_a_generator_without_gold_answers_writes_nothing_and_says_why(tmp_path):
    [r] = rg.import_generators(["boxnet"], tmp_path, size=3, seed=0)
    assert r.path is None and r.kept == 0 and r.dropped == {"the entry has no gold answer": 3}
    assert list(tmp_path.iterdir()) == []  # no half-built folder left behind


def test_a_second_import_replaces_the_first_but_not_a_foreign_folder(tmp_path):
    rg.import_generators(["leg_counting"], tmp_path, size=4, seed=0)
    rg.import_generators(["leg_counting"], tmp_path, size=2, seed=0)
    assert len(load_tasks(tmp_path / "rg-leg-counting")) == 2
    (tmp_path / "rg-gcd").mkdir()
    (tmp_path / "rg-gcd" / "notes.txt").write_text("mine")
    with pytest.raises(rg.ReasoningGymError, match="choose another --out or remove that folder"):
        rg.import_generators(["gcd"], tmp_path, size=2, seed=0)
    assert (tmp_path / "rg-gcd" / "notes.txt").read_text() == "mine"


def test_user_errors_are_one_sentence_naming_the_fix(tmp_path, monkeypatch):
    with pytest.raises(rg.ReasoningGymError, match=r"did you mean 'leg_counting'\? .*--list"):
        rg.import_generators(["leg_countin"], tmp_path, size=2)
    with pytest.raises(rg.ReasoningGymError, match="--size must be between 1 and 100000"):
        rg.import_generators(["leg_counting"], tmp_path, size=0)
    assert list(tmp_path.iterdir()) == []
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(rg.ReasoningGymError, match=r"pip install 'toolgym\[reasoning\]'"):
        rg.import_generators(["leg_counting"], tmp_path, size=2)
    monkeypatch.setattr(metadata, "version", lambda name: "0.1.20")
    with pytest.raises(
        rg.ReasoningGymError, match=r"0.1.20 is installed .* run `pip install reasoning-gym==0.1.25`"
    ):
        rg.generators()


def cli(*argv: str) -> int:
    from toolgym.commands.importers import add_reasoning_gym_parser

    parser = argparse.ArgumentParser(prog="toolgym envs")
    add_reasoning_gym_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_the_command_lists_imports_and_reports(tmp_path, capsys):
    assert cli("import-reasoning-gym", "--list") == 0
    listed = capsys.readouterr().out
    assert "leg_counting" in listed and "composite" not in listed
    out = str(tmp_path / "store")
    assert (
        cli("import-reasoning-gym", "--datasets", "leg_counting,gcd", "--size", "3", "--out", out, "--quiet")
        == 0
    )
    printed = capsys.readouterr().out
    assert "leg_counting: 3 task(s)" in printed and "gcd: 3 task(s)" in printed
    assert validate_env(tmp_path / "store" / "rg-gcd") == []
    assert cli("import-reasoning-gym", "--datasets", "gcd,nope_such", "--out", str(tmp_path / "x")) == 2
    assert "no generator 'nope_such'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli("import-reasoning-gym", "--datasets", "boxnet", "--size", "2", "--out", out, "--quiet") == 1
    assert "boxnet gave no task" in capsys.readouterr().err


def test_entries_keep_tuples_sets_and_non_string_keys_through_json(store):
    verify = rg.load_tools_module(store / "rg-leg-counting" / "verify.py", "verify")
    value = {
        "grid": ((1, 2), (3,)),
        "seen": {3, 1},
        4: "int key",
        "__tuple__": [1],
        "plain": [1.5, None, "x"],
        "ratio": Fraction(3, 4),
    }
    back = verify.decode(json.loads(json.dumps(rg.encode(value))))
    assert back == value and isinstance(back["grid"][0], tuple) and isinstance(back["ratio"], Fraction)
    with pytest.raises(TypeError, match="no JSON form"):
        rg.encode({"x": object()})
    with pytest.raises(TypeError, match="no JSON form"):
        rg.encode(float("nan"))


def test_the_verifier_never_imports_a_reasoning_gym_left_in_the_working_folder(store, tmp_path):
    """Agent code can write the working folder; while verify.py imports and scores, that folder is off sys.path."""
    scratch = tmp_path / "workspace"
    (scratch / "reasoning_gym").mkdir(parents=True)
    marker = tmp_path / "imported"
    (scratch / "reasoning_gym" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef get_score_answer_fn(name):\n    return lambda a, e: 1.0\n"
    )
    task = load_tasks(store / "rg-leg-counting")[0]
    code = textwrap.dedent(
        f"""
        import json, os, sys
        os.chdir({str(scratch)!r}); sys.path.insert(0, "")
        from toolgym.envs.schema import load_tools_module
        from toolgym.envs.inside.toolgym_env import Context
        verify = load_tools_module({str(store / "rg-leg-counting" / "verify.py")!r}, "verify")
        params = json.loads({json.dumps(json.dumps(task.params))})
        print(json.dumps([verify.score(Context({str(scratch)!r}, "t"), a, [], **params)[0] for a in ("nope", params["entry"]["answer"])]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == [0.0, 1.0]
    assert not marker.exists()


@pytest.mark.docker
@pytest.mark.slow
def test_in_a_docker_sandbox_the_generators_own_scorer_judges(store):
    backend = backend_or_skip("docker")
    for name in ("leg_counting", "arc_agi"):
        env = ToolEnv(store / rg.env_id_of(name), backend=backend)
        try:
            for task in env.tasks[:2]:
                traj = asyncio.run(run_episode(env, OraclePolicy(), task_id=task.id))
                assert traj.reward == 1.0, env.last_verdict
            env.reset(options={"task_id": env.tasks[0].id})
            env.step(submit("I do not know"))
            assert env.last_verdict["reward"] < 1.0, env.last_verdict
            assert "scores the answer" in env.last_verdict["reason"]
        finally:
            env.close()
    # Agent code leaves a reasoning_gym that passes everything in the working folder: the verifier never loads it.
    env = ToolEnv(store / "rg-leg-counting", backend=backend)
    try:
        env.reset(options={"task_id": env.tasks[0].id})
        fake = "def get_score_answer_fn(name):\n    return lambda answer, entry: 1.0\n"
        obs, _, _, _, _ = env.step(
            python_call(
                f"import os\nos.makedirs('reasoning_gym', exist_ok=True)\n"
                f"open('reasoning_gym/__init__.py', 'w').write({fake!r})\nprint(os.getcwd())"
            )
        )
        assert "Error" not in obs, obs
        env.step(submit("I do not know"))
        assert env.last_verdict["reward"] == 0.0, env.last_verdict
    finally:
        env.close()

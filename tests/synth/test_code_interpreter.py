"""The code-interpreter family: deterministic valid environments whose reference cells score 1.0 through the real
Python session, wrong and empty answers 0, and variants that differ in tools, rules and data."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import EnvSpec, TaskSpec, ToolCall
from toolgym.envs.validate import validate_env
from toolgym.synth.code_interpreter import FAMILY as ci
from toolgym.synth.code_interpreter import data, kinds
from toolgym.synth.code_interpreter.family import VARIANTS_PER_THEME
from toolgym.synth.code_interpreter.themes import THEME
from toolgym.synth.family import distinctness_key, jinja
from toolgym.synth.reference.code_interpreter.build import run_reference

from .replays import random_rewards

ID_PATTERN = EnvSpec.model_json_schema()["properties"]["id"]["pattern"]


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny plan built, with its candidates (the scale's number per environment)."""
    store = tmp_path_factory.mktemp("ci")
    n = ci.SCALES["tiny"][1]
    return store, {key: ci.make_tasks(ci.build_env(store, key, 0), key, 0, n) for key in ci.plan("tiny")}


def _first(pred) -> tuple[str, int]:
    return next(k for k in ci.plan("full") if pred(ci.variant_config(k, 0)))


def test_plan_sizes_and_ids():
    for scale, (n_envs, _) in ci.SCALES.items():
        keys = ci.plan(scale)
        assert len(keys) == n_envs == len(set(keys))
    ids = [ci.env_id(k) for k in ci.plan("full")]
    assert len(set(ids)) == len(ids)
    assert all(re.match(ID_PATTERN, i) and i.startswith("ci_") for i in ids)
    assert {ci.domain(k) for k in ci.plan("full")} == set(THEME)


def test_every_full_scale_environment_is_distinct(tmp_path):
    keys = {distinctness_key(ci.build_env(tmp_path, k, 0)) for k in ci.plan("full")}
    assert len(keys) == ci.SCALES["full"][0]


def test_variants_of_a_theme_differ_in_tools_rules_and_data():
    for theme in THEME:
        cfgs = [ci.variant_config((theme, v), 0) for v in range(VARIANTS_PER_THEME)]
        for field in ("python", "list_files", "head", "decimals"):
            assert len({str(c[field]) for c in cfgs}) == len(cfgs), (theme, field)
        assert {(c["main_format"], len(c["years"])) for c in cfgs} == {
            (f, y) for f in ("csv", "jsonl") for y in (1, 2)
        }
        assert sum(c["dirty"] for c in cfgs) == 2


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    store, cands = tiny
    key = ci.plan("tiny")[0]
    again = ci.build_env(tmp_path / "a", key, 0)
    assert _tree_hash(again) == _tree_hash(store / ci.env_id(key))
    assert ci.make_tasks(again, key, 0, ci.SCALES["tiny"][1]) == cands[key]
    other = ci.build_env(tmp_path / "b", key, 1)
    assert _tree_hash(other / "state") != _tree_hash(again / "state")


def test_environments_and_reference_solutions_validate(tiny):
    store, cands = tiny
    for key, tasks in cands.items():
        env_dir = store / ci.env_id(key)
        assert validate_env(env_dir, []) == []
        rows = [
            TaskSpec(
                id=f"{env_dir.name}-{i:03d}",
                env_id=env_dir.name,
                category=ci.CATEGORY,
                difficulty=t.difficulty,
                prompt=t.prompt,
                verifier=t.verifier,
                params=t.params,
                solution=t.solution,
                answer=t.answer,
                provenance={"producer": "template", "family": ci.NAME},
            )
            for i, t in enumerate(tasks)
        ]
        assert validate_env(env_dir, rows) == []


def test_reference_scores_one_and_wrong_answers_zero(tiny, tmp_path):
    store, cands = tiny
    levels, random_wins = set(), 0
    for key, tasks in cands.items():
        env_dir = store / ci.env_id(key)
        spec = json.loads((env_dir / "env.json").read_text())
        tools = [{"type": "function", "function": t["function"]} for t in spec["tools"]]
        server = LocalEnvServer(Path(env_dir))
        for i, t in enumerate(tasks):
            task = {"id": f"{env_dir.name}-{i:03d}", "verifier": t.verifier, "params": t.params}
            assert replay(server, task, t.solution, t.answer)["reward"] == 1.0, t.prompt
            assert replay(server, task, [], "I could not do that.")["reward"] == 0.0
            assert replay(server, task, [], t.guess)["reward"] == 0.0
            # the guess is wrong even after the right computation ran
            assert replay(server, task, t.solution, t.guess)["reward"] == 0.0
            random_wins += sum(random_rewards(server, task, tools))
            levels.add(t.difficulty)
        server.close()
    assert len(levels) >= 3
    assert random_wins == 0


def test_answers_must_follow_the_format_rule(tmp_path):
    key = _first(lambda c: c["answer_format"] == "tag")
    env_dir = ci.build_env(tmp_path, key, 0)
    t = ci.make_tasks(env_dir, key, 0, 1)[0]
    task = {"id": "x", "verifier": t.verifier, "params": t.params}
    value = re.search(r"<answer>(.*)</answer>", t.answer).group(1)
    server = LocalEnvServer(Path(env_dir))
    assert replay(server, task, t.solution, t.answer)["reward"] == 1.0
    assert replay(server, task, t.solution, f"\\boxed{{{value}}}")["reward"] == 0.0
    server.close()


def test_loaders_read_back_the_clean_records(tmp_path):
    """Whatever the format and dirt, the reference loader sees exactly the generated records (so an agent that
    follows the rules gets the expected numbers)."""
    keys = {
        _first(lambda c: c["main_format"] == "csv" and c["dirty"] and c["decimal_comma"]),
        _first(lambda c: c["main_format"] == "jsonl" and c["dirty"] and len(c["years"]) == 2),
        _first(lambda c: c["main_format"] == "csv" and not c["dirty"] and c["delimiter"] != ","),
        _first(lambda c: c["main_format"] == "jsonl" and not c["dirty"]),
    }
    for key in keys:
        th, cfg = THEME[key[0]], ci.variant_config(key, 0)
        env_dir = ci.build_env(tmp_path, key, 0)
        rows = run_reference(data.loader_code(th, cfg) + "\nrows", env_dir / "state")
        cols = [th[k]["col"] for k in ("c1", "c2", "m1", "m2")]
        got = Counter((r["date"], *(r[c] for c in cols)) for r in rows)
        want = Counter((r["date"], r["c1"], r["c2"], r["m1"], r["m2"]) for r in data.make_records(th, cfg, 0))
        assert got == want, key


def test_every_kind_is_asked_and_the_ladder_has_five_levels(tmp_path):
    seen = Counter()
    for key in [_first(lambda c: c["dirty"]), _first(lambda c: not c["dirty"])]:
        env_dir = ci.build_env(tmp_path, key, 0)
        seen.update(t.extra["kind"] for t in ci.make_tasks(env_dir, key, 0, len(kinds.KINDS)))
    assert set(kinds.KINDS) - set(seen) <= {"grid"}  # a grid can be blocked (0 paths): it is then skipped
    assert {kinds.KINDS[k][0] for k in kinds.kind_order()[:5]} == {1, 2, 3, 4, 5}


def test_tools_reuse_the_reference_session_and_head_stays_in_the_folder(tmp_path):
    key = _first(lambda c: c["head"] is not None)
    cfg = ci.variant_config(key, 0)
    env_dir = ci.build_env(tmp_path, key, 0)
    session = jinja(True).get_template("code_interpreter/python.j2").module.session()
    assert session in (env_dir / "tools.py").read_text()  # the reference's session, from the same template
    name, path, count = cfg["head"]
    server = LocalEnvServer(Path(env_dir))
    server.reset({"id": "x"})
    assert not server.call(name, {path: "../env.json", count: 3})["ok"]
    first = data.main_files(THEME[key[0]], cfg)[0]
    assert len(server.call(name, {path: first, count: 2})["content"].splitlines()) == 2
    out = server.call(cfg["python"], {"code": "x = 6 * 7"}), server.call(cfg["python"], {"code": "x + 1"})
    assert out[1]["content"].strip() == "43"
    server.close()


def test_solution_calls_use_the_variant_tool_names(tiny):
    _, cands = tiny
    for key, tasks in cands.items():
        cfg = ci.variant_config(key, 0)
        for t in tasks:
            assert t.solution[-1] == ToolCall(name=cfg["python"], arguments=t.solution[-1].arguments)

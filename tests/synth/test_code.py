"""The code family: mutation operators, determinism, valid environments, and every tiny candidate validated
the way the pipeline validates it (reference 1.0, do-nothing 0, guess 0, random episodes 0)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvSpec, ToolCall
from toolgym.envs.validate import validate_env
from toolgym.synth import family
from toolgym.synth.code import FAMILY as code
from toolgym.synth.code import family as code_family
from toolgym.synth.code import library as code_library
from toolgym.synth.code import mutate, tools
from toolgym.synth.code import repo as repository
from toolgym.synth.reference.code_repair import build as reference_build

from .replays import random_rewards

SEED = 0


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny plan built once: [(key, env_dir, candidates)]."""
    store = tmp_path_factory.mktemp("code")
    out = []
    for key in code.plan("tiny"):
        env = code.build_env(store, key, SEED)
        out.append((key, env, code.make_tasks(env, key, SEED, code.SCALES["tiny"][1])))
    return out


def _server(env: Path, tmp_path: Path, name: str) -> LocalEnvServer:
    return LocalEnvServer(Path(env))


def _task(env: Path, i: int, c) -> dict:
    return {"id": f"{env.name}-{i:03d}", "verifier": c.verifier, "params": c.params}


# -- the library and the mutation operators -------------------------------------------------------------------
def test_library_sections_and_generators_match():
    lib = code_library.library()
    assert len(lib) >= 30
    assert {f.group for f in lib.values()} == set(repository.GROUPS)
    assert set(code_library.INPUTS) == set(lib)
    assert sum(bool(mutate.mutants(n)) for n in lib) >= 30


def test_mutation_sites_cover_the_operators():
    src = (
        "def f(a, b, sep=';'):\n"
        "    if a < b and b > 0:\n"
        "        return a\n"
        "    return max(a, b - 1) if sep else a[1:b]\n"
    )
    ops = {op for op, *_ in mutate.mutation_sites(src)}
    assert ops >= {"comparison", "operator", "off_by_one", "condition", "branch", "arguments", "min_max"}
    for _, a, b, new in mutate.mutation_sites(src):  # every mutant is still Python
        compile(src[:a] + new + src[b:], "<m>", "exec")


def test_every_mutant_changes_some_output():
    lib = code_library.library()
    for name in ("median", "split_bill", "merge_intervals"):
        correct = code_library.namespace(code_library.closure(name))[name]
        for m in mutate.mutants(name):
            broken = code_library.namespace(code_library.closure(name), {name: m.source})[name]
            cases = code_library.inputs(name, "admission")
            assert any(
                not code_library.run(broken, a, traced=True).same(code_library.run(correct, a, traced=False))
                for a in cases
            ), m.source
            assert m.source != lib[name].source


def test_snippet_occurs_once_and_restores_the_function():
    text = "def g():\n    x = 1\n    return x\n\n\ndef f():\n    x = 1\n    return x + 1\n"
    buggy = "def f():\n    x = 1\n    return x + 1"
    correct = "def f():\n    x = 2\n    return x + 1"
    old, new = code_family.snippet(text, buggy, correct)
    assert text.count(old) == 1 and "def f" in old  # "    x = 1" alone occurs twice
    assert text.replace(old, new).endswith(correct + "\n")


# -- environments ---------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    key, env, cands = tiny[0]
    again = code.build_env(tmp_path / "a", key, SEED)
    assert _tree_hash(again) == _tree_hash(env)
    assert code.make_tasks(again, key, SEED, len(cands)) == cands
    other = code.build_env(tmp_path / "b", key, SEED + 1)
    assert _tree_hash(other / "state") != _tree_hash(env / "state")


def test_envs_validate_and_visible_tests_pass_at_the_start(tiny, tmp_path):
    for key, env, _ in tiny:
        assert validate_env(env, []) == []
        spec = EnvSpec.model_validate_json((env / "env.json").read_text())
        assert spec.category == code.CATEGORY and spec.id == code.env_id(key)
        assert not (spec.submit_tool or any(t.submit for t in spec.tools))
        server = _server(env, tmp_path, env.name)
        server.reset({"id": "x"})
        out = server.call("run_tests", {})["content"]
        assert out.startswith("exit code 0") and "OK" in out
        server.close()


def test_the_reference_tool_set_is_the_reference_environments(tmp_path):
    """Variant 0 renders the code_repair reference tools unchanged but for the docstring's example path."""
    ref = reference_build.build(tmp_path / "ref", seed=0, n_envs=1)[0]
    env = code.build_env(tmp_path / "s", code.plan("tiny")[0], SEED)
    mine = tools_from_module(load_tools_module(env / "tools.py"))
    theirs = tools_from_module(load_tools_module(ref / "tools.py"))
    example = re.compile(r'e\.g\. \\"[^\\]+\\"')  # as it appears in the JSON text: e.g. \"textkit/core.py\"
    assert [example.sub("", t.model_dump_json()) for t in mine] == [
        example.sub("", t.model_dump_json()) for t in theirs
    ]


def test_full_plan_ids_and_distinctness(tmp_path):
    keys = code.plan("full")
    assert len(keys) == code.SCALES["full"][0]
    ids = [code.env_id(k) for k in keys]
    assert len(set(ids)) == len(ids) and not any("textkit" in i for i in ids)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,127}", i) for i in ids)
    # every variant has its own tool set and rules (the cheap inputs of the key); built ones differ in full
    axes = tools.TOOL_AXES + tools.RULES
    shapes = {json.dumps({a: code.variant_config(k, SEED)[a] for a in axes}) for k in keys}
    assert len(shapes) == len(keys)
    assert (
        len({json.dumps({a: code.variant_config(k, SEED)[a] for a in tools.TOOL_AXES}) for k in keys}) == 64
    )
    built = [code.build_env(tmp_path, k, SEED) for k in keys[::6]]
    assert len({family.distinctness_key(e) for e in built}) == len(built)


def test_difficulty_ladder_and_issue_content(tiny):
    levels = set()
    for key, _, cands in tiny:
        repo = repository.compose(key, SEED)
        assert 3 <= len(repo.bugs) <= 6 and 2 <= len(repo.modules) <= 4 and 6 <= len(repo.functions()) <= 10
        for c in cands:
            levels.add(c.difficulty)
            prompt = c.prompt[0]
            bug_names = sorted({fn for fn in repo.bugs if fn in c.answer})
            if c.difficulty == 1:
                assert repo.path_of(bug_names[0]) in prompt
            if c.difficulty == 3:  # a symptom: neither the buggy function nor its file is named
                assert not re.search(rf"\b{bug_names[0]}\b", prompt) and ".py" not in prompt
            if c.difficulty >= 4:  # two bugs, or one bug at two sites (two fixes either way)
                assert c.extra["features"]["constraints"] >= 2
                assert sum(repo.bugs[b].sites for b in bug_names) == c.extra["features"]["constraints"]
            assert c.guess != c.answer
    assert len(levels) >= 3


# -- candidates, validated as the pipeline does -----------------------------------------------------------------
def test_every_tiny_candidate_validates(tiny, tmp_path):
    wins = 0
    for _, env, cands in tiny:
        assert len(cands) == code.SCALES["tiny"][1]
        spec = json.loads((env / "env.json").read_text())
        tools = [{"type": "function", "function": t["function"]} for t in spec["tools"]]
        server = _server(env, tmp_path, env.name)
        for i, c in enumerate(cands):
            task = _task(env, i, c)
            assert replay(server, task, c.solution, c.answer)["reward"] == 1.0, c.prompt
            assert replay(server, task, [], "I could not do that.")["reward"] == 0.0
            assert replay(server, task, [], c.guess)["reward"] == 0.0
            wins += sum(r == 1.0 for r in random_rewards(server, task, tools))
        server.close()
    assert wins == 0


def test_rules_are_verified(tmp_path):
    """Variant 2 has every rule: tests untouched, no file added, run_tests after the last edit."""
    key = code.plan("demo")[2]
    cfg = code.variant_config(key, SEED)
    assert cfg["keep_tests"] and cfg["keep_files"] and cfg["test_after_edit"]
    env = code.build_env(tmp_path / "s", key, SEED)
    c = code.make_tasks(env, key, SEED, 1)[0]
    server = _server(env, tmp_path, "scratch")
    task = _task(env, 0, c)
    fix, run_tests = c.solution[:-1], c.solution[-1]
    test_file = next(p for p in (env / "state" / "tests").iterdir() if p.name.startswith("test_"))
    edit_test = ToolCall(name="run_shell", arguments={"command": f"echo '# note' >> tests/{test_file.name}"})
    new_file = ToolCall(name="run_shell", arguments={"command": "echo x > notes.txt"})
    assert replay(server, task, fix + [run_tests], c.answer)["reward"] == 1.0
    assert replay(server, task, fix, c.answer)["reward"] == 0.0
    assert replay(server, task, fix + [edit_test, run_tests], c.answer)["reward"] == 0.0
    assert replay(server, task, fix + [new_file, run_tests], c.answer)["reward"] == 0.0
    reason = server.verify(task["verifier"], task["params"], c.answer)["reason"]
    assert "created" in reason
    server.close()


def test_breaking_a_clean_function_fails_the_original_tests(tiny, tmp_path):
    key, env, cands = tiny[0]
    repo = repository.compose(key, SEED)
    c = cands[0]
    clean = repo.visible()[0]
    lines = code_library.library()[clean].source.splitlines()
    name, old, new = code.variant_config(key, SEED)["edit"]
    broken = lines[0] + "\n    raise RuntimeError('broken')"
    sabotage = ToolCall(name=name, arguments={"path": repo.path_of(clean), old: lines[0], new: broken})
    server = _server(env, tmp_path, "s")
    task = _task(env, 0, c)
    assert replay(server, task, c.solution[:-1] + [sabotage], c.answer)["reward"] == 0.0
    assert "original tests fail" in server.verify(task["verifier"], task["params"], c.answer)["reason"]
    server.close()


def test_exiting_early_does_not_pass(tiny, tmp_path):
    """Package code that ends the test interpreter with exit status 0 before the tests ran scores 0."""
    key, env, cands = tiny[0]
    repo = repository.compose(key, SEED)
    c = cands[0]
    name, old, new = code.variant_config(key, SEED)["edit"]
    init = f"{repo.pkg}/__init__.py"
    first = (env / "state" / init).read_text().splitlines()[0]
    exit_early = ToolCall(
        name=name, arguments={"path": init, old: first, new: first + "\nimport os\nos._exit(0)"}
    )
    server = _server(env, tmp_path, "s")
    task = _task(env, 0, c)
    assert replay(server, task, [exit_early, *c.solution], c.answer)["reward"] == 0.0
    server.close()


# -- breadth, measured features, hardening, prose ------------------------------------------------------------------
def test_full_plan_has_over_200_distinct_fixes():
    """Distinct (function, mutation) fixes over every other repository of the full plan: already >= 200, so
    the whole plan's (repository, function, mutation) triples are too; some bugs need two fixes."""
    fixes, triples, two_site = set(), set(), 0
    for key in code.plan("full")[::2]:
        repo = repository.compose(key, SEED)
        for fn, m in repo.bugs.items():
            fixes.add((fn, m.source))
            triples.add((key[0], fn, m.source))
            two_site += bool(m.parts)
    assert len(fixes) >= 200 and len(triples) >= 400
    assert two_site >= len(triples) // 10


def test_features_count_fixes_and_functions_left_alone(tiny):
    for key, _, cands in tiny:
        repo = repository.compose(key, SEED)
        for c in cands:
            f = c.extra["features"]
            bugs = c.extra["issue"]["bugs"]
            assert f == {
                "constraints": sum(repo.bugs[b].sites for b in bugs),
                "distractors": len(repo.functions()) - len(bugs),
                "user_facts": 0,
            }
            name = code.variant_config(key, SEED)["edit"][0]
            assert sum(x.name == name for x in c.solution) == f["constraints"]  # one edit per fix


def test_harden_adds_a_bug_and_the_harder_task_validates(tiny, tmp_path):
    key, env, cands = tiny[0]
    server = _server(env, tmp_path, "h")
    c = cands[0]
    h = code.harden(env, key, SEED, c, "too_easy")
    assert h is not None and len(h.extra["issue"]["bugs"]) == len(c.extra["issue"]["bugs"]) + 1
    assert h.extra["features"]["constraints"] > c.extra["features"]["constraints"]
    task = _task(env, 0, h)
    assert replay(server, task, h.solution, h.answer)["reward"] == 1.0
    assert replay(server, task, c.solution, c.answer)["reward"] == 0.0  # the easier fix is not enough
    server.close()


def test_demo_prompts_read_as_written(tmp_path):
    """No snake_case outside code spans, no broken article, no nested relative clauses in any demo prompt."""
    from .test_search import prose_problems

    n_tasks = code.SCALES["demo"][1]
    for key in code.plan("demo"):
        env = code.build_env(tmp_path, key, SEED)
        for c in code.make_tasks(env, key, SEED, n_tasks):
            prose = re.sub(r"`[^`]*`", "CODE", c.prompt[0])
            assert not prose_problems(prose), c.prompt[0]

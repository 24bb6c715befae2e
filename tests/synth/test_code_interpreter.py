"""The code-interpreter family: deterministic valid environments whose reference cells score 1.0 through the real
Python session, wrong and empty answers 0, variants that differ in tools, rules and data, and tasks that are
multi-step analyses of the environment's own data (perturb the data and the answer changes)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import EnvSpec, TaskSpec, ToolCall
from toolgym.envs.validate import validate_env
from toolgym.synth.admission import admit
from toolgym.synth.code_interpreter import FAMILY as ci
from toolgym.synth.code_interpreter import data, kinds
from toolgym.synth.code_interpreter.family import VARIANTS_PER_THEME
from toolgym.synth.code_interpreter.themes import THEME
from toolgym.synth.family import distinctness_key, jinja
from toolgym.synth.reference.code_interpreter.build import run_reference

from .replays import random_rewards

ID_PATTERN = EnvSpec.model_json_schema()["properties"]["id"]["pattern"]
SNAKE = re.compile(r"\b[A-Za-z0-9]+_[A-Za-z0-9_]+\b")
A_BEFORE_VOWEL = re.compile(r"\ba (?!uni|use|one|eu)[aeiouAEIOU]\w*")
AN_BEFORE_CONSONANT = re.compile(r"\ban (?!hour|honest)[b-df-hj-np-tv-zB-DF-HJ-NP-TV-Z]\w*")


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _task(tid: str, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny plan built, with its candidates (the scale's number per environment)."""
    store = tmp_path_factory.mktemp("ci")
    n = ci.SCALES["tiny"][1]
    return store, {key: ci.make_tasks(ci.build_env(store, key, 0), key, 0, n) for key in ci.plan("tiny")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo plan built and its candidates admitted as the pipeline admits them (in-process env server):
    {key: [(task id, candidate)]}."""
    store = tmp_path_factory.mktemp("ci_demo")
    n = ci.SCALES["demo"][1]
    out = {}
    for key in ci.plan("demo"):
        env_dir = ci.build_env(store, key, 0)
        spec = json.loads((env_dir / "env.json").read_text())
        tools = [{"type": "function", "function": t["function"]} for t in spec["tools"]]
        cands = [(f"{env_dir.name}-{i:03d}", c) for i, c in enumerate(ci.make_tasks(env_dir, key, 0, n))]
        server = LocalEnvServer(env_dir)
        out[key] = admit(server, cands, None, tools).kept
        server.close()
    return store, out


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


def test_reference_scores_one_and_wrong_answers_zero(tiny):
    store, cands = tiny
    levels, random_wins = set(), 0
    for key, tasks in cands.items():
        env_dir = store / ci.env_id(key)
        spec = json.loads((env_dir / "env.json").read_text())
        tools = [{"type": "function", "function": t["function"]} for t in spec["tools"]]
        server = LocalEnvServer(Path(env_dir))
        for i, t in enumerate(tasks):
            task = _task(f"{env_dir.name}-{i:03d}", t)
            assert replay(server, task, t.solution, t.answer)["reward"] == 1.0, t.prompt
            assert replay(server, task, [], "I could not do that.")["reward"] == 0.0
            assert replay(server, task, [], t.guess)["reward"] == 0.0
            # the guess is wrong even after the right computation ran
            assert replay(server, task, t.solution, t.guess)["reward"] == 0.0
            random_wins += sum(random_rewards(server, task, tools))
            levels.add(t.difficulty)
        server.close()
    assert levels == {1, 2, 3, 4, 5}
    assert random_wins == 0


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


def test_every_kind_is_asked_and_calls_rise_with_the_level(tmp_path):
    """Every kind appears; the reference takes level + 1 dependent calls, so the mean number of calls rises
    strictly from level 1 to level 5."""
    seen, calls = Counter(), defaultdict(list)
    for key in [_first(lambda c: c["dirty"]), _first(lambda c: not c["dirty"])]:
        env_dir = ci.build_env(tmp_path, key, 0)
        for t in ci.make_tasks(env_dir, key, 0, 30):
            seen[t.extra["kind"]] += 1
            calls[t.difficulty].append(len(t.solution))
            assert len(t.solution) == kinds.cells_of(t.extra["kind"])
    assert set(seen) == set(kinds.KINDS)
    means = [sum(calls[lv]) / len(calls[lv]) for lv in range(1, 6)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    assert {kinds.KINDS[k]["level"] for k in kinds.kind_order()[:5]} == {1, 2, 3, 4, 5}


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
            assert all(c == ToolCall(name=cfg["python"], arguments=c.arguments) for c in t.solution)


# -- the demo corpus: data dependence, prompts, features ----------------------------------------------------------
def _perturbed_env(src: Path, dst: Path, key, how: str) -> Path:
    """A copy of an environment whose data files are written again from changed records, in the variant's own
    format and dirt: "shuffle" reorders the records; "perturb" drops a fifth of them and moves every other
    measure by up to 15%. The lookup file stays as it was."""
    th, cfg = THEME[key[0]], ci.variant_config(key, 0)
    recs = data.make_records(th, cfg, 0)
    lookup = data.make_lookup(th, cfg, recs, 0)
    rng = random.Random(f"{key}:{how}")
    if how == "shuffle":
        recs = rng.sample(recs, len(recs))
    else:
        kept = []
        for r in recs:
            if rng.random() < 0.2:
                continue
            r = dict(r)
            for m in ("m1", "m2"):
                if r[m] is not None:
                    moved = r[m] * rng.uniform(0.85, 1.15)
                    dec = th[m]["dec"]
                    r[m] = int(round(moved)) if dec == 0 else round(moved, dec)
            kept.append(r)
        recs = kept
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "state")
    (dst / "state").mkdir()
    data.write_state(dst / "state", th, cfg, recs, lookup, 0)
    return dst


def _last_output(server, tid: str, c) -> str | None:
    verdict = replay(server, _task(tid, c), c.solution, c.answer, observe=True)
    last = verdict["observed"][-1]
    return last["content"].strip() if last["ok"] else None


def test_every_task_needs_the_environments_data(demo, tmp_path):
    """Run each admitted task's reference against its environment's data with a fifth of the records removed
    and the rest moved: the answer changes for at least 90% of them. Against the same records in another order
    it stays the same (no question is about order) and still scores 1.0."""
    store, kept = demo
    changed, total = 0, 0
    for key, tasks in kept.items():
        src = store / ci.env_id(key)
        perturbed = LocalEnvServer(_perturbed_env(src, tmp_path / f"{ci.env_id(key)}-p", key, "perturb"))
        shuffled = LocalEnvServer(_perturbed_env(src, tmp_path / f"{ci.env_id(key)}-s", key, "shuffle"))
        original = LocalEnvServer(src)
        for tid, c in tasks:
            base = _last_output(original, tid, c)
            assert base is not None and float(base) == pytest.approx(c.params["expected"])
            changed += _last_output(perturbed, tid, c) != base
            total += 1
            assert replay(shuffled, _task(tid, c), c.solution, c.answer)["reward"] == 1.0, c.prompt
        for s in (perturbed, shuffled, original):
            s.close()
    assert total >= 50
    assert changed >= 0.9 * total, f"{changed} of {total} answers changed"


def test_prompts_read_naturally(demo):
    prompts = [c.prompt[0] for tasks in demo[1].values() for _, c in tasks]
    assert prompts
    for p in prompts:
        assert not SNAKE.search(p), p
        assert not A_BEFORE_VOWEL.search(p) and not AN_BEFORE_CONSONANT.search(p), p
        assert "{" not in p and "  " not in p and p.endswith(("?", ".")), p
    # the article rule itself: a test that cannot fail would prove nothing
    assert A_BEFORE_VOWEL.search("pick a attendee") and AN_BEFORE_CONSONANT.search("an sale")
    assert not A_BEFORE_VOWEL.search("a unit price of an hour")


def test_features_are_measured_ints_and_levels_climb(demo):
    by_level = defaultdict(list)
    for tasks in demo[1].values():
        for _, c in tasks:
            f = c.extra["features"]
            assert set(f) == {"constraints", "distractors", "user_facts"}
            assert all(isinstance(v, int) and v >= 0 for v in f.values())
            plan = c.extra["plan"]
            assert f["constraints"] == len(plan["scope"]) + bool(plan["join"]) + len(plan["picks"]) >= 1
            assert f["distractors"] <= 6  # unused columns of five, and unused files
            by_level[c.difficulty].append((len(c.solution), f["constraints"]))
    assert set(by_level) == {1, 2, 3, 4, 5}
    calls = [sum(n for n, _ in by_level[lv]) / len(by_level[lv]) for lv in range(1, 6)]
    assert all(a < b for a, b in zip(calls, calls[1:], strict=False)), calls
    assert all(len(by_level[lv]) >= 0.1 * sum(map(len, by_level.values())) for lv in by_level)


def test_harden_adds_a_condition_that_changes_the_answer(demo):
    store, kept = demo
    key = next(iter(kept))
    env_dir = store / ci.env_id(key)
    server = LocalEnvServer(env_dir)
    hardened = 0
    for tid, c in kept[key][:6]:
        h = ci.harden(env_dir, key, 0, c, "too_easy")
        if h is None:
            continue
        hardened += 1
        assert h.extra["features"]["constraints"] == c.extra["features"]["constraints"] + 1
        assert h.extra["hardened"] == ["too_easy"] and h.prompt != c.prompt
        assert h.extra["value"] != c.extra["value"]
        assert replay(server, _task(tid, h), h.solution, h.answer)["reward"] == 1.0
        assert replay(server, _task(tid, h), h.solution, c.answer)["reward"] == 0.0
        assert replay(server, _task(tid, h), h.solution, h.guess)["reward"] == 0.0
        assert ci.harden(env_dir, key, 0, c, "too_easy") == h  # deterministic
    server.close()
    assert hardened >= 3

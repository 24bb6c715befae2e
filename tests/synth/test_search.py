"""The search family: deterministic, valid environments; every tiny-scale candidate validates (reference 1.0,
do-nothing, guess and random 0); the verifier's rules; distinct environments over the whole full plan."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import EnvSpec, Provenance, TaskSpec, ToolCall
from toolgym.envs.validate import validate_env
from toolgym.synth import family
from toolgym.synth.search import FAMILY as search
from toolgym.synth.search import corpus
from toolgym.synth.search.themes import THEME

from .replays import random_rewards

ID_PATTERN = EnvSpec.model_fields["id"].metadata[0].pattern


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny plan built once: [(key, env_dir, candidates)]."""
    store = tmp_path_factory.mktemp("search")
    n_tasks = search.SCALES["tiny"][1]
    return [
        (key, env, search.make_tasks(env, key, 0, n_tasks))
        for key in search.plan("tiny")
        for env in [search.build_env(store, key, 0)]
    ]


def _server(env: Path, scratch: Path) -> tuple[LocalEnvServer, dict, str | None]:
    spec = json.loads((env / "env.json").read_text())
    submit = next((t["function"]["name"] for t in spec["tools"] if t.get("submit")), None)
    return LocalEnvServer(Path(env)), spec, submit


def test_plan_sizes_and_ids():
    for scale, (n_envs, _) in search.SCALES.items():
        assert len(search.plan(scale)) == n_envs
    full = search.plan("full")
    ids = [search.env_id(k) for k in full]
    assert len(set(ids)) == len(ids) == 160
    assert all(re.fullmatch(ID_PATTERN, i) and i.startswith("search_") for i in ids)
    assert {search.domain(k) for k in full} == set(THEME)
    assert len({search.domain(k) for k in search.plan("tiny")}) == 2
    assert family.families()["search"] is search


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    key, env, cands = tiny[0]
    again = search.build_env(tmp_path / "a", key, 0)
    assert _tree(again) == _tree(env)
    assert search.make_tasks(again, key, 0, len(cands)) == cands
    other = search.build_env(tmp_path / "b", key, 1)
    assert (other / "state" / "db.sqlite").read_bytes() != (env / "state" / "db.sqlite").read_bytes()


def test_envs_validate_and_solutions_call_valid_tools(tiny):
    for _, env, cands in tiny:
        assert validate_env(env, []) == []
        tasks = [
            TaskSpec(
                id=f"{env.name}-{i:03d}",
                env_id=env.name,
                category="search",
                difficulty=c.difficulty,
                prompt=c.prompt,
                verifier=c.verifier,
                params=c.params,
                solution=c.solution,
                answer=c.answer,
                provenance=Provenance(producer="template", family="search", version=c.template),
            )
            for i, c in enumerate(cands)
        ]
        assert validate_env(env, tasks) == []


def test_every_candidate_validates(tiny, tmp_path):
    """Reference 1.0; do-nothing, the guess (submitted or said) and the reference lookups with the guess 0."""
    wins = episodes = 0
    for _, env, cands in tiny:
        assert len(cands) == search.SCALES["tiny"][1]
        server, spec, submit = _server(env, tmp_path / env.name)
        tools = [{"type": "function", "function": t["function"]} for t in spec["tools"]]
        for i, c in enumerate(cands):
            task = {"id": f"{env.name}-{i:03d}", "verifier": c.verifier, "params": c.params}
            assert (c.answer is None) == (submit is not None)
            assert replay(server, task, c.solution, c.answer)["reward"] == 1.0, c.prompt
            assert replay(server, task, [], "I could not do that.")["reward"] == 0.0
            said = [ToolCall(name=submit, arguments={"answer": c.guess})] if submit else []
            assert replay(server, task, said, c.guess)["reward"] == 0.0
            lookups = [x for x in c.solution if x.name != submit] + said
            assert replay(server, task, lookups, f"It is {c.guess}.")["reward"] == 0.0
            rewards = random_rewards(server, task, tools)
            wins += sum(r == 1.0 for r in rewards)
            episodes += len(rewards)
        server.close()
    assert wins <= episodes // 10


def test_reference_searches_find_the_hop_documents(tiny, tmp_path):
    """Each search of a reference solution returns the document it opens next (on the first page)."""
    for key, env, cands in tiny:
        server, _, _ = _server(env, tmp_path / env.name)
        doc_arg = search.variant_config(key, 0)["names"]["doc_arg"]
        for c in cands:
            server.reset({"id": "t"})
            for call, nxt in itertools.pairwise(c.solution):
                if doc_arg in nxt.arguments:
                    assert nxt.arguments[doc_arg] in server.call(call.name, dict(call.arguments))["content"]
        server.close()


def test_difficulty_ladder_and_guesses(tiny):
    cands = [c for _, _, cs in tiny for c in cs]
    assert {c.difficulty for c in cands} == {1, 2, 3, 4, 5}
    for c in cands:
        assert c.guess != c.params["expected"]
        assert len(c.params["hops"]) == (4 if c.difficulty == 4 else min(c.difficulty, 4))
        assert c.template.startswith("search/")


def _variant_env(store: Path, **want) -> tuple[tuple, Path]:
    """The first full-plan variant whose config has the wanted values, built."""
    key = next(
        k for k in search.plan("full") if all(search.variant_config(k, 0)[a] == v for a, v in want.items())
    )
    return key, search.build_env(store, key, 0)


def _first_task(env: Path, key, difficulty: int):
    return next(c for c in search.make_tasks(env, key, 0, 10) if c.difficulty == difficulty)


def test_verifier_rules(tmp_path):
    """Look-alike answers, missing evidence, long answers and unsubmitted answers fail; find counts as read."""
    key, env = _variant_env(tmp_path, evidence="opened", submit=False)
    c = _first_task(env, key, 2)
    task = {"id": "t", "verifier": c.verifier, "params": c.params}
    server, _, _ = _server(env, tmp_path / "scratch")

    def run(ops, task, calls, answer) -> float:
        return replay(ops, task, calls, answer)["reward"]

    both = f"{c.params['expected']} or maybe {c.guess}"
    assert run(server, task, c.solution, both) == 0.0  # naming a second candidate of the type
    assert run(server, task, c.solution[:-1], c.answer) == 0.0  # the last hop never opened
    assert run(server, task, c.solution, c.answer + " " + "word " * 15) == 0.0
    server.close()

    key, env = _variant_env(tmp_path, evidence="searched", submit=True)
    c = _first_task(env, key, 3)
    task = {"id": "t", "verifier": c.verifier, "params": c.params}
    server, _, submit = _server(env, tmp_path / "scratch2")
    query_arg = search.variant_config(key, 0)["names"]["query_arg"]
    opens_only = [x for x in c.solution if query_arg not in x.arguments]
    assert run(server, task, opens_only, None) == 0.0  # the rule asks for each entity searched by name
    no_submit = [x for x in c.solution if x.name != submit]
    assert run(server, task, no_submit, c.params["expected"]) == 0.0  # said, not submitted
    server.close()

    key, env = _variant_env(tmp_path, evidence="read")
    c = _first_task(env, key, 2)
    task = {"id": "t", "verifier": c.verifier, "params": c.params}
    server, _, _ = _server(env, tmp_path / "scratch3")
    n = search.variant_config(key, 0)["names"]
    finds = [
        ToolCall(name=n["find"], arguments={n["doc_arg"]: x.arguments[n["doc_arg"]], n["find_arg"]: "in"})
        if x.name == n["open"]
        else x
        for x in c.solution
    ]
    assert run(server, task, finds, c.answer) == 1.0  # searching inside a document counts as reading it
    server.close()


def test_names_never_contain_one_another(tiny):
    for _, env, _ in tiny:
        db = sqlite3.connect(env / "state" / "db.sqlite")
        titles = [tuple(corpus.normalize(t).split()) for (t,) in db.execute("SELECT title FROM entities")]
        db.close()
        runs = {t: corpus._Namer._runs(t) for t in titles}
        assert not any(a != b and a in runs[b] for a in titles for b in titles)


def test_full_plan_is_distinct(tmp_path):
    """Every environment of the full plan differs from every other, and not only in data: tool signatures
    or rules (description, verify.py) differ too, so no two variants are the same task set on new names."""
    keys, shapes = set(), set()
    for key in search.plan("full"):
        env = search.build_env(tmp_path, key, 0)
        k = family.distinctness_key(env)
        keys.add(k)
        shapes.add(k.rsplit("-", 1)[0])
    assert len(keys) == len(shapes) == 160
    configs = [json.dumps(search.variant_config(k, 0), sort_keys=True) for k in search.plan("full")]
    assert len(set(configs)) == 160

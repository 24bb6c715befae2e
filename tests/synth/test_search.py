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
    assert len(set(ids)) == len(ids) == 416
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


def test_difficulty_ladder_features_and_guesses(tiny):
    """Every level is present; a harder kind reads more documents and records more constraints."""
    cands = [c for _, _, cs in tiny for c in cs]
    assert {c.difficulty for c in cands} == {1, 2, 3, 4, 5}
    docs = {"one_hop": 1, "two_hop": 2, "three_hop": 3, "compare": 4, "four_hop": 4, "compare_deep": 6}
    calls = {}
    for c in cands:
        kind = c.template.split("/")[1]
        assert c.guess != c.params["expected"]
        assert len(c.params["hops"]) == docs[kind]
        f = c.extra["features"]
        assert set(f) == {"constraints", "distractors", "user_facts"} and all(
            type(v) is int for v in f.values()
        )
        assert f["constraints"] == docs[kind] + kind.startswith("compare") and f["distractors"] >= 1
        calls.setdefault(c.difficulty, []).append(len(c.solution))
    means = [sum(v) / len(v) for _, v in sorted(calls.items())]
    assert means == sorted(means) and len(set(means)) == 5


def _variant_env(store: Path, **want) -> tuple[tuple, Path]:
    """The first full-plan variant whose config has the wanted values, built."""
    key = next(
        k for k in search.plan("full") if all(search.variant_config(k, 0)[a] == v for a, v in want.items())
    )
    return key, search.build_env(store, key, 0)


def _first_task(env: Path, key, difficulty: int):
    return next(c for c in search.make_tasks(env, key, 0, 10) if c.difficulty == difficulty)


def test_verifier_rules(tmp_path):
    """Look-alike hedges, missing evidence and unsubmitted answers fail; find counts as a read; prose passes."""
    key, env = _variant_env(tmp_path, evidence="read", submit=False)
    c = _first_task(env, key, 2)
    task = {"id": "t", "verifier": c.verifier, "params": c.params}
    server, _, _ = _server(env, tmp_path / "scratch")

    def run(ops, task, calls, answer) -> float:
        return replay(ops, task, calls, answer)["reward"]

    both = f"{c.params['expected']} or maybe {c.guess}"
    assert run(server, task, c.solution, both) == 0.0  # naming a second candidate of the type
    assert run(server, task, c.solution[:-1], c.answer) == 0.0  # the last hop never opened
    prose = f"After reading both documents I am confident: it is {c.params['expected'].upper()}, as stated."
    assert run(server, task, c.solution, prose) == 1.0
    server.close()

    key, env = _variant_env(tmp_path, evidence="named", submit=True)
    c = _first_task(env, key, 3)
    task = {"id": "t", "verifier": c.verifier, "params": c.params}
    server, _, submit = _server(env, tmp_path / "scratch2")
    n = search.variant_config(key, 0)["names"]
    searches_only = [x for x in c.solution if n["query_arg"] in x.arguments or x.name == submit]
    assert run(server, task, searches_only, None) == 1.0  # the rule: a search by full name is evidence too
    no_submit = [x for x in c.solution if x.name != submit]
    assert run(server, task, no_submit, c.params["expected"]) == 0.0  # said, not submitted
    vague = [ToolCall(name=n["search"], arguments={n["query_arg"]: "was born"})]
    assert run(server, task, vague + [c.solution[-1]], None) == 0.0  # no hop's document nor name
    server.close()

    key, env = _variant_env(tmp_path, evidence="read", find=True)
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
    opens_only = [x for x in c.solution if n["query_arg"] not in x.arguments]
    assert run(server, task, opens_only, c.answer) == 1.0  # the searches are a way, not a rule
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
    assert len(keys) == len(shapes) == 416
    configs = [json.dumps(search.variant_config(k, 0), sort_keys=True) for k in search.plan("full")]
    assert len(set(configs)) == 416


RELATIVE = re.compile(r"\b(?:that|which|who|whose)\b", re.IGNORECASE)
SNAKE = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")
ARTICLE = re.compile(r"\b(?:a (?=[aeiou])|an (?=[^aeiou\W]))", re.IGNORECASE)
"""An article error: "a" before a vowel, "an" before a consonant (the names here have no silent letters)."""


def prose_problems(prompt: str) -> list[str]:
    """What reads as generated in a prompt: a sentence nesting more than two relative clauses, a snake_case
    identifier, an article that does not fit its word."""
    out = []
    for sentence in re.split(r"(?<=[.?!:])\s+", prompt):
        if len(RELATIVE.findall(sentence)) > 2:
            out.append("nested: " + sentence)
    out += ["snake_case: " + m for m in SNAKE.findall(prompt)]
    out += ["article: " + prompt[m.start() : m.start() + 12] for m in ARTICLE.finditer(prompt)]
    return out


def test_prose_checker_catches_nested_questions():
    nested = (
        "Name the upland where the river that flows through the town where the founder of the company that "
    )
    nested += "acquired the firm which built the Kel Works was born rises."
    assert prose_problems(nested)
    assert prose_problems("Cancel my laundry_order R0009.") and prose_problems("Add a apple.")
    assert not prose_problems(
        "Find the founder of the Kel Works. Then find the town where this person was born."
    )


def test_demo_prompts_read_as_sequential_sentences(tmp_path):
    """Every prompt of the demo plan: no sentence with more than two relative pronouns, no snake_case, no
    broken article; a question of several hops is several sentences."""
    n_tasks = search.SCALES["demo"][1]
    for key in search.plan("demo"):
        env = search.build_env(tmp_path, key, 0)
        for c in search.make_tasks(env, key, 0, n_tasks):
            assert not prose_problems(c.prompt[0]), c.prompt[0]
            if c.template.split("/")[1] in ("two_hop", "three_hop", "four_hop", "compare_deep"):
                assert len(re.findall(r"[.?!](?:\s|$)", c.prompt[0])) >= 3, c.prompt[0]


def test_harden_adds_a_hop_or_a_document_and_stays_valid(tiny, tmp_path):
    """`harden` turns a question into one that reads more documents; the harder task still validates."""
    for _, env, cands in tiny:
        server, _, submit = _server(env, tmp_path / env.name)
        key = next(k for k in search.plan("tiny") if search.env_id(k) == env.name)
        hardened = 0
        for c in cands:
            h = search.harden(env, key, 0, c, "too_easy")
            if h is None:
                continue
            hardened += 1
            assert len(h.params["hops"]) > len(c.params["hops"])
            assert h.extra["features"]["constraints"] > c.extra["features"]["constraints"]
            task = {"id": "h", "verifier": h.verifier, "params": h.params}
            assert replay(server, task, h.solution, h.answer)["reward"] == 1.0
            assert replay(server, task, [], h.guess)["reward"] == 0.0
        assert hardened >= len(cands) // 2
        server.close()

"""Alternative correct episodes of search tasks score 1.0 through the real env server: other call orders, extra
reads of decoy documents, another search path (other queries, a search inside a document instead of opening
it), and other correct formats of the answer (prose around the name, another case, punctuation, an <answer>
tag, an ANSWER: line). A hedge that names a second entity of the type still scores 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import ToolCall
from toolgym.synth.search import FAMILY as search
from toolgym.synth.search.family import PROMPTS, _entities

VARIANTS = [
    {"submit": False, "find": True, "evidence": "read"},
    {"submit": True, "evidence": "named", "titles": True},
    {"submit": False, "evidence": "named", "mode": "page"},
    {"submit": True, "find": False, "mode": "fixed"},
]
"""Variant configs to cover: final text and submit tool, both evidence rules, every search mode."""


def _formats(name: str) -> list[str]:
    return [
        name,
        f"The answer is {name}.",
        name.upper(),
        name.lower().replace(" ", "  ") + "!",
        f"<answer>{name}</answer>",
        f"I traced every hop in the archive.\nANSWER: {name}",
        f'It is "{name}", according to the documents I read.',
    ]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(key, env, cfg, server, one candidate of every kind) per covered variant."""
    store = tmp_path_factory.mktemp("search_alt")
    out = []
    for want in VARIANTS:
        key = next(
            k
            for k in search.plan("full")
            if all(search.variant_config(k, 0)[a] == v for a, v in want.items())
        )
        env = search.build_env(store, key, 0)
        cands = search.make_tasks(env, key, 0, 40)
        picked = {c.template.split("/")[1]: c for c in reversed(cands)}
        assert set(picked) == set(PROMPTS), key
        out.append(
            (key, env, search.variant_config(key, 0), LocalEnvServer(Path(env)), list(picked.values()))
        )
    yield out
    for *_, server, _ in out:
        server.close()


def _reward(server, c, calls, answer) -> float:
    return replay(server, {"id": "t", "verifier": c.verifier, "params": c.params}, calls, answer)["reward"]


def _finish(cfg: dict, calls: list[ToolCall], answer: str) -> tuple[list[ToolCall], str | None]:
    """End the episode the variant's way: the submit tool with the answer, or the answer as final text."""
    if cfg["submit"]:
        return calls + [ToolCall(name=cfg["names"]["submit"], arguments={"answer": answer})], None
    return calls, answer


def _lookups(cfg: dict, c) -> list[ToolCall]:
    return [x for x in c.solution if x.name != cfg["names"].get("submit") or not cfg["submit"]]


def test_other_answer_formats_pass_and_hedges_fail(sample):
    for _, _, cfg, server, cands in sample:
        for c in cands:
            name = c.params["expected"]
            for text in _formats(name):
                assert _reward(server, c, *_finish(cfg, _lookups(cfg, c), text)) == 1.0, (text, c.prompt)
            hedge = f"Either {name} or {c.guess}"
            assert _reward(server, c, *_finish(cfg, _lookups(cfg, c), hedge)) == 0.0


def test_other_call_orders_and_extra_reads_pass(sample):
    """The reference's lookups reversed, with every decoy document (the path's trap links) opened as well."""
    for _, env, cfg, server, cands in sample:
        ents = _entities(env)
        n = cfg["names"]
        for c in cands:
            pairs = [_lookups(cfg, c)[i : i + 2] for i in range(0, len(_lookups(cfg, c)), 2)]
            reordered = [x for pair in reversed(pairs) for x in pair]
            decoys = [ents[d]["trap"] for d in c.params["hops"] if ents[d].get("trap")]
            extra = [ToolCall(name=n["open"], arguments={n["doc_arg"]: d}) for d in decoys]
            calls = extra[:1] + reordered + extra[1:]
            assert _reward(server, c, *_finish(cfg, calls, c.params["expected"])) == 1.0, c.prompt


def test_another_search_path_passes(sample):
    """Each hop found by another query (the name in lower case, words in another order) and read with the
    variant's other read tool where it has one; under the "named" rule a search by name alone is enough."""
    for _, _, cfg, server, cands in sample:
        n = cfg["names"]
        for c in cands:
            calls = []
            for doc_id in c.params["hops"]:
                db_title = next(
                    x.arguments[n["query_arg"]]
                    for x, y in zip(c.solution, c.solution[1:], strict=False)
                    if y.arguments.get(n["doc_arg"]) == doc_id
                )
                query = " ".join(reversed(db_title.lower().split()))
                found = server.call(n["search"], {n["query_arg"]: query})
                assert found["ok"] and doc_id in found["content"] or cfg["mode"] == "page"
                if cfg["find"]:
                    read = {n["doc_arg"]: doc_id, n["find_arg"]: db_title.split()[-1]}
                    calls += [ToolCall(name=n["search"], arguments={n["query_arg"]: query})]
                    calls += [ToolCall(name=n["find"], arguments=read)]
                else:
                    calls += [ToolCall(name=n["search"], arguments={n["query_arg"]: query})]
                    calls += [ToolCall(name=n["open"], arguments={n["doc_arg"]: doc_id})]
            assert _reward(server, c, *_finish(cfg, calls, f"It is {c.params['expected']}.")) == 1.0, c.prompt
            if cfg["evidence"] == "named":
                by_name = [
                    ToolCall(
                        name=n["search"], arguments={n["query_arg"]: x.arguments[n["query_arg"]].upper()}
                    )
                    for x in c.solution
                    if n["query_arg"] in x.arguments
                ]
                assert _reward(server, c, *_finish(cfg, by_name, c.params["expected"])) == 1.0

"""Shape recipes_bom: volume, rules that bind, composed writes, user-held facts, production plans checked by
their constraints (a second plan found by a small solver passes, plans breaking each rule fail), alternative
episodes."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db
from toolgym.synth.general.shapes import recipes_bom as rb

from .shapes import admitted, build, prompt_problems, score, tools_of

NAME = "recipes_bom"
WRITES = {"create_production_order", "issue_lot"}


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = []
    for key, env in build(NAME, tmp_path_factory.mktemp("rb")):
        cands, outcome = admitted(key, env, n=48)
        out.append((key, env, cands, outcome))
    return out


def _task(tid, c):
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def _kind(c):
    return c.template.split("/")[2]


def _kept(envs):
    return [(env, tid, c) for _, env, _, o in envs for tid, c in o.kept]


def _works(env, key):
    return rb.Works(read_db(env), rb.params_of(FAMILY.variant(key, 0)))


def test_schema_tools_and_vocabularies(envs):
    assert len(rb.VOCABS) >= 3 and len({v["name"] for v in rb.VOCABS}) == len(rb.VOCABS)
    _, env, _, _ = envs[0]
    assert len(read_db(env)) >= 3
    submit, tools = tools_of(env)
    names = {t["function"]["name"] for t in tools}
    assert submit == "submit_answer" and len(names) >= 6 and WRITES <= names
    assert len({FAMILY.domain(key) for key, *_ in envs}) == 3


def test_volume_kinds_and_shares(envs):
    for key, _, cands, outcome in envs:
        assert len(cands) == 48 and len(outcome.kept) >= 45, (key, dict(outcome.drops))
        assert len({_kind(c) for _, c in outcome.kept}) >= 6
    kept = [c for _, _, c in _kept(envs)]
    writes = [c for c in kept if "binds" in c.extra]
    assert sum(c.extra["binds"] for c in writes) / len(writes) >= 0.4
    multi = [c for c in kept if sum(x.name in WRITES for x in c.solution) >= 2]
    assert len(multi) / len(kept) >= 0.3
    assert all(c.verifier in ("check_state", "check_plan") for c in multi)
    assert sum(bool(c.extra["features"]["user_facts"]) for c in kept) / len(kept) >= 0.2
    assert sum(c.verifier == "check_plan" for c in kept) / len(kept) >= 0.1
    for c in kept:
        assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
    phrasings = Counter(c.template for c in kept)
    assert max(phrasings.values()) / len(kept) <= 0.12
    for kind in {_kind(c) for c in kept}:
        assert len({c.template for c in kept if _kind(c) == kind}) >= 3, kind


def test_answers_need_the_rules(envs):
    """Scrap, nesting, minimum batches and expired lots change every number asked: the rule-free guess is wrong."""
    for _, _, c in _kept(envs):
        if c.verifier == "check_answer":
            assert float(c.guess) != c.params["expected"]


def test_can_build_is_the_largest_run_the_rules_allow(envs):
    key, env, _, _ = envs[0]
    w = _works(env, key)
    for prod in [x for x in w.products.values() if x["kind"] == "product"]:
        most = w.most(prod["id"])
        assert w.draw(prod["id"], most + 1) is None
        if most:
            uses = w.draw(prod["id"], most)
            assert all(w.stock(c) >= n for c, n in uses.items())
            if prod["line"] != "standard":
                assert not any(w.components[c]["restricted"] for c in uses)


def test_same_seed_same_bytes(envs, tmp_path):
    key, env, cands, _ = envs[2]
    again = FAMILY.build_env(tmp_path, key, 0)
    assert (again / "state" / "db.sqlite").read_bytes() == (env / "state" / "db.sqlite").read_bytes()
    assert [c.prompt for c in FAMILY.make_tasks(again, key, 0, 48)] == [c.prompt for c in cands]


def test_other_orders_extra_reads_and_formats_score_one(envs):
    checked = Counter()
    for env, tid, c in _kept(envs):
        reads = [x for x in c.solution if x.name not in WRITES and x.name != "submit_answer"]
        if c.verifier == "check_state" and checked["state"] < 6:
            creates = [x for x in c.solution if x.name == "create_production_order"]
            issues = [x for x in c.solution if x.name == "issue_lot"]
            if len(issues) >= 2:
                extra = [ToolCall(name="list_substitutes", arguments={})]
                assert score(env, _task(tid, c), creates + extra + list(reversed(issues)), "Done.") == 1.0
                checked["state"] += 1
        if c.verifier == "check_answer" and checked["number"] < 5:
            n = int(c.params["expected"])
            for text in (f"<answer>{n}</answer>", f"That comes to {n:,}.", f"ANSWER: {n} (scrap included)"):
                sub = ToolCall(name="submit_answer", arguments={"answer": text})
                assert score(env, _task(tid, c), [*reads, sub]) == 1.0, text
            checked["number"] += 1
    assert checked == {"state": 6, "number": 5}


def _orders(plan):
    return [
        ToolCall(name="create_production_order", arguments={"product_id": p, "quantity": u})
        for p, u in plan
        if u
    ]


def test_plan_second_plan_passes_and_each_broken_rule_fails(envs):
    seconds, broke = 0, Counter()
    for key, env, _, outcome in envs:
        w = _works(env, key)
        for tid, c in outcome.kept:
            if c.verifier != "check_plan":
                continue
            prods, target = c.params["products"], c.params["target"]
            task = _task(tid, c)
            ref = sorted(
                (x.arguments["product_id"], x.arguments["quantity"]) for x in c.solution if x.name in WRITES
            )
            # a small exhaustive solver: every run size from 0 or the minimum batch up to what stock allows
            ranges = []
            for p in prods:
                top = 0
                while top < 400 and w.fits({p: top + 1}):
                    top += 1
                ranges.append([0, *range(w.products[p]["min_batch"], top + 1)])
            valid, short = None, None
            for combo in itertools.product(*ranges):
                runs = {p: u for p, u in zip(prods, combo, strict=True) if u}
                if not runs or not w.fits(runs):
                    continue
                plan = sorted(runs.items())
                if sum(combo) >= target and plan != ref and valid is None:
                    valid = plan
                if sum(combo) < target and short is None:
                    short = plan
            if valid is not None:
                assert score(env, task, _orders(valid)) == 1.0
                seconds += 1
            if short is not None:  # fits the stock but misses the total
                assert score(env, task, _orders(short)) == 0.0
                broke["target"] += 1
            big = [(p, u * 50) for p, u in ref]  # far more than the stock holds
            assert score(env, task, _orders(big)) == 0.0
            broke["stock"] += 1
            p0, u0 = ref[0]
            mb = w.products[p0]["min_batch"]
            if mb > 1:  # one run below its minimum batch
                assert score(env, task, _orders([(p0, mb - 1), *ref[1:]])) == 0.0
                broke["min_batch"] += 1
            other = next(x for x in w.products.values() if x["kind"] == "product" and x["id"] not in prods)
            assert score(env, task, _orders([*ref, (other["id"], other["min_batch"])])) == 0.0
            broke["product"] += 1
            lot = next(x for x in w.lots.values() if x["expires"] >= w.today and x["quantity"] > 0)
            issue = ToolCall(
                name="issue_lot", arguments={"product_id": p0, "lot_id": lot["id"], "quantity": 1}
            )
            assert score(env, task, [*_orders(ref), issue]) == 0.0
            broke["issued"] += 1
    assert seconds >= 3
    assert {"target", "stock", "min_batch", "product", "issued"} <= set(broke), broke

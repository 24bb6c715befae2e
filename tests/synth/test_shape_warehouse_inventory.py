"""Shape warehouse_inventory: volume, rules that bind, composed writes, user-held facts, planning checked by its
constraints (a second plan found by a small solver passes, plans breaking each rule fail), alternative episodes."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db
from toolgym.synth.general.shapes import warehouse_inventory as wi

from .shapes import admitted, build, prompt_problems, score, tools_of

NAME = "warehouse_inventory"
WRITES = {"ship_from_lot", "reserve_stock", "release_reservation", "backorder_order", "transfer_stock"}


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = []
    for key, env in build(NAME, tmp_path_factory.mktemp("wi")):
        cands, outcome = admitted(key, env, n=48)
        out.append((key, env, cands, outcome))
    return out


def _task(tid, c):
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def _kind(c):
    return c.template.split("/")[2]


def _kept(envs):
    return [(env, tid, c) for _, env, _, o in envs for tid, c in o.kept]


def test_schema_tools_and_vocabularies(envs):
    assert len(wi.VOCABS) >= 3 and len({v["name"] for v in wi.VOCABS}) == len(wi.VOCABS)
    _, env, _, _ = envs[0]
    assert len(read_db(env)) >= 3
    submit, tools = tools_of(env)
    names = {t["function"]["name"] for t in tools}
    assert submit == "submit_answer" and len(names) >= 6 and WRITES <= names
    domains = {FAMILY.domain(key) for key, *_ in envs}
    assert len(domains) == 3
    assert "safety stock" in json.loads((env / "env.json").read_text())["description"]


def test_volume_kinds_and_shares(envs):
    for key, _, cands, outcome in envs:
        assert len(cands) == 48 and len(outcome.kept) >= 45, (key, dict(outcome.drops))
        assert len({_kind(c) for _, c in outcome.kept}) >= 6
    kept = [c for _, _, c in _kept(envs)]
    writes = [c for c in kept if "binds" in c.extra]
    assert sum(c.extra["binds"] for c in writes) / len(writes) >= 0.4
    multi = [c for c in kept if sum(x.name in WRITES for x in c.solution) >= 2]
    assert len(multi) / len(kept) >= 0.3
    assert all(c.verifier in ("check_state", "check_rebalance") for c in multi)
    user = [c for c in kept if c.extra["features"]["user_facts"]]
    assert len(user) / len(kept) >= 0.2
    assert all(c.user_instructions and "@" not in c.prompt[0] for c in user)
    assert sum(c.verifier == "check_rebalance" for c in kept) / len(kept) >= 0.1
    for c in kept:
        assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
        assert 1 <= c.difficulty <= 5
    phrasings = Counter(c.template for c in kept)
    assert max(phrasings.values()) / len(kept) <= 0.1
    kinds = {_kind(c) for c in kept}
    for kind in kinds:
        assert len({c.template for c in kept if _kind(c) == kind}) >= 3, kind


def test_answers_need_the_rules(envs):
    """A quote never equals the rule-free count (every lot, expired and reserved units and safety stock
    included); the rule-free guess is what admission proved wrong."""
    for _, _, c in _kept(envs):
        if c.verifier == "check_answer" and _kind(c) != "which_site":
            assert float(c.guess) != c.params["expected"]


def test_same_seed_same_bytes(envs, tmp_path):
    key, env, cands, _ = envs[1]
    again = FAMILY.build_env(tmp_path, key, 0)
    assert (again / "state" / "db.sqlite").read_bytes() == (env / "state" / "db.sqlite").read_bytes()
    assert (again / "tools.py").read_text() == (env / "tools.py").read_text()
    assert [c.prompt for c in FAMILY.make_tasks(again, key, 0, 48)] == [c.prompt for c in cands]


def test_other_orders_extra_reads_and_formats_score_one(envs):
    checked = Counter()
    for env, tid, c in _kept(envs):
        reads = [x for x in c.solution if x.name not in WRITES and x.name != "submit_answer"]
        writes = [x for x in c.solution if x.name in WRITES]
        if c.verifier == "check_state" and len(writes) >= 2 and checked["state"] < 6:
            extra = [
                ToolCall(name="list_routes", arguments={}),
                ToolCall(name="list_warehouses", arguments={}),
            ]
            assert score(env, _task(tid, c), extra + list(reversed(writes)) + reads, "All done.") == 1.0
            checked["state"] += 1
        if c.verifier == "check_answer" and _kind(c) != "which_site" and checked["number"] < 4:
            n = int(c.params["expected"])
            for text in (f"<answer>{n}</answer>", f"You could get {n:,} right now.", f"ANSWER: {n} units"):
                sub = ToolCall(name="submit_answer", arguments={"answer": text})
                assert score(env, _task(tid, c), [*reads, sub]) == 1.0, text
            checked["number"] += 1
        if _kind(c) == "which_site" and checked["name"] < 3:
            city = c.params["expected"]
            for text in (f"It would ship from our {city} site.", f"{city}", f"The {city.upper()} warehouse"):
                sub = ToolCall(name="submit_answer", arguments={"answer": text})
                assert score(env, _task(tid, c), [sub]) == 1.0, text
            checked["name"] += 1
    assert checked == {"state": 6, "number": 4, "name": 3}


# -- planning: the rebalance verifier checks constraints ------------------------------------------------------
def _stock(env, key):
    p = wi.params_of(FAMILY.variant(key, 0))
    return wi.Stock(read_db(env), p), p


def _plans(s, p, target, item, m, best):
    """Every plan of `best` direct transfers (pieces of unexpired lots, each at most the size limit) that brings
    `m` more units to `target` without a source going below its safety stock: a small exhaustive solver."""
    cap = p["max_transfer"]
    pieces = []
    for w in sorted(s.warehouses):
        if w != target and frozenset((w, target)) in s.routes:
            for lot in s.good_lots(w, item):
                q = lot["quantity"]
                pieces += [(w, lot["id"], cap)] * (q // cap) + ([(w, lot["id"], q % cap)] if q % cap else [])
    seen = set()
    for combo in itertools.combinations(pieces, best):
        left, moved, plan = {w: s.spare(w, item) for w, _, _ in combo}, 0, []
        for w, lot, size in combo:
            u = min(size, left[w], m - moved)
            if u <= 0:
                break
            plan.append((lot, u))
            left[w] -= u
            moved += u
        key = tuple(sorted(plan))
        if moved >= m and len(plan) == best and key not in seen:
            seen.add(key)
            yield plan


def _calls(target, plan):
    return [
        ToolCall(name="transfer_stock", arguments={"lot_id": lot, "to_warehouse_id": target, "quantity": u})
        for lot, u in plan
    ]


def test_rebalance_second_plan_passes_and_each_broken_rule_fails(envs):
    broke = Counter()
    seconds = 0
    for key, env, _, outcome in envs:
        s, p = _stock(env, key)
        for tid, c in outcome.kept:
            if c.verifier != "check_rebalance":
                continue
            target, item, best = c.params["target"], c.params["item_id"], c.params["max_transfers"]
            base = s.on_hand(target, item) - s.reserved(target, item) - s.warehouses[target]["safety_stock"]
            m = c.params["need"] - base
            ref = sorted(
                (x.arguments["lot_id"], x.arguments["quantity"]) for x in c.solution if x.name in WRITES
            )
            other = next((pl for pl in _plans(s, p, target, item, m, best) if sorted(pl) != ref), None)
            task = _task(tid, c)
            if other is not None:
                assert score(env, task, _calls(target, other)) == 1.0
                seconds += 1
            ref_plan = [
                (x.arguments["lot_id"], x.arguments["quantity"]) for x in c.solution if x.name in WRITES
            ]
            lot0, u0 = ref_plan[0]
            if u0 >= 2:  # one transfer too many
                split = [(lot0, u0 - 1), (lot0, 1), *ref_plan[1:]]
                assert score(env, task, _calls(target, split)) == 0.0
                broke["count"] += 1
            short = [
                *ref_plan[:-1],
                (ref_plan[-1][0], ref_plan[-1][1] - (sum(u for _, u in ref_plan) - m) - 1),
            ]
            if short[-1][1] >= 1:  # one unit short of the need
                assert score(env, task, _calls(target, short)) == 0.0
                broke["coverage"] += 1
            lots = s.lots
            far = [
                x
                for x in lots.values()
                if x["item_id"] == item
                and x["warehouse_id"] != target
                and x["expires"] >= p["today"]
                and frozenset((x["warehouse_id"], target)) not in s.routes
                and x["quantity"] >= u0
            ]
            if far:  # the same amount, from a site with no route to the target
                assert score(env, task, _calls(target, [(far[0]["id"], u0), *ref_plan[1:]])) == 0.0
                broke["route"] += 1
            expired = [
                x
                for x in lots.values()
                if x["item_id"] == item
                and x["warehouse_id"] == lots[lot0]["warehouse_id"]
                and x["expires"] < p["today"]
                and x["quantity"] >= u0
            ]
            if expired:
                assert score(env, task, _calls(target, [(expired[0]["id"], u0), *ref_plan[1:]])) == 0.0
                broke["expired"] += 1
            src = lots[lot0]["warehouse_id"]
            big = max(s.good_lots(src, item), key=lambda x: x["quantity"])
            over = s.spare(src, item) + 1
            if over <= p["max_transfer"] and big["quantity"] >= over:  # past the source's safety stock
                assert score(env, task, _calls(target, [(big["id"], over), *ref_plan[1:]])) == 0.0
                broke["safety"] += 1
            if big["quantity"] > p["max_transfer"]:  # one transfer over the size limit
                plan = [(big["id"], p["max_transfer"] + 1), *ref_plan[1:]]
                assert score(env, task, _calls(target, plan)) == 0.0
                broke["size"] += 1
            assert (
                score(
                    env,
                    task,
                    c.solution
                    + [
                        ToolCall(
                            name="backorder_order",
                            arguments={
                                "order_id": next(
                                    o["id"] for o in read_db(env)["orders"] if o["status"] == "open"
                                )
                            },
                        )
                    ],
                )
                == 0.0
            )
    assert seconds >= 3
    assert set(broke) == {"count", "coverage", "route", "expired", "safety", "size"}, broke


def test_fingerprint_matches_the_verifier(envs):
    """The task maker's fingerprint and the verifier's are the same function of the database."""
    key, env, _, outcome = envs[0]
    tid, c = next((t, c) for t, c in outcome.kept if c.verifier == "check_rebalance")
    db = sqlite3.connect(env / "state" / "db.sqlite")
    assert wi.fingerprint(db, c.params["item_id"]) == c.params["others"]
    db.close()

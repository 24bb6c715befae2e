"""Shape itineraries: its environments admit enough varied tasks, rules bind, work composes, the user holds
facts, trip plans are checked by their constraints (a second plan passes, a plan breaking each fails), and other
correct episodes score 1.0."""

from __future__ import annotations

import importlib
import json
import sqlite3
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db

from .shapes import admitted, build, prompt_problems, score, tools_of

it = importlib.import_module("toolgym.synth.general.shapes.itineraries")
WRITE_KINDS = {"trip_plan", "rebook_cancelled", "cancel_pair", "change_pair"}


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = tmp_path_factory.mktemp("itineraries")
    return [(key, env, *admitted(key, env, n=48)) for key, env in build("itineraries", out)]


def kind(c) -> str:
    return c.template.split("/")[2]


def writes(env, c) -> int:
    spec = json.loads((env / "env.json").read_text())
    names = {t["function"]["name"] for t in spec["tools"] if t.get("access") == "write"}
    return sum(1 for x in c.solution if x.name in names)


def test_schema_tools_vocabularies_and_policy(envs):
    assert len(it.VOCABS) >= 3 and len({v["name"] for v in it.VOCABS}) == len(it.VOCABS)
    descriptions = set()
    for _, env, _, _ in envs:
        tables = read_db(env)
        assert {"places", "legs", "travellers", "bookings", "booking_legs"} <= set(tables)
        assert 100 <= len(tables["legs"]) <= 500 and len(tables["travellers"]) >= 20
        assert all(len(r["id"]) <= 5 for r in tables["legs"] + tables["bookings"])
        spec = json.loads((env / "env.json").read_text())
        submit, tools = tools_of(env)
        assert submit == "submit_answer" and len(tools) >= 8
        assert sum(t.get("access") == "write" for t in spec["tools"]) >= 3
        assert "minutes" in spec["description"] and "%" in spec["description"]
        descriptions.add(spec["description"])
    assert len(descriptions) == len(envs)


def test_same_seed_same_bytes(envs, tmp_path):
    key, env, _, _ = envs[0]
    again = build("itineraries", tmp_path, indexes=(key[1],))[0][1]
    assert (again / "state" / "db.sqlite").read_bytes() == (env / "state" / "db.sqlite").read_bytes()
    assert (again / "tools.py").read_text() == (env / "tools.py").read_text()


def test_admitted_volume_and_shares(envs):
    kept = []
    for _, env, _, outcome in envs:
        assert len(outcome.kept) >= 45, outcome.drops
        assert len({kind(c) for _, c in outcome.kept}) >= 6
        kept += [(env, c) for _, c in outcome.kept]
    by_kind = Counter(kind(c) for _, c in kept)
    assert max(by_kind.values()) <= 0.25 * len(kept)
    write_tasks = [(e, c) for e, c in kept if writes(e, c) >= 1]
    # every write kind here is one where a rule decides the action (class, connection, refund, rebooking)
    assert sum(kind(c) in WRITE_KINDS for _, c in write_tasks) >= 0.4 * len(write_tasks)
    assert sum(writes(e, c) >= 2 for e, c in kept) >= 0.3 * len(kept)
    assert sum(bool(c.user_instructions) for _, c in kept) >= 0.2 * len(kept)
    assert all(c.extra["features"]["user_facts"] >= 1 for _, c in kept if c.user_instructions)
    assert by_kind["trip_plan"] >= 0.1 * len(kept)
    for _, c in kept:
        assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
        assert 1 <= c.difficulty <= 5
        if c.user_instructions:
            assert c.user_instructions.startswith("You are ")


def test_rules_change_the_quotes(envs):
    for _, _, _, outcome in envs:
        for _, c in outcome.kept:
            if c.verifier == "check_answer" and isinstance(c.params["expected"], float):
                assert c.guess and abs(float(c.guess.replace(",", "")) - c.params["expected"]) > 0.005


def _task(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def test_other_formats_orders_and_extra_reads_score_one(envs):
    tried = Counter()
    for _, env, _, outcome in envs:
        for tid, c in outcome.kept:
            k = kind(c)
            if tried[k] >= 3:
                continue
            tried[k] += 1
            reads = [x for x in c.solution if x.name in ("find_traveller", "search_legs", "list_bookings")]
            extra = [ToolCall(name=listing(env), arguments={})]
            body = [x for x in c.solution if x.name != "submit_answer"]
            if c.verifier == "check_answer":
                value = c.params["expected"]
                forms = (
                    [f"${value:,.2f}", f"It comes to {value:,.2f} in total.", f"<answer>{value}</answer>"]
                    if isinstance(value, float)
                    else [f"You should take the {value} first.", f"<answer>{value}</answer>"]
                )
                for form in forms:
                    calls = extra + body + [ToolCall(name="submit_answer", arguments={"answer": form})]
                    assert score(env, _task(tid, c), calls) == 1.0, (k, form)
            else:
                ws = [x for x in c.solution if x not in reads]
                calls = extra + list(reversed(reads)) + list(reversed(ws))
                assert score(env, _task(tid, c), calls, c.answer) == 1.0, k
    assert len(tried) >= 6


def listing(env) -> str:
    """The tool that lists the places (its name follows the vocabulary)."""
    _, tools = tools_of(env)
    return next(
        t["function"]["name"]
        for t in tools
        if t["function"]["name"].startswith("list_") and t["function"]["name"] != "list_bookings"
    )


def _world(env, key):
    variant = FAMILY.variant(key, 0)
    return it._World(read_db(env), it._params(variant), variant)


def _plan_calls(c, plan, cls=None, passenger=None):
    p = c.params
    return [
        ToolCall(
            name="book_itinerary",
            arguments={
                "traveller_id": p["traveller_id"],
                "leg_ids": [g["id"] for g in j],
                "fare_class": cls or p["fare_class"],
                "passenger": passenger or p["passenger"],
            },
        )
        for j in plan
    ]


def test_a_second_trip_plan_passes_and_each_broken_constraint_fails(envs):
    checked = 0
    for key, env, _, outcome in envs:
        w = _world(env, key)
        for tid, c in outcome.kept:
            if kind(c) != "trip_plan":
                continue
            p = c.params
            spec = {k: p[k] for k in ("home", "visits", "first", "last", "budget", "min_nights", "latest")}
            spec |= {"fare_class": p["fare_class"], "passenger": p["passenger"]}
            plans = it.trip_plans(w, spec, limit=60)
            ref_ids = [x.arguments["leg_ids"] for x in c.solution if x.name == "book_itinerary"]
            other = next(pl for _, pl in plans if [[g["id"] for g in j] for j in pl] != ref_ids)
            total, plan = next((t, pl) for t, pl in plans if pl is other)
            task = _task(tid, c)
            assert score(env, task, _plan_calls(c, other), "Booked.") == 1.0
            broken = {
                "budget": {**p, "budget": total - 0.01},
                "latest": {**p, "latest": "06:00"},
                "min_nights": {**p, "min_nights": 9},
                "first": {**p, "first": plan[0][0]["date"][:8] + "99"},
                "visits": {**p, "visits": p["visits"][:-1]},
            }
            for name, params in broken.items():
                assert score(env, {**task, "params": params}, _plan_calls(c, other), "Booked.") == 0.0, name
            others = [x for x in it.VOCABS[key[1] % 4]["classes"] if x != p["fare_class"]]
            assert score(env, task, _plan_calls(c, other, cls=others[0]), "Booked.") == 0.0
            wrong = "adult" if p["passenger"] != "adult" else "child"
            assert score(env, task, _plan_calls(c, other, passenger=wrong), "Booked.") == 0.0
            assert score(env, task, _plan_calls(c, other)[:-1], "Booked.") == 0.0  # never comes home
            assert score(env, task, _plan_calls(c, other) + _plan_calls(c, other[:1]), "Booked.") == 0.0
            if any(len(j) == 2 for j in other):
                assert (
                    score(env, {**task, "params": {**p, "min_conn": 600}}, _plan_calls(c, other), "x") == 0.0
                )
            checked += 1
    assert checked >= 3


def test_the_verifier_sees_the_database_the_tools_wrote(envs):
    _, env, _, _ = envs[0]
    db = sqlite3.connect(env / "state" / "db.sqlite")
    assert db.execute("SELECT count(*) FROM legs WHERE status = 'cancelled'").fetchone()[0] >= 5
    db.close()

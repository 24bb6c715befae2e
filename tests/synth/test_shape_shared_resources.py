"""Shape shared_resources: its environments admit enough varied tasks, the policy binds, the references keep every
reservation within policy, and other correct episodes (extra reads, other orders, other formats, another plan)
score 1.0 while plans that break a constraint score 0."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from toolgym.envs.inside.toolgym_env import Context
from toolgym.envs.schema import load_tools_module
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import call, read_db
from toolgym.synth.general.shapes import shared_resources as sr

from .shapes import admitted, build, prompt_problems, score

SHAPE = "shared_resources"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three variants (three vocabularies) and what admission kept of 48 candidates each."""
    out = tmp_path_factory.mktemp("resources")
    made = []
    for key, env in build(SHAPE, out, (0, 1, 2)):
        cands, outcome = admitted(key, env, n=48)
        made.append((key, env, cands, outcome))
    return made


def kind(c) -> str:
    return c.template.split("/")[2]


def task_of(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def variant(i: int):
    return FAMILY.variant((SHAPE, i), 0)


def world(env: Path, i: int) -> sr.World:
    return sr.World(read_db(env), sr.rules(variant(i)), variant(i))


def run_tools(env_dir: Path, tmp: Path, calls) -> sqlite3.Connection:
    """The database after `calls`, made by the environment's own tool functions on a copy of its state."""
    state = tmp / "state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(env_dir / "state", state)
    tools = load_tools_module(env_dir / "tools.py", name=f"tools_{env_dir.name}")
    ctx = Context(str(state), "policy-check")
    for x in calls:
        getattr(tools, x.name)(ctx, **x.arguments)
    ctx.close()
    db = sqlite3.connect(state / "db.sqlite")
    db.row_factory = sqlite3.Row
    return db


def policy_breaks(db: sqlite3.Connection, p: dict) -> list[str]:
    """Every way the reservations break the policy, read straight from the database (independent of the shape's
    World): capacity, trainings, opening hours, the longest reservation, the buffer."""
    t = lambda s: dt.datetime.strptime(s, "%Y-%m-%d %H:%M")  # noqa: E731
    res = {r["id"]: dict(r) for r in db.execute("SELECT * FROM resources")}
    held = {(a, b) for a, b in db.execute("SELECT member_id, training FROM trainings")}
    rows = [dict(r) for r in db.execute("SELECT * FROM reservations WHERE status = 'active'")]
    out = []
    for x in rows:
        r = res[x["resource_id"]]
        if x["people"] > r["capacity"]:
            out.append(f"{x['id']} over capacity")
        if r["training"] and (x["member_id"], r["training"]) not in held:
            out.append(f"{x['id']} untrained")
        if (
            x["starts_at"][11:] < "08:00"
            or x["ends_at"][11:] > "20:00"
            or x["starts_at"][:10] != x["ends_at"][:10]
        ):
            out.append(f"{x['id']} outside opening hours")
        if t(x["ends_at"]) - t(x["starts_at"]) > dt.timedelta(hours=p["max_hours"]):
            out.append(f"{x['id']} too long")
    gap = dt.timedelta(minutes=p["buffer"])
    for a, b in itertools.combinations(rows, 2):
        if a["resource_id"] == b["resource_id"]:
            if t(a["starts_at"]) < t(b["ends_at"]) + gap and t(b["starts_at"]) < t(a["ends_at"]) + gap:
                out.append(f"{a['id']} and {b['id']} too close")
    return out


def test_each_variant_admits_enough_varied_tasks(corpus):
    for key, _env, cands, outcome in corpus:
        kept = [c for _, c in outcome.kept]
        assert len(cands) == 48 and len(kept) >= 45, (key, outcome.drops)
        kinds = Counter(kind(c) for c in kept)
        assert len(kinds) >= 6, kinds
        assert max(kinds.values()) <= 0.25 * len(kept), kinds
        assert len({c.prompt[0] for c in kept}) == len(kept)
        assert {c.difficulty for c in kept} >= {3, 4, 5}


def test_shares_of_rules_composition_users_and_plans(corpus):
    kept = [c for *_, outcome in corpus for _, c in outcome.kept]
    writes = [c for c in kept if c.extra["writes"]]
    assert sum(c.extra["rule"] for c in writes) >= 0.4 * len(writes)
    assert sum(c.extra["writes"] >= 2 for c in kept) >= 0.3 * len(kept)
    users = [c for c in kept if c.extra["features"]["user_facts"]]
    assert len(users) >= 0.2 * len(kept)
    assert sum(c.extra["planning"] for c in kept) >= 0.1 * len(kept)
    for c in users:
        assert "@" not in c.prompt[0] and "@example.com" in c.user_instructions
        assert c.user_instructions.startswith("You are ")


def test_prompts_read_naturally(corpus):
    for *_, cands, _ in corpus:
        for c in cands:
            assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
            assert "RC1" not in c.prompt[0] and "RS1" not in c.prompt[0]
    phrasings = Counter((kind(c), c.template.rsplit("/", 1)[1]) for *_, cands, _ in corpus for c in cands)
    per_kind = Counter(k for k, _ in phrasings)
    seen = Counter(kind(c) for *_, cands, _ in corpus for c in cands)
    # every kind asked often enough shows at least three phrasings
    assert all(per_kind[k] >= 3 for k, n in seen.items() if n >= 6), (per_kind, seen)


def test_references_keep_reservations_within_policy(corpus, tmp_path):
    checked = 0
    for key, env, _, outcome in corpus:
        p = sr.rules(variant(key[1]))
        assert policy_breaks(run_tools(env, tmp_path, []), p) == []
        for _, c in outcome.kept:
            if c.verifier in ("check_state", "check_event_plan"):
                db = run_tools(env, tmp_path, c.solution)
                assert policy_breaks(db, p) == [], (c.template, c.prompt[0])
                checked += 1
    assert checked >= 60


def test_rule_free_actions_score_zero(corpus):
    """What an agent that ignores the policy does: take the requested time without moving the holder, extend
    both reservations, reserve all three days."""
    tried = Counter()
    for key, env, _, outcome in corpus:
        w = world(env, key[1])
        for tid, c in outcome.kept:
            k = kind(c)
            writes = [x for x in c.solution if x.name in ("reserve", "change_reservation")]
            reads = [x for x in c.solution if x not in writes]
            if k == "bump" and len(writes) == 2:
                assert score(env, task_of(tid, c), reads + writes[1:], "Done.") == 0.0
            elif k == "extend_two":
                naive = []
                for rid in c.extra["targets"]:
                    x = next(y for y in w.reservations if y["id"] == rid)
                    end = (sr._t(x["ends_at"]) + dt.timedelta(hours=1)).strftime(sr.FMT)
                    naive.append(
                        call(
                            "change_reservation",
                            reservation_id=rid,
                            resource_id=x["resource_id"],
                            starts_at=x["starts_at"],
                            ends_at=end,
                        )
                    )
                assert score(env, task_of(tid, c), reads + naive, "Done.") == 0.0
            elif k == "reserve_series":
                days = [x.arguments["date"] for x in reads if x.name == "get_schedule"]
                first = writes[0].arguments
                naive = [
                    call(
                        "reserve",
                        **{
                            **first,
                            "starts_at": d + first["starts_at"][10:],
                            "ends_at": d + first["ends_at"][10:],
                        },
                    )
                    for d in days
                ]
                assert score(env, task_of(tid, c), reads + naive, "Done.") == 0.0
            else:
                continue
            tried[k] += 1
    assert tried["bump"] >= 2 and tried["extend_two"] >= 3 and tried["reserve_series"] >= 3


def test_other_correct_episodes_score_one(corpus):
    """Extra reads first, the reads in another order, and answers in other formats."""
    for _key, env, _, outcome in corpus[:2]:
        extra = [call("list_resources"), call("list_resources", min_capacity=2)]
        for tid, c in outcome.kept[:30]:
            task = task_of(tid, c)
            if c.verifier == "check_answer":
                value = c.params["expected"]
                reads = [x for x in c.solution if x.name != "submit_answer"]
                texts = (
                    [
                        f"{value} minutes",
                        f"<answer>{value}</answer>",
                        f"It comes to {value} min.\nANSWER: {value}",
                    ]
                    if isinstance(value, int)
                    else [
                        f"You could use the {value}.",
                        f"<answer>{value}</answer>",
                        f"ANSWER: {value.lower()}",
                    ]
                )
                for text in texts:
                    assert (
                        score(env, task, extra + reads[::-1] + [call("submit_answer", answer=text)]) == 1.0
                    ), text
            else:
                reads = [x for x in c.solution if x.name in ("find_member", "list_resources", "get_schedule")]
                rest = [x for x in c.solution if x not in reads]
                assert score(env, task, extra + reads[::-1] + rest, "All set!") == 1.0, c.prompt[0]


def test_another_valid_plan_scores_one_and_broken_plans_zero(corpus):
    done = 0
    for key, env, _, outcome in corpus:
        w = world(env, key[1])
        for tid, c in outcome.kept:
            if kind(c) != "event_plan":
                continue
            task, prm = task_of(tid, c), c.params
            m = w.members[prm["member_id"]]
            ref = [x for x in c.solution if x.name == "reserve"]
            # a small brute-force solver: every plan, then one that differs from the reference
            plans = w._plans(m, prm["date"], prm["parts"], prm["window"], limit=50)
            as_calls = [
                [
                    call(
                        "reserve",
                        member_id=m["id"],
                        resource_id=rid,
                        starts_at=a,
                        ends_at=b,
                        people=part["people"],
                    )
                    for (rid, a, b), part in zip(plan, prm["parts"], strict=True)
                ]
                for plan in plans
            ]
            other = next(pl for pl in as_calls if pl != ref)
            assert score(env, task, other[::-1], "Booked.") == 1.0
            assert score(env, task, ref[:-1], "Booked.") == 0.0  # a part missing

            def shifted(calls, k, **change):
                out = [call(x.name, **x.arguments) for x in calls]
                out[k] = call("reserve", **{**out[k].arguments, **change})
                return out

            first = ref[0].arguments
            longer = (sr._t(first["ends_at"]) + dt.timedelta(minutes=30)).strftime(sr.FMT)
            assert (
                score(env, task, shifted(ref, 0, ends_at=longer), "Booked.") == 0.0
            )  # wrong length / overlap
            assert score(env, task, shifted(ref, 0, people=first["people"] + 1), "Booked.") == 0.0  # party
            late = prm["date"] + " " + prm["window"][1]
            end = (sr._t(late) + dt.timedelta(minutes=prm["parts"][-1]["minutes"])).strftime(sr.FMT)
            assert score(env, task, shifted(ref, len(ref) - 1, starts_at=late, ends_at=end), "Booked.") == 0.0
            if len(ref) >= 2:  # the parts in the wrong order: the second before the first
                a, b = ref[0].arguments, ref[1].arguments
                swapped = shifted(
                    ref,
                    1,
                    starts_at=a["starts_at"],
                    ends_at=(
                        sr._t(a["starts_at"]) + dt.timedelta(minutes=prm["parts"][1]["minutes"])
                    ).strftime(sr.FMT),
                )
                if swapped[1].arguments != b:
                    assert score(env, task, swapped, "Booked.") == 0.0
            wrong = [r for r in w.resources.values() if r["kind"] != prm["parts"][0]["kind"]][0]
            assert score(env, task, shifted(ref, 0, resource_id=wrong["id"]), "Booked.") == 0.0
            busy = next(
                x
                for x in w.reservations
                if x["resource_id"] == first["resource_id"] and x["status"] == "active"
            )
            side = [call("cancel_reservation", reservation_id=busy["id"])]
            assert score(env, task, ref + side, "Booked.") == 0.0  # another change
            done += 1
    assert done >= 5


def test_harden_moves_the_facts_to_the_user(corpus):
    key, env, cands, _ = corpus[0]
    easy = next(c for c in cands if kind(c) == "reserve_fit")
    hard = FAMILY.harden(env, key, 0, easy, "shortcut_one_call")
    assert hard is not None and "@" not in hard.prompt[0] and easy.prompt[0] != hard.prompt[0]
    assert hard.extra["features"]["user_facts"] >= 3 and hard.solution == easy.solution
    assert FAMILY.harden(env, key, 0, hard, "again") is None


def test_same_seed_same_bytes(tmp_path):
    a = build(SHAPE, tmp_path / "a", (3,))[0][1]
    b = build(SHAPE, tmp_path / "b", (3,))[0][1]
    for name in ("tools.py", "verify.py", "state/db.sqlite", "env.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert [c.prompt for c in sr.SHAPE.tasks(a, variant(3), 48)] == [
        c.prompt for c in sr.SHAPE.tasks(b, variant(3), 48)
    ]

"""Shape calendar_bookings: its environments admit enough varied tasks, the policy binds, the references leave the
calendar within policy, and other correct episodes (extra reads, other orders, other formats, another plan)
score 1.0 while plans that break a constraint score 0."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from toolgym.envs.inside.toolgym_env import Context
from toolgym.envs.schema import load_tools_module
from toolgym.synth.general.base import call, read_db
from toolgym.synth.general.shapes import calendar_bookings as cb

from .shapes import admitted, build, prompt_problems, score

SHAPE = "calendar_bookings"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three variants (three vocabularies) and what admission kept of 48 candidates each."""
    out = tmp_path_factory.mktemp("calendar")
    made = []
    for key, env in build(SHAPE, out, (0, 1, 5)):
        cands, outcome = admitted(key, env, n=48)
        made.append((key, env, cands, outcome))
    return made


def kind(c) -> str:
    return c.template.split("/")[2]


def task_of(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


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
    """Every way the calendar breaks the policy, read straight from the database (independent of the shape's
    own World): overbooking, members-only, overlaps, too many upcoming bookings, a waitlist passed over."""
    out = []
    slots = {r["id"]: dict(r) for r in db.execute("SELECT * FROM slots")}
    clients = {r["id"]: dict(r) for r in db.execute("SELECT * FROM clients")}
    active = [dict(r) for r in db.execute("SELECT * FROM bookings WHERE status = 'booked'")]
    per_slot = Counter(b["slot_id"] for b in active)
    for sid, n in per_slot.items():
        if n > slots[sid]["capacity"]:
            out.append(f"{sid} overbooked")
    by_client: dict[str, list] = {}
    for b in active:
        s = slots[b["slot_id"]]
        if s["members_only"] and not clients[b["client_id"]]["member"]:
            out.append(f"{b['id']} members-only")
        if s["starts_at"] > p["now"]:
            by_client.setdefault(b["client_id"], []).append(s)
    for cid, mine in by_client.items():
        if len(mine) > p["max_active"]:
            out.append(f"{cid} over the limit")
        for a, b in itertools.combinations(mine, 2):
            if a["starts_at"] < b["ends_at"] and b["starts_at"] < a["ends_at"]:
                out.append(f"{cid} double-booked")
    for sid in {r[0] for r in db.execute("SELECT slot_id FROM waitlist")}:
        s = slots[sid]
        if per_slot[sid] >= s["capacity"]:
            continue
        for (cid,) in db.execute("SELECT client_id FROM waitlist WHERE slot_id = ?", (sid,)):
            mine = by_client.get(cid, [])
            member_ok = clients[cid]["member"] or not s["members_only"]
            free = not any(a["starts_at"] < s["ends_at"] and s["starts_at"] < a["ends_at"] for a in mine)
            if member_ok and free and len(mine) < p["max_active"]:
                out.append(f"{sid} has room while {cid} waits")
    return out


def test_each_variant_admits_enough_varied_tasks(corpus):
    for key, _env, cands, outcome in corpus:
        kept = [c for _, c in outcome.kept]
        assert len(cands) == 48 and len(kept) >= 42, (key, outcome.drops)  # the shortcut gate may drop a few
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
        # the facts the user holds are not in the prompt: who they are
        assert "@" not in c.prompt[0] and "@example.com" in c.user_instructions
        assert c.user_instructions.startswith("You are ")


def test_prompts_read_naturally(corpus):
    for *_, cands, _ in corpus:
        for c in cands:
            assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
            assert "quantity" not in c.prompt[0] and "SL1" not in c.prompt[0]
    phrasings = Counter((kind(c), c.template.rsplit("/", 1)[1]) for *_, cands, _ in corpus for c in cands)
    per_kind = Counter(k for k, _ in phrasings)
    seen = Counter(kind(c) for *_, cands, _ in corpus for c in cands)
    # every kind asked often enough shows at least three phrasings
    assert all(per_kind[k] >= 3 for k, n in seen.items() if n >= 6), (per_kind, seen)


def test_references_leave_the_calendar_within_policy(corpus, tmp_path):
    checked = 0
    for key, env, _, outcome in corpus:
        p = cb.rules(_variant(key[1]))
        assert policy_breaks(run_tools(env, tmp_path, []), p) == []
        for _, c in outcome.kept:
            if c.verifier in ("check_state", "check_week_plan"):
                db = run_tools(env, tmp_path, c.solution)
                assert policy_breaks(db, p) == [], (c.template, c.prompt[0])
                checked += 1
    assert checked >= 60


def test_rule_free_actions_score_zero(corpus):
    """What an agent that ignores the policy does: book the first slot of the service, cancel without the fee or
    the promotion, cancel both bookings when late ones are refused."""
    tried = Counter()
    for _key, env, _, outcome in corpus:
        data = read_db(env)
        slots = sorted(data["slots"], key=lambda s: s["starts_at"])
        for tid, c in outcome.kept:
            k = kind(c)
            writes = [x for x in c.solution if x.name.startswith(("book_", "cancel_", "charge_", "move_"))]
            if k == "book_earliest":
                book = writes[0]
                sid = next(s["service_id"] for s in slots if s["id"] == book.arguments["slot_id"])
                first = next(s for s in slots if s["service_id"] == sid)
                naive = call(book.name, client_id=book.arguments["client_id"], slot_id=first["id"])
                assert score(env, task_of(tid, c), c.solution[:-1] + [naive], "Done.") == 0.0
            elif k == "cancel_two":
                naive = [call("cancel_booking", booking_id=b) for b in c.extra["targets"]]
                assert score(env, task_of(tid, c), c.solution[:2] + naive, "Done.") == 0.0
            elif k == "cancel_promote":
                naive = [x for x in writes if x.name == "cancel_booking"][:1]
                assert score(env, task_of(tid, c), c.solution[:2] + naive, "Done.") == 0.0
            else:
                continue
            tried[k] += 1
    assert tried["book_earliest"] >= 3 and tried["cancel_promote"] >= 3


def test_other_correct_episodes_score_one(corpus):
    """Extra reads first, the reads in another order, and answers in other formats."""
    for key, env, _, outcome in corpus[:2]:
        slots = _variant(key[1]).vocab["slots"]
        extra = [call("list_services"), call(f"list_{slots}")]
        for tid, c in outcome.kept[:24]:
            task = task_of(tid, c)
            if c.verifier == "check_answer":
                value = c.params["expected"]
                reads = [x for x in c.solution if x.name != "submit_answer"]
                for text in (
                    f"${value:,.2f}" if isinstance(value, float) else f"{value} {slots}",
                    f"<answer>{value}</answer>",
                    f"Let me check your bookings.\nANSWER: {value}",
                ):
                    sol = extra + reads[::-1] + [call("submit_answer", answer=text)]
                    assert score(env, task, sol) == 1.0, (c.prompt[0], text)
            else:
                reads = [x for x in c.solution if x.name in ("find_client", "list_services")]
                rest = [x for x in c.solution if x not in reads]
                assert score(env, task, extra + reads + rest, "All done, see you soon!") == 1.0, c.prompt[0]


def _plans(env: Path, c) -> tuple[list[list[str]], dict]:
    """Every plan of a week-plan task by brute force over the slots, from the database and the task alone."""
    from toolgym.synth.general import FAMILY

    data = read_db(env)
    key = (SHAPE, int(env.name.rsplit("_v", 1)[1]))
    p = cb.rules(FAMILY.variant(key, 0))
    w = cb.World(data, p, FAMILY.variant(key, 0))
    prm = c.params
    me = w.clients[prm["client_id"]]
    busy = {w.slots[b["slot_id"]]["starts_at"][:10] for b in w.active(me["id"])}
    pool = [
        s
        for s in data["slots"]
        if p["now"] < s["starts_at"] < prm["until"]
        and int(s["starts_at"][11:13]) >= prm["earliest_hour"]
        and s["starts_at"][:10] not in busy
        and w.booked(s) < s["capacity"]
        and (me["member"] or not s["members_only"])
    ]
    out = []
    for combo in itertools.combinations(pool, prm["sessions"]):
        if len({s["starts_at"][:10] for s in combo}) < len(combo) or len(
            {s["service_id"] for s in combo}
        ) < len(combo):
            continue
        if sum(w.price(me, s) for s in combo) <= prm["budget"] + 1e-9:
            out.append([s["id"] for s in combo])
    return out, {"pool": pool, "w": w, "me": me}


def test_another_valid_plan_scores_one_and_broken_plans_zero(corpus):
    done = 0
    for _key, env, _, outcome in corpus:
        for tid, c in outcome.kept:
            if kind(c) != "plan_week":
                continue
            task = task_of(tid, c)
            book = next(x.name for x in c.solution if x.name.startswith("book_"))
            cid = c.params["client_id"]
            ref = [x.arguments["slot_id"] for x in c.solution if x.name == book]
            plans, info = _plans(env, c)
            other = next(pl for pl in plans if sorted(pl) != sorted(ref))

            def booked(ids, book=book, cid=cid):
                return [call(book, client_id=cid, slot_id=s) for s in ids]

            assert score(env, task, booked(other[::-1]), "Booked.") == 1.0
            w, pool = info["w"], info["pool"]
            # each constraint broken in turn
            assert score(env, task, booked(ref[:-1]), "Booked.") == 0.0  # too few
            over = [
                pl
                for pl in itertools.combinations([s["id"] for s in pool], len(ref))
                if list(pl) not in plans
            ]
            same_day = [pl for pl in over if len({w.slots[s]["starts_at"][:10] for s in pl}) < len(pl)]
            dear = [
                pl
                for pl in over
                if len({w.slots[s]["starts_at"][:10] for s in pl}) == len(pl)
                and len({w.slots[s]["service_id"] for s in pl}) == len(pl)
            ]
            for broken in same_day[:1] + dear[:1]:
                assert score(env, task, booked(broken), "Booked.") == 0.0
            full = [
                s
                for s in w.slots.values()
                if w.booked(s) >= s["capacity"] and s["starts_at"] < c.params["until"]
            ]
            if full:
                assert score(env, task, booked(ref[:-1] + [full[0]["id"]]), "Booked.") == 0.0
            cancel = [x for x in w.bookings if x["client_id"] != cid and x["status"] == "booked"][:1]
            side = [call("cancel_booking", booking_id=cancel[0]["id"])]
            assert score(env, task, booked(ref) + side, "Booked.") == 0.0  # another change
            done += 1
    assert done >= 5


def test_harden_moves_the_facts_to_the_user(corpus):
    key, env, cands, _ = corpus[0]
    from toolgym.synth.general import FAMILY

    easy = next(c for c in cands if kind(c) == "book_earliest")
    hard = FAMILY.harden(env, key, 0, easy, "shortcut_one_call")
    assert hard is not None and "@" not in hard.prompt[0] and easy.prompt[0] != hard.prompt[0]
    assert hard.extra["features"]["user_facts"] >= 2 and hard.solution == easy.solution
    assert FAMILY.harden(env, key, 0, hard, "again") is None


def test_same_seed_same_bytes(tmp_path):
    a = build(SHAPE, tmp_path / "a", (2,))[0][1]
    b = build(SHAPE, tmp_path / "b", (2,))[0][1]
    for name in ("tools.py", "verify.py", "state/db.sqlite", "env.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert [c.prompt for c in cb.SHAPE.tasks(a, _variant(2), 48)] == [
        c.prompt for c in cb.SHAPE.tasks(b, _variant(2), 48)
    ]


def _variant(i):
    from toolgym.synth.general import FAMILY

    return FAMILY.variant((SHAPE, i), 0)

"""Shape memberships: its tasks bind rules (grace period, loyalty discount, proration, caps, refund window),
compose writes, keep facts with the user, plan a household's sign-up under constraints, and accept every correct
episode (other orders, extra reads, other formats, another valid plan)."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY

from .shapes import admitted, build, prompt_problems, score

SHAPE = "memberships"
WRITES = (
    "renew_membership",
    "change_tier",
    "record_benefit_use",
    "add_family_member",
    "enroll_member",
    "refund_payment",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(env dir, task id, candidate) of every kept task of three variants, and the kept count per env."""
    out, per_env = [], []
    for key, env_dir in build(SHAPE, tmp_path_factory.mktemp("mb"), indexes=(0, 1, 2)):
        _, outcome = admitted(key, env_dir, n=48)
        per_env.append(len(outcome.kept))
        out += [(env_dir, tid, c) for tid, c in outcome.kept]
    return out, per_env


def task(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def kind(c) -> str:
    return c.template.split("/")[2].removesuffix("_held")


def writes(c) -> int:
    return sum(1 for x in c.solution if x.name in WRITES)


def of(corpus, name, pred=lambda c: True):
    return [x for x in corpus[0] if kind(x[2]) == name and pred(x[2])]


def test_volume_kinds_and_shares(corpus):
    kept, per_env = corpus
    assert min(per_env) >= 45, per_env
    kinds = Counter(kind(c) for _, _, c in kept)
    assert len(kinds) >= 8, kinds
    assert max(kinds.values()) / len(kept) <= 0.2, kinds
    n = len(kept)
    write_tasks = [c for _, _, c in kept if writes(c)]
    # every write kind needs a rule first: a price, a cap, a refund window or a tier that takes add-ons
    assert len(write_tasks) / n >= 0.4
    assert sum(writes(c) >= 2 for _, _, c in kept) / n >= 0.3
    assert sum(bool(c.user_instructions) for _, _, c in kept) / n >= 0.2
    assert sum(c.verifier == "check_household_plan" for _, _, c in kept) / n >= 0.1
    levels = Counter(c.difficulty for _, _, c in kept)
    assert set(levels) >= {2, 3, 4, 5}, levels
    for _, _, c in kept:
        assert not prompt_problems(c.prompt[0]), (c.prompt[0], prompt_problems(c.prompt[0]))
        feats = c.extra["features"]
        assert feats["constraints"] >= 1
        assert (feats["user_facts"] >= 1) == bool(c.user_instructions) == ("_held" in c.template)


def test_user_held_tasks_keep_the_facts_out_of_the_prompt(corpus):
    held = [x for x in corpus[0] if x[2].user_instructions]
    assert held
    for _, _, c in held:
        member = next(x.arguments["member_id"] for x in c.solution if "member_id" in x.arguments)
        assert "@" not in c.prompt[0] and member not in c.prompt[0]
        assert member in c.user_instructions
    env_dir, tid, c = held[0]
    assert score(env_dir, task(tid, c), [], "Could you give me your email address?") == 0.0


def test_ignoring_a_rule_fails(corpus):
    """The rule-free version of each write kind scores 0: no grace-period price, no cap, no refund window."""
    env_dir, tid, c = of(corpus, "renew_pair")[0]
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    fee = dict(db.execute("SELECT m.id, t.annual_fee FROM members m JOIN tiers t ON t.id = m.tier_id"))
    naive = [
        ToolCall(name=x.name, arguments={**x.arguments, "amount": fee[x.arguments["member_id"]]})
        if x.name == "renew_membership"
        else x
        for x in c.solution
    ]
    assert score(env_dir, task(tid, c), naive, "Done.") == 0.0
    env_dir, tid, c = of(corpus, "use_benefit")[0]
    over = c.solution[:-1] + [
        ToolCall(name="record_benefit_use", arguments={**c.solution[-1].arguments, "amount": 99})
    ]
    assert score(env_dir, task(tid, c), over, "Done.") == 0.0
    env_dir, tid, c = of(corpus, "refund")[0]
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    member = c.solution[1].arguments["member_id"]
    every = [
        r[0]
        for r in db.execute("SELECT id FROM payments WHERE member_id = ? AND kind = 'purchase'", (member,))
    ]
    refund_all = c.solution[:2] + [
        ToolCall(name="refund_payment", arguments={"payment_id": p}) for p in every
    ]
    assert score(env_dir, task(tid, c), refund_all, "Done.") == 0.0


def test_other_orders_extra_reads_and_number_formats_pass(corpus):
    env_dir, tid, c = of(corpus, "renew_pair")[0]
    reads = [x for x in c.solution if x.name not in WRITES]
    ws = [x for x in c.solution if x.name in WRITES]
    extra = [
        ToolCall(name="get_today"),
        ToolCall(name="list_payments", arguments={"member_id": ws[0].arguments["member_id"]}),
        ToolCall(name="find_member", arguments={"name": "a"}),
    ]
    assert score(env_dir, task(tid, c), extra + reads + list(reversed(ws)), "Both renewed.") == 1.0
    assert score(env_dir, task(tid, c), reads + ws[:1], "Done.") == 0.0  # one of two is not enough
    env_dir, tid, c = of(corpus, "upgrade_add_family", lambda c: writes(c) == 3)[0]
    ws = [x for x in c.solution if x.name in WRITES]
    # the add-ons first, then the change of tier, with another spelling of the names: the same final state
    respelled = [
        ToolCall(name=w.name, arguments={**w.arguments, "name": "  " + w.arguments["name"].upper()})
        for w in ws[1:]
    ]
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    tier_id = db.execute("SELECT id FROM tiers WHERE name = ?", (ws[0].arguments["tier"],)).fetchone()[0]
    tier_by_id = ToolCall(name="change_tier", arguments={**ws[0].arguments, "tier": tier_id.lower()})
    assert score(env_dir, task(tid, c), [*reversed(respelled), tier_by_id], "Done.") == 1.0


@pytest.mark.parametrize(
    "fmt",
    [
        "{:.2f}",
        "{:,.2f}",
        "£{:,.2f}",
        "{:.2f} EUR",
        "It comes to {:.2f} in total.",
        "<answer>{:.2f}</answer>",
        "ANSWER: {:.2f} (after the discount)",
    ],
)
def test_answers_in_other_formats_pass(corpus, fmt):
    for name in ("renewal_quote", "upgrade_quote", "allowance"):
        found = of(corpus, name)
        if not found:
            continue
        env_dir, tid, c = found[0]
        reads = [x for x in c.solution if x.name != "submit_answer"]
        right = float(c.params["expected"])
        submit = [ToolCall(name="submit_answer", arguments={"answer": fmt.format(right)})]
        assert score(env_dir, task(tid, c), reads[::-1] + submit) == 1.0, (name, fmt)
        assert score(env_dir, task(tid, c), [], fmt.format(right)) == 1.0  # a final message is read the same
        wrong = [ToolCall(name="submit_answer", arguments={"answer": fmt.format(right + 1)})]
        assert score(env_dir, task(tid, c), reads + wrong) == 0.0
        assert score(env_dir, task(tid, c), reads, c.guess) == 0.0


# -- planning: a second valid plan passes, a plan breaking each constraint fails --------------------------------
def _tiers(env_dir):
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    out = [dict(r) for r in db.execute("SELECT * FROM tiers")]
    db.close()
    return out


def _solve(tiers, p):
    """Every valid sign-up (brute force): tuples of (owner, tier, add-ons)."""
    persons, own = p["people"], set(p["own"])
    for assign in itertools.product(range(-len(persons), len(tiers)), repeat=len(persons)):
        # assign[i] >= 0: person i holds tier assign[i]; < 0: an add-on of person -assign[i] - 1
        plan = []
        for i, a in enumerate(assign):
            if a >= 0:
                fam = [persons[j] for j, b in enumerate(assign) if b == -i - 1]
                plan.append((persons[i], tiers[a], fam))
            elif persons[i] in own or assign[-a - 1] < 0:
                break
        else:
            if any(len(f) > t["addon_slots"] for _, t, f in plan):
                continue
            cost = sum(t["annual_fee"] + p["joining_fee"] + len(f) * t["addon_fee"] for _, t, f in plan)
            if (
                cost <= p["budget"]
                and sum(t["passes"] for _, t, _ in plan) >= p["min_passes"]
                and sum(t["credits"] for _, t, _ in plan) >= p["min_credits"]
            ):
                yield plan


def _calls(plan, p, fee_delta=0.0):
    out = [ToolCall(name="list_tiers")]
    for owner, t, fam in plan:
        amount = t["annual_fee"] + p["joining_fee"] + len(fam) * t["addon_fee"] + fee_delta
        out.append(
            ToolCall(
                name="enroll_member",
                arguments={"name": owner, "tier": t["id"], "amount": amount, "family": fam},
            )
        )
    return out


def test_a_second_valid_plan_passes_and_broken_plans_fail(corpus):
    env_dir, tid, c = of(corpus, "household_plan", lambda c: len(c.params["people"]) >= 3)[0]
    p, tiers = c.params, _tiers(env_dir)
    ref = {(x.arguments["name"], x.arguments["tier"]) for x in c.solution if x.name == "enroll_member"}
    plans = list(_solve(tiers, p))
    other = next(pl for pl in plans if {(o, t["name"]) for o, t, _ in pl} != ref)
    assert score(env_dir, task(tid, c), _calls(other, p), "Signed up.") == 1.0
    assert score(env_dir, task(tid, c), _calls(other, p, fee_delta=-1.0), "Signed up.") == 0.0  # undercharged
    assert score(env_dir, task(tid, c), _calls(other[:-1], p), "Signed up.") == 0.0  # someone left out
    dearest = max(tiers, key=lambda t: t["annual_fee"])
    costly = [(o, dearest, f) for o, _, f in other if len(f) <= dearest["addon_slots"]]
    if len(costly) == len(other):
        over = sum(
            dearest["annual_fee"] + p["joining_fee"] + len(f) * dearest["addon_fee"] for _, _, f in costly
        )
        if over > p["budget"]:
            assert score(env_dir, task(tid, c), _calls(costly, p), "Signed up.") == 0.0  # over budget
    cheapest = min(tiers, key=lambda t: t["annual_fee"])
    cheap = [(name, cheapest, []) for name in p["people"]]
    assert score(env_dir, task(tid, c), _calls(cheap, p), "Signed up.") == 0.0  # too few benefits
    no_slots = next(t for t in tiers if t["addon_slots"] == 0)
    crowded = [(p["people"][0], no_slots, p["people"][1:])]
    assert (
        score(env_dir, task(tid, c), _calls(crowded, p), "Signed up.") == 0.0
    )  # add-ons on a tier without them
    roomy = max(tiers, key=lambda t: (t["addon_slots"], -t["annual_fee"]))
    if p["own"] and roomy["addon_slots"] >= len(p["people"]) - 1:
        squeezed = [(p["people"][0], roomy, p["people"][1:])]  # the one who wants their own card as an add-on
        assert score(env_dir, task(tid, c), _calls(squeezed, p), "Signed up.") == 0.0
    renewing = ToolCall(name="renew_membership", arguments={"member_id": _a_member(env_dir), "amount": 1.0})
    assert (
        score(env_dir, task(tid, c), _calls(other, p) + [renewing], "Signed up.") == 0.0
    )  # another record changed


def _a_member(env_dir) -> str:
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    out = db.execute("SELECT id FROM members ORDER BY id LIMIT 1").fetchone()[0]
    db.close()
    return out


def test_harden_moves_the_member_to_the_user(corpus, tmp_path):
    env_dir, tid, c = next(x for x in corpus[0] if x[2].extra.get("held"))
    key = (SHAPE, int(env_dir.name[-3:]))
    hard = FAMILY.harden(env_dir, key, 0, c, "shortcut_one_call")
    assert hard is not None and hard.user_instructions and "@" not in hard.prompt[0]
    assert hard.extra["features"]["user_facts"] >= 1


def test_same_seed_same_bytes(tmp_path):
    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
        return h.hexdigest()

    a = build(SHAPE, tmp_path / "a", indexes=(3,))[0]
    b = build(SHAPE, tmp_path / "b", indexes=(3,))[0]
    assert digest(a[1]) == digest(b[1])
    ta = FAMILY.make_tasks(a[1], a[0], 0, 48)
    tb = FAMILY.make_tasks(b[1], b[0], 0, 48)
    assert [(x.prompt, x.params, x.solution) for x in ta] == [(x.prompt, x.params, x.solution) for x in tb]

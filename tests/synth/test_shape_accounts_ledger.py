"""The accounts_ledger shape: its environments admit a mixed set of tasks whose rules bind, whose writes
compose, whose user holds facts and whose plans are checked by constraints; right episodes that differ from the
reference (order, reads, formats, another plan) score 1.0, and plans that break a rule score 0."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db
from toolgym.synth.general.shapes import accounts_ledger as al

from .shapes import admitted, build, prompt_problems, score

SHAPE = "accounts_ledger"


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = []
    for key, env in build(SHAPE, tmp_path_factory.mktemp("al"), indexes=(0, 1, 2)):
        cands, outcome = admitted(key, env, n=48)
        out.append((key, env, cands, outcome))
    return out


def _kind(c) -> str:
    return c.template.split("/")[2]


def _task(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def _writes(c) -> int:
    return sum(x.name in ("transfer", "pay_bill", "dispute_charge") for x in c.solution)


def test_schema_tools_and_vocabularies(envs):
    _, env, _, _ = envs[0]
    spec = json.loads((env / "env.json").read_text())
    names = {t["function"]["name"] for t in spec["tools"]}
    assert len(names) >= 6 and sum(bool(t.get("submit")) for t in spec["tools"]) == 1
    assert {t["function"]["name"] for t in spec["tools"] if t.get("access") == "write"} >= {
        "transfer",
        "pay_bill",
    }
    assert len([t for t in read_db(env) if read_db(env)[t]]) >= 4
    assert len(al.VOCABS) >= 3 and len({v["name"] for v in al.VOCABS}) == len(al.VOCABS)
    # rules differ across variants, and the description states them
    rules = [al.rules(FAMILY.variant(k, 0)) for k, *_ in envs]
    assert len({json.dumps(r, sort_keys=True) for r in rules}) == 3
    assert f"${al.money(rules[0]['overdraft'])}" in spec["description"]


def test_volume_mix_and_shares(envs):
    for key, _env, _cands, outcome in envs:
        kept = [c for _, c in outcome.kept]
        assert len(kept) >= 45, (key, dict(outcome.drops))
        kinds = Counter(_kind(c) for c in kept)
        assert len(kinds) >= 6 and max(kinds.values()) <= len(kept) * 0.25
        writes = [c for c in kept if _writes(c)]
        binding = [c for c in writes if c.extra["features"]["constraints"] >= 2]
        assert len(binding) >= 0.4 * len(writes)
        multi = [
            c
            for c in kept
            if _writes(c) >= 2 and c.verifier in ("check_state", "check_disputes", "check_cover")
        ]
        assert len(multi) >= 0.3 * len(kept)
        users = [c for c in kept if c.user_instructions and c.extra["features"]["user_facts"]]
        assert len(users) >= 0.2 * len(kept)
        assert sum(_kind(c) == "cover" for c in kept) >= 0.1 * len(kept)
        assert {c.difficulty for c in kept} >= {2, 3, 4, 5}
        skeletons = Counter(c.template for c in kept)
        assert max(skeletons.values()) <= 6


def test_prompts_read_naturally(envs):
    for _, _, cands, _ in envs:
        for c in cands:
            assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
            assert "_" not in c.prompt[0].split("@")[0]
        for c in cands:
            if c.user_instructions:
                # what the user holds (the code; for the vague asks the email too) is not in the prompt
                code = c.user_instructions.rsplit(" ", 1)[-1].strip(".")
                assert (
                    code.isdigit() and code not in c.prompt[0] and c.user_instructions.startswith("You are ")
                )
                assert _kind(c) not in ("move_user", "pay_user") or "@" not in c.prompt[0]


def test_same_seed_same_bytes(envs, tmp_path):
    key, env, cands, _ = envs[1]
    ((_, again),) = build(SHAPE, tmp_path, indexes=(key[1],))
    for name in ("tools.py", "verify.py", "state/db.sqlite", "env.json"):
        assert (
            hashlib.sha256((env / name).read_bytes()).digest()
            == hashlib.sha256((again / name).read_bytes()).digest()
        )
    assert [c.prompt for c in FAMILY.make_tasks(again, key, 0, 48)] == [c.prompt for c in cands]


def _first(envs, kind, pred=lambda c: True):
    for _key, env, _, outcome in envs:
        for tid, c in outcome.kept:
            if _kind(c) == kind and pred(c):
                return env, tid, c
    raise AssertionError(f"no kept {kind} task")


def test_answers_in_other_formats_score_one(envs):
    env, tid, c = _first(envs, "available")
    value = float(c.params["expected"].replace(",", ""))
    reads = [x for x in c.solution if x.name != "submit_answer"]
    for answer in (
        f"${value:,.2f}",
        f"The available balance is {value:.2f} dollars.",
        f"<answer>{value}</answer>",
    ):
        assert (
            score(env, _task(tid, c), [*reads, ToolCall(name="submit_answer", arguments={"answer": answer})])
            == 1.0
        )
    # extra reads in another order still score 1.0; the rule-free posted balance scores 0
    extra = [
        reads[0],
        ToolCall(name="list_payees", arguments={"customer_id": reads[1].arguments["customer_id"]}),
        *reads[1:][::-1],
    ]
    assert score(env, _task(tid, c), extra, f"{value:.2f}") == 1.0
    assert score(env, _task(tid, c), reads, c.guess) == 0.0


def test_writes_in_another_order_and_the_other_copy_score_one(envs):
    env, tid, c = _first(envs, "pay_two")
    reads = [x for x in c.solution if x.name != "pay_bill"]
    pays = [x for x in c.solution if x.name == "pay_bill"]
    assert score(env, _task(tid, c), [*pays[::-1], *reads], "done") == 1.0
    # the payment that breaches the checking floor, paid from checking anyway, scores 0
    wrong = [
        ToolCall(name="pay_bill", arguments={**p.arguments, "account_id": pays[0].arguments["account_id"]})
        for p in pays
    ]
    assert score(env, _task(tid, c), wrong, "done") == 0.0
    env, tid, c = _first(envs, "dispute")
    other = {p[1]: p[0] for p in c.params["pairs"]}
    flipped = [
        ToolCall(
            name=x.name, arguments={**x.arguments, "transaction_id": other[x.arguments["transaction_id"]]}
        )
        if x.name == "dispute_charge"
        else x
        for x in c.solution
    ]
    assert score(env, _task(tid, c), flipped, "done") == 1.0
    late = _late_pair(env, c)
    extra = ToolCall(name="dispute_charge", arguments={"transaction_id": late, "reason": "Duplicate charge"})
    assert score(env, _task(tid, c), [*c.solution, extra], "done") == 0.0  # past the window
    assert score(env, _task(tid, c), c.solution[:-1], "done") == 0.0  # one duplicate left undisputed


def _late_pair(env, c) -> str:
    db = read_db(env)
    account = next(x.arguments["account_id"] for x in c.solution if x.name == "list_transactions")
    seen = Counter(
        (t["posted"], t["description"], t["amount"])
        for t in db["transactions"]
        if t["account_id"] == account and t["kind"] == "card"
    )
    inside = {t for p in c.params["pairs"] for t in p}
    return next(
        t["id"]
        for t in db["transactions"]
        if t["account_id"] == account
        and t["kind"] == "card"
        and seen[(t["posted"], t["description"], t["amount"])] == 2
        and t["id"] not in inside
    )


def _plans(r, accs, bal, cap_left):
    """Every plan of the fewest transfers (one per overdrawn account, from any account with room, in whole-dollar
    amounts from the deficit up to $20 more) that keeps every floor and the cap: a small brute-force solver."""
    deficits = [(k, -bal[a["id"]]) for k, a in accs.items() if k != "credit" and bal[a["id"]] < 0]
    sources = [k for k in accs if k not in dict(deficits)]
    for srcs in itertools.product(sources, repeat=len(deficits)):
        for extra in itertools.product((0, 7, 20), repeat=len(deficits)):
            room = {k: bal[a["id"]] + (a["limit"] or 0) for k, a in accs.items()}  # deposit accounts: floor 0
            plan, ok = [], True
            for (dst, need), src, more in zip(deficits, srcs, extra, strict=True):
                amount = round(need + more, 2)
                kind = "savings" if src == "savings" else "credit" if src == "credit" else "checking"
                room[src] -= amount + al.fee(r, kind, amount)
                ok &= room[src] >= -1e-9 and amount <= r["threshold"]
                plan.append((src, dst, amount))
            if ok and sum(p[2] for p in plan) <= cap_left:
                yield plan


def test_a_second_valid_plan_scores_one_and_broken_plans_score_zero(envs):
    key, env, _, outcome = envs[0]
    d = al.data(FAMILY.variant(key, 0))
    r, bal = d["rules"], al.balances(d["tables"])
    checked = 0
    for tid, c in outcome.kept:
        if _kind(c) != "cover":
            continue
        f = next(f for f in d["facts"] if f["id"] == c.params["customer_id"])
        accs = f["accounts"]
        ref = [
            (x.arguments["from_account_id"], x.arguments["to_account_id"], x.arguments["amount"])
            for x in c.solution
            if x.name == "transfer"
        ]
        ids = {k: a["id"] for k, a in accs.items()}
        other = next(
            p for p in _plans(r, accs, bal, c.params["cap"]) if [(ids[s], ids[t], a) for s, t, a in p] != ref
        )

        def run(plan, tid=tid, c=c):
            calls = [
                ToolCall(name="transfer", arguments={"from_account_id": s, "to_account_id": t, "amount": a})
                for s, t, a in plan
            ]
            return score(env, _task(tid, c), [*c.solution[:2], *calls], "done")

        assert run([(ids[s], ids[t], a) for s, t, a in other]) == 1.0
        assert run(ref) == 1.0
        assert run(ref[:-1]) == 0.0  # an account left overdrawn
        s, t, a = ref[0]
        half = round(a / 2, 2)
        assert run([(s, t, half), (s, t, round(a - half, 2)), *ref[1:]]) == 0.0  # more transfers than needed
        if "savings" in accs and bal[ids["savings"]] > 0:
            too_much = round(bal[ids["savings"]] + 1, 2)  # the savings floor (fee included) is broken
            assert run([(ids["savings"], t, too_much), *ref[1:]]) == 0.0
        checked += 1
    assert checked >= 3


def test_user_held_facts_decide_the_outcome(envs):
    env, tid, c = _first(
        envs, "move_user", lambda c: any("verification_code" in x.arguments for x in c.solution)
    )
    without = [
        ToolCall(name=x.name, arguments={k: v for k, v in x.arguments.items() if k != "verification_code"})
        for x in c.solution
    ]
    assert score(env, _task(tid, c), c.solution, "done") == 1.0
    assert score(env, _task(tid, c), without, "done") == 0.0  # the code the user holds was never asked for
    env, tid, c = _first(envs, "pay_user")
    pay = c.solution[-1]
    db = read_db(env)
    payee = next(p for p in db["payees"] if p["id"] == pay.arguments["payee_id"])
    twin = next(
        p
        for p in db["payees"]
        if p["customer_id"] == payee["customer_id"]
        and p["category"] == payee["category"]
        and p["id"] != payee["id"]
    )
    wrong = ToolCall(name="pay_bill", arguments={**pay.arguments, "payee_id": twin["id"]})
    assert score(env, _task(tid, c), [*c.solution[:-1], wrong], "done") == 0.0


def test_harden_moves_the_email_to_the_user(envs):
    _, _, cands, _ = envs[0]
    c = next(c for c in cands if _kind(c) == "available")
    h = al.SHAPE.harden(None, None, c, "shortcut_one_call")
    assert h is not None and "@" not in h.prompt[0] and "@" in h.user_instructions
    assert h.extra["features"]["user_facts"] == c.extra["features"]["user_facts"] + 1
    assert al.SHAPE.harden(None, None, h, "again") is None

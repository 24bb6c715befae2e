"""The subscriptions shape: its environments admit a mixed set of tasks whose rules bind (proration, renewal,
refunds, pauses, promo terms), whose writes compose, whose user holds facts and whose household plans are
checked by constraints; right episodes that differ from the reference score 1.0, broken ones 0."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db
from toolgym.synth.general.shapes import subscriptions as sb

from .shapes import admitted, build, prompt_problems, score

SHAPE = "subscriptions"
WRITES = ("change_plan", "cancel_subscription", "pause_subscription", "subscribe")


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = []
    for key, env in build(SHAPE, tmp_path_factory.mktemp("sb"), indexes=(0, 1, 2)):
        cands, outcome = admitted(key, env, n=48)
        out.append((key, env, cands, outcome))
    return out


def _kind(c) -> str:
    return c.template.split("/")[2]


def _task(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def _writes(c) -> int:
    return sum(x.name in WRITES for x in c.solution)


def _first(envs, kind, pred=lambda c: True):
    for _key, env, _, outcome in envs:
        for tid, c in outcome.kept:
            if _kind(c) == kind and pred(c):
                return env, tid, c
    raise AssertionError(f"no kept {kind} task")


def test_schema_tools_and_vocabularies(envs):
    _, env, _, _ = envs[0]
    spec = json.loads((env / "env.json").read_text())
    assert len(spec["tools"]) >= 6 and sum(bool(t.get("submit")) for t in spec["tools"]) == 1
    assert {t["function"]["name"] for t in spec["tools"] if t.get("access") == "write"} == set(WRITES)
    db = read_db(env)
    assert len([t for t in db if db[t]]) >= 5
    assert len(sb.VOCABS) >= 3 and len({v["name"] for v in sb.VOCABS}) == len(sb.VOCABS)
    rules = [sb.rules(FAMILY.variant(k, 0)) for k, *_ in envs]
    assert len({json.dumps(r, sort_keys=True) for r in rules}) == 3
    assert f"at most {rules[0]['max_pause']} weeks" in spec["description"]
    # names come from the vocabulary, and annual plans carry the variant's discount
    plans = {p["name"]: p for p in db["plans"]}
    tier = sb.VOCABS[0]["tiers"][1][0]
    monthly, annual = plans[f"{tier} Monthly"]["price"], plans[f"{tier} Annual"]["price"]
    assert annual == round(monthly * 12 * (100 - rules[0]["annual_discount"]) / 100, 2)


def test_volume_mix_and_shares(envs):
    for key, _env, _cands, outcome in envs:
        kept = [c for _, c in outcome.kept]
        assert len(kept) >= 45, (key, dict(outcome.drops))
        kinds = Counter(_kind(c) for c in kept)
        assert len(kinds) >= 6 and max(kinds.values()) <= len(kept) * 0.25
        writes = [c for c in kept if _writes(c)]
        assert sum(c.extra["features"]["constraints"] >= 2 for c in writes) >= 0.4 * len(writes)
        multi = [c for c in kept if _writes(c) >= 2 and c.verifier in ("check_state", "check_household")]
        assert len(multi) >= 0.3 * len(kept)
        assert sum(
            bool(c.user_instructions) and c.extra["features"]["user_facts"] > 0 for c in kept
        ) >= 0.2 * len(kept)
        assert sum(_kind(c) == "household" for c in kept) >= 0.1 * len(kept)
        assert {c.difficulty for c in kept} >= {3, 4, 5}
        assert max(Counter(c.template for c in kept).values()) <= 6


def test_prompts_read_naturally(envs):
    for _, _, cands, _ in envs:
        for c in cands:
            assert prompt_problems(c.prompt[0]) == [], c.prompt[0]
            if c.user_instructions:
                assert "@" not in c.prompt[0] and c.user_instructions.startswith("You are ")


def test_same_seed_same_bytes(envs, tmp_path):
    key, env, cands, _ = envs[2]
    ((_, again),) = build(SHAPE, tmp_path, indexes=(key[1],))
    for name in ("tools.py", "verify.py", "state/db.sqlite", "env.json"):
        assert (
            hashlib.sha256((env / name).read_bytes()).digest()
            == hashlib.sha256((again / name).read_bytes()).digest()
        )
    assert [c.prompt for c in FAMILY.make_tasks(again, key, 0, 48)] == [c.prompt for c in cands]


def test_answers_in_other_formats_score_one(envs):
    for kind in ("quote_upgrade", "renewal_total"):
        env, tid, c = _first(envs, kind)
        value = float(c.params["expected"].replace(",", ""))
        reads = [x for x in c.solution if x.name != "submit_answer"]
        for answer in (
            f"${value:,.2f}",
            f"That comes to {value:.2f} USD in total.",
            f"<answer>{value}</answer>",
        ):
            calls = [*reads[::-1], ToolCall(name="submit_answer", arguments={"answer": answer})]
            assert score(env, _task(tid, c), calls) == 1.0, answer
        assert score(env, _task(tid, c), reads, c.guess) == 0.0  # the rule-free number


def test_writes_in_another_order_score_one_and_rule_free_writes_zero(envs):
    env, tid, c = _first(envs, "family_change")
    reads = [x for x in c.solution if x.name not in WRITES]
    changes = [x for x in c.solution if x.name in WRITES]
    assert score(env, _task(tid, c), [*changes[::-1], reads[-1]], "done") == 1.0
    naive = [ToolCall(name=x.name, arguments={**x.arguments, "when": "now", "charge": 0.0}) for x in changes]
    assert score(env, _task(tid, c), naive, "done") == 0.0  # upgrade uncharged, downgrade brought forward
    env, tid, c = _first(envs, "cancel_pause", lambda c: _writes(c) == 2)
    pause = next(x for x in c.solution if x.name == "pause_subscription")
    asked = int(next(w for w in c.prompt[0].split() if w.isdigit()))
    longer = ToolCall(name=pause.name, arguments={**pause.arguments, "weeks": asked})
    assert score(env, _task(tid, c), [x if x is not pause else longer for x in c.solution], "done") == 0.0
    env, tid, c = _first(envs, "cancel_pause", lambda c: _writes(c) == 1)
    sub = c.solution[-2].arguments["subscription_id"]  # the pause lookup: paused already this year
    extra = ToolCall(name="pause_subscription", arguments={"subscription_id": sub, "weeks": 1})
    assert score(env, _task(tid, c), c.solution, "done") == 1.0
    assert score(env, _task(tid, c), [*c.solution, extra], "done") == 0.0


def test_a_second_household_plan_scores_one_and_broken_plans_score_zero(envs):
    checked = 0
    for _key, env, _, outcome in envs:
        pl = [tuple(p.values()) for p in read_db(env)["plans"]]
        for tid, c in outcome.kept:
            if _kind(c) != "household":
                continue
            p = c.params
            ref = sorted(x.arguments["plan_id"] for x in c.solution if x.name == "subscribe")
            options = sb.household_options(pl, p["units"], True, p["max_subs"])
            valid = [o for o in options if o[0] <= p["budget"]]
            other = next(o for o in valid if sorted(x[0] for x in o[1]) != ref)

            def run(plan_ids, tid=tid, c=c, env=env):
                calls = [
                    ToolCall(
                        name="subscribe", arguments={"customer_id": c.params["customer_id"], "plan_id": i}
                    )
                    for i in plan_ids
                ]
                return score(env, _task(tid, c), [c.solution[0], *calls], "done")

            assert run([x[0] for x in other[1]][::-1]) == 1.0
            over = next(o for o in options if o[0] > p["budget"])
            assert run([x[0] for x in over[1]]) == 0.0  # over the budget
            assert run(ref[:1]) == 0.0  # too few units
            assert (
                run([*ref, ref[0]] if len(ref) >= p["max_subs"] else [*ref, *ref]) == 0.0
            )  # too many / budget
            plain = [x for x in pl if not x[6]]
            if plain:
                cheap = sorted(plain, key=lambda x: x[4])[0][0]
                assert run([cheap] * p["max_subs"]) == 0.0  # no plan with the feature (or too few units)
            checked += 1
    assert checked >= 6


def test_user_held_facts_decide_the_outcome(envs):
    env, tid, c = _first(envs, "promo_user", lambda c: "promo_code" in c.solution[-1].arguments)
    sub = c.solution[-1]
    without = ToolCall(
        name="subscribe", arguments={k: v for k, v in sub.arguments.items() if k != "promo_code"}
    )
    assert score(env, _task(tid, c), c.solution, "done") == 1.0
    assert score(env, _task(tid, c), [*c.solution[:-1], without], "done") == 0.0
    env, tid, c = _first(envs, "promo_user", lambda c: "promo_code" not in c.solution[-1].arguments)
    code = c.solution[-2].arguments["code"]
    misuse = ToolCall(name="subscribe", arguments={**c.solution[-1].arguments, "promo_code": code})
    assert score(env, _task(tid, c), [*c.solution[:-1], misuse], "done") == 0.0  # the code's terms exclude it


def test_harden_moves_the_email_to_the_user(envs):
    _, _, cands, _ = envs[0]
    c = next(c for c in cands if _kind(c) == "quote_upgrade")
    h = sb.SHAPE.harden(None, None, c, "shortcut_one_call")
    assert h is not None and "@" not in h.prompt[0] and "@" in h.user_instructions
    assert sb.SHAPE.harden(None, None, h, "again") is None

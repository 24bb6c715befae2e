"""Subscriptions: plans with prices and billing cycles, customers' subscriptions (one per household member),
invoices, pauses and promo codes. The policy (prorated upgrades now, downgrades at renewal, refunds on early
cancellation, one pause a year up to a length, promo conditions) is the agent's to apply.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace
from pathlib import Path

from ...family import Candidate
from ..base import Shape, Variant, call, candidate, money, people, phrase, render, write_db

NAME = "subscriptions"
N_CUSTOMERS = 14

SCHEMA = """
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT);
CREATE TABLE plans (id TEXT PRIMARY KEY, name TEXT, tier INTEGER, cycle TEXT, price REAL, units INTEGER,
    feature INTEGER);
CREATE TABLE subscriptions (id TEXT PRIMARY KEY, customer_id TEXT, plan_id TEXT, member TEXT, status TEXT,
    period_start TEXT, period_end TEXT, next_plan_id TEXT);
CREATE TABLE invoices (id TEXT PRIMARY KEY, subscription_id TEXT, date TEXT, description TEXT, amount REAL,
    kind TEXT);
CREATE TABLE pauses (id TEXT PRIMARY KEY, subscription_id TEXT, start TEXT, weeks INTEGER);
CREATE TABLE promos (code TEXT PRIMARY KEY, percent INTEGER, cycle TEXT, min_tier INTEGER, expires TEXT);
"""

VOCABS = [
    {
        "name": "streaming_service",
        "service": "Lumora TV",
        "tiers": [("Mobile", 1, 6.99), ("Basic", 2, 9.99), ("Standard", 3, 15.49), ("Premium", 4, 22.99)],
        "units": "screens",
        "units_col": "screens",
        "feature": "4K streaming",
        "feature_col": "ultra_hd",
        "feature_from": 3,
        "place": "our new holiday flat",
    },
    {
        "name": "saas_tool",
        "service": "Taskforge",
        "tiers": [("Solo", 1, 9.0), ("Starter", 3, 24.0), ("Team", 8, 59.0), ("Business", 15, 119.0)],
        "units": "seats",
        "units_col": "seats",
        "feature": "single sign-on",
        "feature_col": "sso",
        "feature_from": 4,
        "place": "our new project office",
    },
    {
        "name": "meal_kit",
        "service": "Greenfork Kitchen",
        "tiers": [("Taster", 2, 39.99), ("Classic", 3, 54.99), ("Family", 4, 69.99), ("Feast", 6, 94.99)],
        "units": "meals a week",
        "units_col": "meals_per_week",
        "feature": "the vegetarian menu",
        "feature_col": "vegetarian",
        "feature_from": 2,
        "place": "my parents' house",
    },
    {
        "name": "gym_chain",
        "service": "IronPeak Fitness",
        "tiers": [("Off-Peak", 1, 19.99), ("Anytime", 1, 29.99), ("Duo", 2, 49.99), ("Family", 4, 79.99)],
        "units": "members covered",
        "units_col": "members",
        "feature": "access to every club",
        "feature_col": "all_clubs",
        "feature_from": 2,
        "place": "the family",
    },
]


# -- the variant: rules and data -----------------------------------------------------------------------------
def rules(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "today": dt.date(2025, rng.randint(3, 11), rng.randint(1, 28)).isoformat(),
        "annual_discount": rng.choice([10, 15, 17, 20]),
        "cancel_fee": rng.choice([0, 10, 15, 25]),
        "max_pause": rng.choice([2, 3, 4, 6, 8]),
        "price_factor": rng.choice([0.9, 1.0, 1.1, 1.2]),
    }


def period_end(start: str, cycle: str) -> str:
    """The end of a period starting on `start` (the tools' rule: a calendar month, the day capped at 28)."""
    d = dt.date.fromisoformat(start)
    if cycle == "annual":
        return d.replace(year=d.year + 1).isoformat()
    return d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1, day=min(d.day, 28)).isoformat()


def _days(a: str, b: str) -> int:
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


def plans(v: Variant, r: dict) -> list[tuple]:
    out = []
    for cycle in ("monthly", "annual"):
        for t, (tier, units, base) in enumerate(v.vocab["tiers"], start=1):
            monthly = (
                round(int(base * r["price_factor"]) + 0.99, 2)
                if base % 1
                else round(base * r["price_factor"])
            )
            price = (
                monthly if cycle == "monthly" else round(monthly * 12 * (100 - r["annual_discount"]) / 100, 2)
            )
            feature = int(t >= v.vocab["feature_from"])
            out.append((f"PL{len(out) + 1}", f"{tier} {cycle.title()}", t, cycle, price, units, feature))
    return out


def data(v: Variant) -> dict:
    r, rng = rules(v), v.rng("data")
    today = r["today"]
    who = people(v, N_CUSTOMERS)
    kin = people(v, 3 * N_CUSTOMERS, "members")
    pl = plans(v, r)
    customers, subs, invoices, pauses = [], [], [], []
    for i, p in enumerate(who):
        cid = f"C{301 + i}"
        customers.append((cid, p["name"], p["email"]))
        members = [p["name"].split()[0]] + [k["name"].split()[0] for k in kin[3 * i : 3 * i + 2]]
        members = list(dict.fromkeys(members))
        for m in members[: rng.choice([2, 3, 3])]:
            cycle = "annual" if rng.random() < 0.4 else "monthly"
            tier = rng.randint(1, 4)
            plan = next(x for x in pl if x[2] == tier and x[3] == cycle)
            back = rng.randint(20, 330) if cycle == "annual" else rng.randint(2, 26)
            start = (dt.date.fromisoformat(today) - dt.timedelta(days=back)).isoformat()
            sid = f"S{501 + len(subs)}"
            roll = rng.random()
            status, nxt = "active", None
            if roll < 0.15:
                status = "cancelling"
            elif roll < 0.35 and tier > 1:
                nxt = next(x for x in pl if x[2] == tier - 1 and x[3] == cycle)[0]
            subs.append([sid, cid, plan[0], m, status, start, period_end(start, cycle), nxt])
            invoices.append(
                (f"I{701 + len(invoices)}", sid, start, f"{plan[1]}: period from {start}", plan[4], "charge")
            )
            if rng.random() < 0.35:  # a pause earlier this year: the year's one pause is used
                year = today[:4]
                back = rng.randint(10, max(11, _days(f"{year}-01-01", today) - 1))
                when = (dt.date.fromisoformat(today) - dt.timedelta(days=back)).isoformat()
                pauses.append(
                    (f"Z{901 + len(pauses)}", sid, max(when, f"{year}-01-02"), rng.randint(1, r["max_pause"]))
                )
            elif rng.random() < 0.3:  # one last year does not count
                pauses.append(
                    (f"Z{901 + len(pauses)}", sid, f"{int(today[:4]) - 1}-{rng.randint(3, 11):02d}-14", 2)
                )
    promos = _promos(v, r)
    return {
        "rules": r,
        "tables": {
            "customers": customers,
            "plans": pl,
            "subscriptions": [tuple(s) for s in subs],
            "invoices": invoices,
            "pauses": pauses,
            "promos": promos,
        },
    }


def _promos(v: Variant, r: dict) -> list[tuple]:
    rng = v.rng("promos")
    today = dt.date.fromisoformat(r["today"])
    later = (today + dt.timedelta(days=rng.randint(20, 90))).isoformat()
    gone = (today - dt.timedelta(days=rng.randint(3, 40))).isoformat()
    season = ["WINTER", "SPRING", "SUMMER", "AUTUMN"][today.month % 12 // 3]
    terms = [
        ("ANNUAL", [15, 20, 25], "annual", 1, later),
        ("UPGRADE", [10, 15], "any", 3, later),
        (season, [20, 30], "monthly", 1, later),
        ("WELCOME", [25, 40], "any", 1, gone),
        ("FLASH", [12, 18], "any", 2, later),
    ]
    out = []
    for word, percents, cycle, tier, expires in terms:
        pct = rng.choice(percents)
        out.append((f"{word}{pct}", pct, cycle, tier, expires))
    return out


def description(v: Variant, r: dict) -> str:
    vocab = v.vocab
    today = dt.date.fromisoformat(r["today"])
    fee = f" minus a ${money(r['cancel_fee'])} early-cancellation fee" if r["cancel_fee"] else ""
    return (
        f"You are the support agent of {vocab['service']}. Today is {today:%A %d %B %Y} ({r['today']}). Find "
        "the customer by email before acting; only act on that customer's own subscriptions.\n\n"
        "Policy (the tools do not apply it; you must):\n"
        f"- Plans come in four tiers, billed monthly or annually; annual plans cost {r['annual_discount']}% less "
        "than twelve months. A plan change keeps the subscription's billing cycle.\n"
        "- An upgrade (a higher tier) takes effect now and is charged the price difference prorated by the "
        "days left in the current period: (new price - old price) x days from today to the period end / days "
        "in the period, rounded to the cent. A downgrade takes effect at the next renewal, with no charge now.\n"
        "- Cancelling: a monthly subscription ends at the end of its period, with no refund. An annual "
        "subscription is cancelled now and refunded its price x days left / days in the period, rounded to "
        f"the cent,{fee} (nothing when that is not positive).\n"
        f"- Each subscription may be paused once per calendar year, for at most {r['max_pause']} weeks; a longer "
        "request gets the longest pause allowed; a subscription already paused this year cannot be paused again.\n"
        "- A promo code only applies to a new subscription, on a plan of its billing cycle (or any) and at least "
        "its minimum tier, before it expires; otherwise start the subscription without it.\n"
        "- At renewal a subscription is billed its scheduled next plan if one is set; a subscription being "
        "cancelled at period end does not renew.\n"
        "- Answer amounts in dollars with submit_answer."
    )


def prorated(r: dict, sub: tuple, old: tuple, new: tuple) -> float:
    left, span = _days(r["today"], sub[6]), _days(sub[5], sub[6])
    return round((new[4] - old[4]) * left / span, 2)


def refund(r: dict, sub: tuple, plan: tuple) -> float:
    left, span = _days(r["today"], sub[6]), _days(sub[5], sub[6])
    return max(0.0, round(round(plan[4] * left / span, 2) - r["cancel_fee"], 2))


def household_options(pl: list[tuple], units: int, feature: bool, max_subs: int):
    """Every combination of plans (repeats allowed, at most `max_subs`) with enough units and the feature,
    cheapest first: (monthly cost, plans)."""
    out = []
    for k in range(1, max_subs + 1):
        for combo in itertools.combinations_with_replacement(pl, k):
            if sum(p[5] for p in combo) >= units and (not feature or any(p[6] for p in combo)):
                out.append((round(sum(p[4] / 12 if p[3] == "annual" else p[4] for p in combo), 4), combo))
    return sorted(out, key=lambda x: (x[0], [p[0] for p in x[1]]))


# -- tasks ---------------------------------------------------------------------------------------------------
GREET = [
    "Hi, I'm {{ name }} ({{ email }}). ",
    "{{ email }} here. ",
    "This is {{ name }}, my email is {{ email }}. ",
    "Hello, {{ name }} here ({{ email }}). ",
]
BARE = ["Hi, this is {{ name }}. ", "Hello, {{ name }} here. ", "Hi there, it's {{ name }}. "]
ASK = {
    "quote_upgrade": [
        "If I upgraded {{ whose }} subscription to the {{ tier }} plan today, what would I be charged now?",
        "How much would it cost me today to move {{ whose }} subscription up to {{ tier }}?",
        "What's the charge today if {{ whose }} plan goes up to {{ tier }}?",
    ],
    "renewal_total": [
        "How much will all my subscriptions cost at their next renewals, added together?",
        "What's the total I'll be billed when each of my subscriptions next renews?",
        "Can you add up what my subscriptions will charge at their next renewal dates?",
    ],
    "family_change": [
        "Please move {{ w1 }} subscription to the {{ t1 }} plan and {{ w2 }} subscription to the {{ t2 }} plan.",
        "We'd like to change two plans: {{ w1 }} subscription should be on {{ t1 }} and {{ w2 }} on {{ t2 }}.",
        "Can you switch {{ w1 }} plan over to {{ t1 }}, and {{ w2 }} plan to {{ t2 }}?",
    ],
    "cancel_pause": [
        "Please cancel {{ w1 }} subscription and pause {{ w2 }} subscription for {{ weeks }} weeks.",
        "We don't need {{ w1 }} subscription any more, so please cancel it; and put {{ w2 }} subscription on "
        "hold for {{ weeks }} weeks.",
        "Two things: cancel {{ w1 }} subscription, and pause {{ w2 }} one for the next {{ weeks }} weeks.",
    ],
    "household": [
        "I'm setting up {{ place }}: we need at least {{ units }} {{ unit_word }} in total, {{ feature }} on at least "
        "one plan, no more than {{ max_subs }} new subscriptions, and at most ${{ budget }} a month all together "
        "(an annual plan counts as a twelfth of its price). Please start the subscriptions.",
        "Please start new subscriptions for {{ place }}: {{ units }} {{ unit_word }} or more overall, at least one "
        "plan with {{ feature }}, {{ max_subs }} subscriptions at most, and a monthly cost of ${{ budget }} or less "
        "(annual plans count at a twelfth of their price).",
        "Could you sign {{ place }} up? Requirements: no fewer than {{ units }} {{ unit_word }}, {{ feature }} on "
        "one of the plans or more, up to {{ max_subs }} subscriptions, and no more than ${{ budget }} per month "
        "(count annual plans at a twelfth of the price).",
    ],
    "promo_user": [
        "I'd like to start a new subscription.",
        "Can you set up another subscription for us?",
        "I want to add a new subscription to my account.",
    ],
    "switch_user": [
        "I'd like to change one of our plans.",
        "Could you switch one of our subscriptions to a different plan?",
        "I need a plan change on one of our subscriptions.",
    ],
}
KINDS = list(ASK)


class _Env:
    def __init__(self, v: Variant, d: dict):
        self.v, self.r, self.t = v, d["rules"], d["tables"]
        self.plans = {p[0]: p for p in self.t["plans"]}
        self.customers = self.t["customers"]

    def subs(self, cid: str, status: tuple = ("active",), free: bool = True) -> list[tuple]:
        return [
            s for s in self.t["subscriptions"] if s[1] == cid and s[4] in status and (not free or not s[7])
        ]

    def plan(self, tier: int, cycle: str) -> tuple:
        return next(p for p in self.t["plans"] if p[2] == tier and p[3] == cycle)

    def tier(self, t: int) -> str:
        return self.v.vocab["tiers"][t - 1][0]

    def paused_this_year(self, sid: str) -> bool:
        return any(z[1] == sid and z[2][:4] == self.r["today"][:4] for z in self.t["pauses"])


def _whose(c: tuple, sub: tuple) -> str:
    """ "my" for the customer's own subscription, "Lara's" for a household member's."""
    return "my" if sub[3] == c[1].split()[0] else f"{sub[3]}'s"


def _opening(rng, c: tuple, ask: str, slots: dict, user: bool) -> tuple[int, str, str]:
    person = {"name": c[1], "email": c[2]}
    i, head = phrase(rng, BARE if user else GREET, **person)
    j, body = phrase(rng, ASK[ask], **slots)
    _, bare = phrase(rng, BARE, **person)
    return 10 * j + i, head + body, bare + body


def _mk(kind: str, opening: tuple, c: tuple, **kw) -> Candidate:
    ph, text, bare = opening
    out = candidate(NAME, kind, ph, prompt=text, **kw)
    out.extra.update(bare=None if kw.get("user_instructions") else bare, who=f"You are {c[1]} ({c[2]}). ")
    return out


def _look(c: tuple) -> list:
    return [
        call("find_customer", email=c[2]),
        call("list_subscriptions", customer_id=c[0]),
        call("list_plans"),
    ]


def task_quote_upgrade(rng, e: _Env, c: tuple) -> Candidate | None:
    subs = [s for s in e.subs(c[0]) if e.plans[s[2]][2] < 4]
    if not subs:
        return None
    s = rng.choice(subs)
    old = e.plans[s[2]]
    new = e.plan(rng.randint(old[2] + 1, 4), old[3])
    value = prorated(e.r, s, old, new)
    op = _opening(rng, c, "quote_upgrade", {"whose": _whose(c, s), "tier": e.tier(new[2])}, False)
    return _mk(
        "quote_upgrade",
        op,
        c,
        level=3,
        verifier="check_answer",
        params={"expected": money(value)},
        solution=[*_look(c), call("submit_answer", answer=money(value))],
        guess=money(new[4] - old[4]),
        constraints=2,
    )


def task_renewal_total(rng, e: _Env, c: tuple) -> Candidate | None:
    subs = [s for s in e.t["subscriptions"] if s[1] == c[0]]
    value = round(sum(e.plans[s[7] or s[2]][4] for s in subs if s[4] != "cancelling"), 2)
    naive = round(sum(e.plans[s[2]][4] for s in subs), 2)
    if abs(value - naive) < 0.01:
        return None
    op = _opening(rng, c, "renewal_total", {}, False)
    return _mk(
        "renewal_total",
        op,
        c,
        level=3,
        verifier="check_answer",
        params={"expected": money(value)},
        solution=[*_look(c), call("submit_answer", answer=money(value))],
        guess=money(naive),
        constraints=2,
        distractors=len(subs) - 1,
    )


def task_family_change(rng, e: _Env, c: tuple) -> Candidate | None:
    subs = e.subs(c[0])
    ups = [s for s in subs if e.plans[s[2]][2] < 4]
    downs = [s for s in subs if e.plans[s[2]][2] > 1]
    pairs = [(a, b) for a in ups for b in downs if a[0] != b[0]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    pa, pb = e.plans[a[2]], e.plans[b[2]]
    na, nb = e.plan(rng.randint(pa[2] + 1, 4), pa[3]), e.plan(rng.randint(1, pb[2] - 1), pb[3])
    moves = [(a, e.tier(na[2])), (b, e.tier(nb[2]))]
    if rng.random() < 0.5:
        moves.reverse()
    slots = {"w1": _whose(c, moves[0][0]), "t1": moves[0][1], "w2": _whose(c, moves[1][0]), "t2": moves[1][1]}
    op = _opening(rng, c, "family_change", slots, False)
    sol = [
        *_look(c),
        call("change_plan", subscription_id=a[0], plan_id=na[0], when="now", charge=prorated(e.r, a, pa, na)),
        call("change_plan", subscription_id=b[0], plan_id=nb[0], when="renewal"),
    ]
    return _mk(
        "family_change",
        op,
        c,
        level=4,
        verifier="check_state",
        params={},
        solution=sol,
        answer="Both plans are changed.",
        constraints=3,
    )


def task_cancel_pause(rng, e: _Env, c: tuple) -> Candidate | None:
    subs = e.subs(c[0])
    if len(subs) < 2:
        return None
    a, b = rng.sample(subs, 2)
    pa = e.plans[a[2]]
    refused = e.paused_this_year(b[0])
    weeks = e.r["max_pause"] + rng.randint(1, 4) if not refused else rng.randint(1, e.r["max_pause"])
    op = _opening(rng, c, "cancel_pause", {"w1": _whose(c, a), "w2": _whose(c, b), "weeks": weeks}, False)
    sol = [*_look(c), call("list_pauses", subscription_id=b[0])]
    if pa[3] == "annual":
        sol.append(call("cancel_subscription", subscription_id=a[0], when="now", refund=refund(e.r, a, pa)))
    else:
        sol.append(call("cancel_subscription", subscription_id=a[0], when="period_end"))
    if not refused:
        sol.append(call("pause_subscription", subscription_id=b[0], weeks=e.r["max_pause"]))
    return _mk(
        "cancel_pause",
        op,
        c,
        level=4,
        verifier="check_state",
        params={},
        solution=sol,
        answer="Done, within the policy.",
        constraints=3,
        distractors=1 if refused else 0,
    )


def task_household(rng, e: _Env, c: tuple) -> Candidate | None:
    vocab, pl = e.v.vocab, e.t["plans"]
    top = max(p[5] for p in pl)
    units = rng.randint(top + 1, 2 * top)
    max_subs = rng.choice([2, 3])
    opts = household_options(pl, units, True, max_subs)
    costs = sorted({o[0] for o in opts})
    if len(costs) < 4:
        return None
    budget = float(int(costs[rng.randint(1, min(3, len(costs) - 2))]) + 1)
    valid = [o for o in opts if o[0] <= budget]
    if len(valid) < 2 or len(valid) == len(opts):
        return None
    slots = {
        "place": vocab["place"],
        "units": units,
        "unit_word": vocab["units"],
        "feature": vocab["feature"],
        "max_subs": max_subs,
        "budget": money(budget).replace(".00", ""),
    }
    op = _opening(rng, c, "household", slots, False)
    sol = [*_look(c)[:1], call("list_plans")]
    sol += [call("subscribe", customer_id=c[0], plan_id=p[0]) for p in valid[0][1]]
    seed = {
        "subscriptions": {s[0]: [s[2], s[4], s[7]] for s in e.t["subscriptions"]},
        "pauses": len(e.t["pauses"]),
    }
    params = {
        "customer_id": c[0],
        "units": units,
        "feature": True,
        "budget": budget,
        "max_subs": max_subs,
        "seed": seed,
    }
    return _mk(
        "household",
        op,
        c,
        level=5,
        verifier="check_household",
        params=params,
        solution=sol,
        answer="The subscriptions are started.",
        constraints=4,
        distractors=len(opts) - len(valid),
    )


def promo_valid(r: dict, promo: tuple, plan: tuple) -> bool:
    return promo[2] in ("any", plan[3]) and plan[2] >= promo[3] and r["today"] <= promo[4]


def task_promo_user(rng, e: _Env, c: tuple) -> Candidate | None:
    plan = rng.choice(e.t["plans"])
    promo = rng.choice(e.t["promos"])
    ok = promo_valid(e.r, promo, plan)
    op = _opening(rng, c, "promo_user", {}, True)
    args = {"customer_id": c[0], "plan_id": plan[0]}
    if ok:
        args["promo_code"] = promo[0]
    billed = "monthly" if plan[3] == "monthly" else "annually"
    user = (
        f"You are {c[1]} ({c[2]}). You want a new {e.tier(plan[2])} subscription billed {billed}. You have "
        f"the promo code {promo[0]}; if it cannot be used on that plan, go ahead without it."
    )
    sol = [
        call("find_customer", email=c[2]),
        call("list_plans"),
        call("get_promo", code=promo[0]),
        call("subscribe", **args),
    ]
    return _mk(
        "promo_user",
        op,
        c,
        level=4 if not ok else 3,
        verifier="check_state",
        params={},
        solution=sol,
        answer="The subscription is started.",
        user_instructions=user,
        constraints=3,
        user_facts=3,
    )


def task_switch_user(rng, e: _Env, c: tuple) -> Candidate | None:
    subs = e.subs(c[0])
    if not subs:
        return None
    s = rng.choice(subs)
    old = e.plans[s[2]]
    tier = rng.choice([t for t in range(1, 5) if t != old[2]])
    new = e.plan(tier, old[3])
    if tier > old[2]:
        change = call(
            "change_plan", subscription_id=s[0], plan_id=new[0], when="now", charge=prorated(e.r, s, old, new)
        )
    else:
        change = call("change_plan", subscription_id=s[0], plan_id=new[0], when="renewal")
    op = _opening(rng, c, "switch_user", {}, True)
    user = (
        f"You are {c[1]} ({c[2]}). You want {s[3]}'s subscription moved to the {e.tier(tier)} plan, keeping "
        "its billing cycle."
    )
    return _mk(
        "switch_user",
        op,
        c,
        level=4,
        verifier="check_state",
        params={},
        solution=[*_look(c), change],
        answer="The plan is changed.",
        user_instructions=user,
        constraints=2,
        user_facts=3,
    )


MAKERS = {
    "quote_upgrade": task_quote_upgrade,
    "renewal_total": task_renewal_total,
    "family_change": task_family_change,
    "cancel_pause": task_cancel_pause,
    "household": task_household,
    "promo_user": task_promo_user,
    "switch_user": task_switch_user,
}


def make_tasks(v: Variant, d: dict, n: int) -> list[Candidate]:
    """Candidates of every kind, interleaved kind by kind so any `n` keeps the mix."""
    e = _Env(v, d)
    rng = v.rng("tasks")
    pools = {k: [(k, c) for c in e.customers] for k in KINDS}
    for k in KINDS:
        rng.shuffle(pools[k])
    out: list[Candidate] = []
    seen: set[str] = set()
    while len(out) < n and any(pools.values()):
        for k in KINDS:
            while pools[k] and len(out) < n:
                kind, cust = pools[k].pop()
                c = MAKERS[kind](rng, e, cust)
                if c is not None and c.prompt[0].lower() not in seen:
                    seen.add(c.prompt[0].lower())
                    out.append(c)
                    break
    return out


class Subscriptions(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        d = data(v)
        ctx = {
            "service": v.vocab["service"],
            "today": d["rules"]["today"],
            "units": v.vocab["units"],
            "units_col": v.vocab["units_col"],
            "feature": v.vocab["feature"],
            "feature_col": v.vocab["feature_col"],
        }
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, d["tables"])
        return description(v, d["rules"])

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list[Candidate]:
        return make_tasks(v, data(v), n)

    def harden(self, env_dir: Path, v: Variant, c: Candidate, reason: str) -> Candidate | None:
        """The same task with the customer's email held by the user instead of written in the prompt."""
        bare, who = c.extra.get("bare"), c.extra.get("who")
        if not bare or c.user_instructions:
            return None
        feats = dict(c.extra["features"], user_facts=c.extra["features"]["user_facts"] + 1)
        user = who + "If asked for your email, it is the one above."
        return replace(
            c, prompt=[bare], user_instructions=user, extra={**c.extra, "features": feats, "bare": None}
        )


SHAPE = Subscriptions()

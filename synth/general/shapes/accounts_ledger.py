"""Accounts and a ledger: customers with checking, savings and credit accounts whose balances are derived from
their transactions, payees, and disputes. The policy (overdraft floors, a daily cap on money out, a verification
code above a threshold, fees on savings withdrawals and cash advances, a dispute window) is the agent's to apply.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ...family import Candidate
from ..base import Shape, Variant, call, candidate, money, people, phrase, render, write_db

NAME = "accounts_ledger"
N_CUSTOMERS = 18
N_OVERDRAWN = 7
"""The first customers have overdrawn accounts (the planning tasks); the rest are in good standing."""

SCHEMA = """
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT, code TEXT);
CREATE TABLE accounts (id TEXT PRIMARY KEY, customer_id TEXT, type TEXT, name TEXT, credit_limit REAL);
CREATE TABLE payees (id TEXT PRIMARY KEY, customer_id TEXT, name TEXT, category TEXT);
CREATE TABLE transactions (id TEXT PRIMARY KEY, account_id TEXT, posted TEXT, description TEXT, amount REAL,
    status TEXT, kind TEXT, verified INTEGER);
CREATE TABLE disputes (id TEXT PRIMARY KEY, transaction_id TEXT, opened TEXT, reason TEXT);
"""

VOCABS = [
    {
        "name": "retail_bank",
        "bank": "Northgate Bank",
        "who": "customer",
        "accounts": {
            "checking": ("Everyday Checking", "checking account"),
            "checking2": ("Household Checking", "household checking account"),
            "savings": ("High-Yield Savings", "savings account"),
            "credit": ("Rewards Visa", "credit card"),
        },
        "merchants": [
            "Harvest Market",
            "Corner Pharmacy",
            "Blue Fern Cafe",
            "Summit Outdoor Supply",
            "Maple Street Books",
            "QuickFuel Station",
            "Lumen Electronics",
            "Tidewater Grill",
            "Parkside Hardware",
            "Golden Wok",
            "Northside Cinema",
            "Petal & Stem Florist",
        ],
        "payees": {
            "electricity": ["City Power & Light", "Northern Grid Energy"],
            "water": ["Metro Water Authority", "Clearbrook Water Co."],
            "internet": ["Brightline Internet", "FiberWave Broadband"],
            "insurance": ["Harbor Mutual Insurance", "Lakeside Auto Insurance"],
            "rent": ["Oakwood Property Management", "Elm Court Apartments"],
            "phone": ["Cascade Mobile", "Vertex Wireless"],
        },
        "income": "Payroll deposit",
    },
    {
        "name": "credit_union",
        "bank": "Riverbend Federal Credit Union",
        "who": "member",
        "accounts": {
            "checking": ("Share Draft", "share draft account"),
            "checking2": ("Joint Share Draft", "joint share draft account"),
            "savings": ("Share Savings", "share savings account"),
            "credit": ("Member Visa", "member Visa card"),
        },
        "merchants": [
            "Valley Fresh Grocers",
            "Riverside Feed & Seed",
            "Millstone Bakery",
            "Trailhead Sports",
            "Cedar Creek Pharmacy",
            "Union Street Diner",
            "Redline Auto Parts",
            "Prairie Books",
            "Hilltop Gas & Go",
            "Willow Vet Clinic",
            "Sunset Bowling Lanes",
            "County Hardware",
        ],
        "payees": {
            "electricity": ["Riverbend Electric Co-op", "Prairie Power"],
            "water": ["Riverbend Water District", "Hill County Water"],
            "internet": ["Valley Net", "Ridgeline Fiber"],
            "insurance": ["Farmstead Insurance", "Keystone Mutual"],
            "rent": ["Millpond Rentals", "Cottonwood Homes"],
            "phone": ["Plains Cellular", "Junction Telecom"],
        },
        "income": "Direct deposit",
    },
    {
        "name": "prepaid_card",
        "bank": "Flexa Prepaid",
        "who": "cardholder",
        "accounts": {
            "checking": ("Spending Wallet", "spending wallet"),
            "checking2": ("Bills Wallet", "bills wallet"),
            "savings": ("Savings Pot", "savings pot"),
            "credit": ("Credit Builder Line", "credit builder line"),
        },
        "merchants": [
            "FreshCart Express",
            "Urban Noodle Bar",
            "Pixel Game Store",
            "Metro Transit Kiosk",
            "Daily Grind Coffee",
            "StyleHouse Apparel",
            "GreenLeaf Pharmacy",
            "Snap Print Shop",
            "Cityline Rideshare",
            "Bolt Phone Repair",
            "Crumbs Bakery",
            "Night Owl Convenience",
        ],
        "payees": {
            "electricity": ["Sparkline Energy", "Volt City Power"],
            "water": ["Aqua Metro", "Riverside Utilities"],
            "internet": ["Zoom Fiber", "Nimbus Broadband"],
            "insurance": ["Shieldwise Renters Insurance", "Guardian Lane Insurance"],
            "rent": ["Brickyard Lofts", "Sunrise Studios Leasing"],
            "phone": ["Pulse Mobile", "Orbit Wireless"],
        },
        "income": "Card load",
    },
    {
        "name": "business_bank",
        "bank": "Keystone Commerce Bank",
        "who": "business client",
        "accounts": {
            "checking": ("Operating Account", "operating account"),
            "checking2": ("Payroll Account", "payroll account"),
            "savings": ("Tax Reserve", "tax reserve account"),
            "credit": ("Business Card", "business card"),
        },
        "merchants": [
            "Office Depot Plus",
            "Staples & Co. Supply",
            "CloudHost Services",
            "Metro Courier",
            "Prime Packaging",
            "Ace Print Works",
            "Delta Freight",
            "Corner Office Cafe",
            "TechMart Wholesale",
            "Brightway Signs",
            "Swift Janitorial",
            "Copperline Catering",
        ],
        "payees": {
            "electricity": ["Commerce Power & Gas", "Eastside Electric"],
            "water": ["Municipal Water Board", "Harbor Water Services"],
            "internet": ["BizLink Fiber", "Trunkline Networks"],
            "insurance": ["Liberty Commercial Insurance", "Anchor Business Mutual"],
            "rent": ["Gateway Office Park", "Riverside Commercial Leasing"],
            "phone": ["Corporate Connect Wireless", "Signal Business Phone"],
        },
        "income": "Client payment received",
    },
]


# -- the variant: rules and data -----------------------------------------------------------------------------
def rules(v: Variant) -> dict:
    rng = v.rng("rules")
    today = dt.date(2025, rng.randint(2, 11), rng.randint(1, 28))
    return {
        "today": today.isoformat(),
        "overdraft": rng.choice([100, 150, 200, 250, 300]),
        "cap": rng.choice([2000, 2500, 3000, 4000]),
        "threshold": rng.choice([500, 600, 750, 1000]),
        "savings_fee": rng.choice([2.5, 3.0, 4.0, 5.0]),
        "advance_pct": rng.choice([3, 4, 5]),
        "advance_min": rng.choice([5, 10]),
        "window": rng.choice([30, 45, 60, 90]),
    }


def _day(r: dict, back: int) -> str:
    return (dt.date.fromisoformat(r["today"]) - dt.timedelta(days=back)).isoformat()


def _cents(rng, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 2)


class _Ledger:
    """Seed rows under construction; every account's posted balance is set by its opening entry."""

    def __init__(self, v: Variant, r: dict):
        self.v, self.r, self.rows, self.n = v, r, [], 1000

    def add(
        self, account: str, back: int, description: str, amount: float, kind: str, status: str = "posted"
    ):
        self.n += 1
        self.rows.append(
            [f"T{self.n}", account, _day(self.r, back), description, round(amount, 2), status, kind, 0]
        )
        return self.rows[-1]

    def close(self, account: str, target: float, kind: str, rng) -> None:
        """Add an opening entry (a deposit, or a card payment on a credit account) that brings the posted
        balance of `account` to `target`."""
        have = sum(x[4] for x in self.rows if x[1] == account and x[5] == "posted")
        opening = round(target - have, 2)
        while opening < 25:  # a ledger never opens with a withdrawal: spend is added until it would not
            self.add(
                account,
                rng.randint(60, 118),
                self.v.vocab["merchants"][rng.randrange(12)],
                -_cents(rng, 40, 200),
                "card",
            )
            have = sum(x[4] for x in self.rows if x[1] == account and x[5] == "posted")
            opening = round(target - have, 2)
        label = "Payment - thank you" if kind == "credit" else "Opening deposit"
        self.n += 1
        self.rows.insert(
            0,
            [
                f"T{self.n}",
                account,
                _day(self.r, 119),
                label,
                opening,
                "posted",
                "payment" if kind == "credit" else "deposit",
                0,
            ],
        )


def data(v: Variant) -> dict:
    """Every table's rows, and per customer the facts the task makers plan from."""
    r, rng, vocab = rules(v), v.rng("data"), v.vocab
    who = people(v, N_CUSTOMERS)
    led = _Ledger(v, r)
    customers, accounts, payees, facts = [], [], [], []
    merchants = vocab["merchants"]
    for i, p in enumerate(who):
        cid, overdrawn = f"C{101 + i}", i < N_OVERDRAWN
        customers.append((cid, p["name"], p["email"], p["phone"], f"{rng.randint(1000, 9999)}"))
        kinds = ["checking", "savings"]
        if overdrawn and rng.random() < 0.6:
            kinds.insert(1, "checking2")
        if overdrawn or rng.random() < 0.6:
            kinds.append("credit")
        accs = {}
        for k in kinds:
            aid = f"A{2001 + len(accounts)}"
            limit = rng.choice([1500, 2000, 3000, 5000]) if k == "credit" else None
            accounts.append((aid, cid, "checking" if k == "checking2" else k, vocab["accounts"][k][0], limit))
            accs[k] = {"id": aid, "limit": limit}
        cats = rng.sample(sorted(vocab["payees"]), 4)
        mine = [(c, vocab["payees"][c][0 if rng.random() < 0.5 else 1]) for c in cats[1:]]
        mine += [
            (cats[0], n) for n in vocab["payees"][cats[0]]
        ]  # two payees of one kind: "which one" is asked
        mine.sort(key=lambda x: (x[0], rng.random()))
        for c, n in mine:
            payees.append((f"P{301 + len(payees)}", cid, n, c))
        f = {
            "id": cid,
            "person": p,
            "accounts": accs,
            "overdrawn": overdrawn,
            "pairs": [],
            "late": [],
            "twin_category": cats[0],
            "out_today": 0.0,
        }
        # everyday spending and income
        for k, a in accs.items():
            for _ in range(rng.randint(3, 5)):
                led.add(
                    a["id"], rng.randint(2, 110), merchants[rng.randrange(12)], -_cents(rng, 8, 160), "card"
                )
            if k in ("checking", "checking2"):
                for back in (rng.randint(20, 40), rng.randint(50, 80)):
                    led.add(a["id"], back, vocab["income"], _cents(rng, 600, 1800), "deposit")
        if not overdrawn:
            target = accs["credit"] if "credit" in accs and rng.random() < 0.5 else accs["checking"]
            if i < N_OVERDRAWN + 9:
                _duplicates(led, rng, r, target["id"], merchants, f)
            for k in ("checking", "credit"):
                if k in accs and rng.random() < 0.8:
                    for _ in range(rng.randint(1, 2)):
                        led.add(
                            accs[k]["id"],
                            rng.randint(0, 2),
                            merchants[rng.randrange(12)],
                            -_cents(rng, 15, 220),
                            "card",
                            "pending",
                        )
            if rng.random() < 0.6:
                out = float(rng.choice([150, 200, 250, 300, 400, 500]))
                led.add(
                    accs["checking"]["id"],
                    0,
                    f"Transfer to {vocab['accounts']['savings'][0]}",
                    -out,
                    "transfer",
                )
                led.add(
                    accs["savings"]["id"],
                    0,
                    f"Transfer from {vocab['accounts']['checking'][0]}",
                    out,
                    "transfer_in",
                )
                f["out_today"] = out
        targets = {
            "checking": -_cents(rng, 40, r["overdraft"] - 10) if overdrawn else _cents(rng, 250, 1300),
            "checking2": -_cents(rng, 20, 90),
            "savings": _cents(rng, 120, 700) if overdrawn else _cents(rng, 1500, 6000),
        }
        for k, a in accs.items():
            if k == "credit":
                led.close(a["id"], -_cents(rng, 150, a["limit"] * 0.6), "credit", rng)
            else:
                led.close(a["id"], targets[k], k, rng)
        facts.append(f)
    rows = sorted(led.rows, key=lambda x: int(x[0][1:]))
    return {
        "rules": r,
        "tables": {
            "customers": customers,
            "accounts": accounts,
            "payees": payees,
            "transactions": [tuple(x) for x in rows],
            "disputes": [],
        },
        "facts": facts,
    }


def _duplicates(led: _Ledger, rng, r: dict, account: str, merchants: list[str], f: dict) -> None:
    """Charges posted twice (one to three pairs inside the dispute window, one or two past it) and a monthly
    charge of one amount (not a duplicate: other days)."""
    names = rng.sample(merchants, 6)
    for j in range(rng.choice([1, 2, 2, 3])):
        back, amount = rng.randint(2, r["window"] - 2), -_cents(rng, 12, 180)
        pair = [
            led.add(account, back, names[j], amount, "card")[0],
            led.add(account, back, names[j], amount, "card")[0],
        ]
        f["pairs"].append(pair)
    for j in range(rng.choice([1, 2])):
        back, amount = rng.randint(r["window"] + 3, 115), -_cents(rng, 12, 180)
        f["late"].append(
            [
                led.add(account, back, names[3 + j], amount, "card")[0],
                led.add(account, back, names[3 + j], amount, "card")[0],
            ]
        )
    amount = -_cents(rng, 9, 40)
    for back in (rng.randint(1, 12), rng.randint(32, 42)):
        led.add(account, back, names[5] + " (monthly)", amount, "card")
    f["dupe_account"] = account


def description(v: Variant, r: dict) -> str:
    a = v.vocab["accounts"]
    today = dt.date.fromisoformat(r["today"])
    return (
        f"You are the support agent of {v.vocab['bank']}. Today is {today:%A %d %B %Y} ({r['today']}). "
        f"Find a {v.vocab['who']} by email before acting on their accounts; only act on that {v.vocab['who']}'s "
        "own accounts.\n\nPolicy (the tools do not enforce it; you must):\n"
        "- Balances come from the ledger: the posted balance is the sum of posted entries; pending holds are "
        "not posted yet but already reduce what can be spent.\n"
        f"- Available balance: a checking-type account ({a['checking'][0]}, {a['checking2'][0]}) may be "
        f"overdrawn down to -${money(r['overdraft'])}, so its available balance is posted balance + pending "
        f"holds + ${money(r['overdraft'])}. A savings account ({a['savings'][0]}) may never go below zero: "
        f"posted + pending. A credit account ({a['credit'][0]}) may be used up to its credit limit: limit + "
        "posted balance + pending.\n"
        "- No transfer or payment may take an account below that floor, fees included.\n"
        f"- Money out (transfers, including between one's own accounts, and bill payments) is capped at "
        f"${money(r['cap'])} per {v.vocab['who']} per day, counting what was already sent today.\n"
        f"- A single transfer or payment above ${money(r['threshold'])} needs the account holder's verification "
        "code; ask them for it (it is never in our records you can see) and pass it with the transfer.\n"
        f"- Fees (posted automatically): ${money(r['savings_fee'])} on every transfer or payment out of a savings "
        f"account; a cash advance (money out of a credit account) costs {r['advance_pct']}% of the amount, at "
        f"least ${money(r['advance_min'])}.\n"
        f"- A card charge may be disputed only within {r['window']} days of its posting date; a charge posted "
        "twice (same merchant, amount and day) is a duplicate, and one copy of it is disputed.\n"
        "- Answer amounts in dollars; give numeric answers with submit_answer."
    )


# -- planning helpers (also used by the tests) ---------------------------------------------------------------
def balances(tables: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in tables["transactions"]:
        tid, acc, _, _, amount, status = t[:6]
        if status == "posted":
            out[acc] = round(out.get(acc, 0.0) + amount, 2)
    return out


def pending(tables: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in tables["transactions"]:
        if t[5] == "pending":
            out[t[1]] = round(out.get(t[1], 0.0) + t[4], 2)
    return out


def fee(r: dict, kind: str, amount: float) -> float:
    if kind == "savings":
        return r["savings_fee"]
    if kind == "credit":
        return max(r["advance_min"], round(amount * r["advance_pct"] / 100, 2))
    return 0.0


def available(r: dict, kind: str, posted: float, held: float, limit: float | None) -> float:
    floor = {"checking": r["overdraft"], "checking2": r["overdraft"], "savings": 0.0, "credit": limit or 0.0}[
        kind
    ]
    return round(posted + held + floor, 2)


def max_out(r: dict, kind: str, avail: float) -> float:
    """The most that can leave an account whose available balance is `avail`, its fee included (cents)."""
    if kind == "savings":
        return round(avail - r["savings_fee"], 2)
    if kind == "credit":
        by_pct = int(avail / (1 + r["advance_pct"] / 100) * 100) / 100
        return round(by_pct if fee(r, "credit", by_pct) + by_pct <= avail else avail - r["advance_min"], 2)
    return avail


def cover_plan(r: dict, f: dict, bal: dict, cap_left: float) -> list[tuple[str, str, float]] | None:
    """A plan with the fewest transfers that lifts every overdrawn deposit account to zero: (from kind, to
    kind, amount), sources tried savings first, then the credit line. None when no plan exists."""
    deficits = [(k, -bal[a["id"]]) for k, a in f["accounts"].items() if k != "credit" and bal[a["id"]] < 0]
    room = {
        k: bal[a["id"]] + (a["limit"] or 0) for k, a in f["accounts"].items() if k in ("savings", "credit")
    }
    plan, out = [], 0.0
    for k, need in deficits:
        src = next(
            (s for s in ("savings", "credit") if s in room and room[s] >= need + fee(r, s, need)), None
        )
        if src is None:
            return None
        room[src] -= need + fee(r, src, need)
        plan.append((src, k, round(need, 2)))
        out += need
    return plan if plan and out <= cap_left + 1e-9 else None


# -- tasks ---------------------------------------------------------------------------------------------------
GREET = [
    "Hi, I'm {{ name }} ({{ email }}). ",
    "{{ email }} here. ",
    "This is {{ name }}, my email is {{ email }}. ",
    "Hello, {{ name }} here ({{ email }}). ",
]
"""Openings that identify the customer; harden() swaps one for a name-only opening and moves the email to the
user."""
BARE = ["Hi, this is {{ name }}. ", "Hello, {{ name }} here. ", "Hi there, it's {{ name }}. "]

ASK = {
    "available": [
        "What is the available balance on my {{ label }} right now?",
        "How much can I spend from my {{ label }} at the moment?",
        "Could you tell me how much is available on my {{ label }} today?",
        "What's the available balance of my {{ label }}, taking everything into account?",
    ],
    "max_move": [
        "What's the most I can move from my {{ src }} to my {{ dst }} today?",
        "How much could I transfer from my {{ src }} into my {{ dst }} today, at most?",
        "I'd like to know the largest transfer I can make today from my {{ src }} to my {{ dst }}.",
    ],
    "pay_two": [
        "Please pay {{ p1 }} ${{ a1 }} and {{ p2 }} ${{ a2 }} from my {{ chk }}. If my {{ chk }} can't cover one "
        "of them, pay that one from my {{ sav }} instead.",
        "I need two bills paid today: ${{ a1 }} to {{ p1 }} and ${{ a2 }} to {{ p2 }}. Take them from my {{ chk }}, "
        "and whatever it can't cover from my {{ sav }}.",
        "Can you pay my bills? {{ p1 }} is ${{ a1 }} and {{ p2 }} is ${{ a2 }}. Use my {{ chk }} where it can "
        "cover the bill, otherwise my {{ sav }}.",
    ],
    "dispute": [
        "Some card charges on my {{ label }} went through twice. Please dispute every double charge you still can.",
        "I've been charged twice for several purchases on my {{ label }}. Can you open disputes for the duplicates?",
        "I keep seeing the same charge twice on my {{ label }}. Please dispute the duplicated ones for me.",
    ],
    "cover": [
        "I'm overdrawn. Please move money between my own accounts so that every account except my {{ credit }} "
        "ends at zero or above, with as few transfers as possible.",
        "My accounts are in the red. Move money between them so that all of them but the {{ credit }} are back "
        "to zero or more, using the fewest transfers you can.",
        "Could you sort out my overdrawn balances? Only transfers between my own accounts, as few as possible, "
        "and every account other than my {{ credit }} has to end non-negative.",
    ],
    "move_user": [
        "I'd like to move some money between my accounts today.",
        "Can you help me with a transfer between my accounts?",
        "I need to shift some money from one of my accounts to another.",
    ],
    "pay_user": [
        "I need to pay my {{ category }} bill.",
        "Could you pay my {{ category }} bill for me today?",
        "I'd like to settle my {{ category }} bill, please.",
    ],
}
KINDS = list(ASK)


class _Env:
    """What the task makers read of a variant's data: rules, balances and each customer's situation."""

    def __init__(self, v: Variant, d: dict):
        self.v, self.r, self.t, self.facts = v, d["rules"], d["tables"], d["facts"]
        self.bal, self.held = balances(self.t), pending(self.t)
        self.code = {c[0]: c[4] for c in self.t["customers"]}
        self.rows = len(self.t["transactions"])

    def label(self, kind: str) -> str:
        return self.v.vocab["accounts"][kind][1]

    def avail(self, f: dict, kind: str) -> float:
        a = f["accounts"][kind]
        return available(self.r, kind, self.bal[a["id"]], self.held.get(a["id"], 0.0), a["limit"])

    def cap_left(self, f: dict) -> float:
        return round(self.r["cap"] - f["out_today"], 2)

    def payees(self, f: dict) -> list[tuple]:
        return [p for p in self.t["payees"] if p[1] == f["id"]]

    def duplicates(self, account: str) -> tuple[list, list]:
        """(pairs inside the dispute window, pairs past it) of the card charges posted twice on `account`."""
        groups: dict = {}
        for t in self.t["transactions"]:
            if t[1] == account and t[6] == "card" and t[5] == "posted":
                groups.setdefault((t[2], t[3], t[4]), []).append(t[0])
        start = _day(self.r, self.r["window"])
        inside = [ids for (day, *_), ids in groups.items() if len(ids) == 2 and day >= start]
        late = [ids for (day, *_), ids in groups.items() if len(ids) == 2 and day < start]
        return inside, late


def _opening(rng, e: _Env, f: dict, ask: str, slots: dict, user: bool) -> tuple[int, str, str]:
    """The prompt: an opening that names the customer (with the email unless the user holds it) and the ask;
    and the same ask behind a name-only opening (what harden() asks instead)."""
    person = {"name": f["person"]["name"], "email": f["person"]["email"]}
    i, head = phrase(rng, BARE if user else GREET, **person)
    j, body = phrase(rng, ASK[ask], **slots)
    _, bare = phrase(rng, BARE, **person)
    return 10 * j + i, head + body, bare + body


def _who(f: dict) -> str:
    return f"You are {f['person']['name']} ({f['person']['email']}). "


def _mk(kind: str, opening: tuple[int, str, str], f: dict, **kw) -> Candidate:
    ph, text, bare = opening
    c = candidate(NAME, kind, ph, prompt=text, **kw)
    c.extra.update(bare=None if kw.get("user_instructions") else bare, who=_who(f))
    return c


def task_available(rng, e: _Env, f: dict, kind: str) -> Candidate | None:
    a = f["accounts"][kind]
    held = e.held.get(a["id"], 0.0)
    if kind == "savings" and not held:
        return None  # posted balance would be the answer: no rule in it
    value = e.avail(f, kind)
    op = _opening(rng, e, f, "available", {"label": e.label(kind)}, False)
    cid = f["id"]
    return _mk(
        "available",
        op,
        f,
        level=2,
        verifier="check_answer",
        params={"expected": money(value)},
        solution=[
            call("find_customer", email=f["person"]["email"]),
            call("list_accounts", customer_id=cid),
            call("list_transactions", account_id=a["id"], status="pending"),
            call("submit_answer", answer=money(value)),
        ],
        guess=money(e.bal[a["id"]]),
        constraints=2,
        distractors=0,
    )


def task_max_move(rng, e: _Env, f: dict, src: str, dst: str) -> Candidate | None:
    value = min(max_out(e.r, src, e.avail(f, src)), e.cap_left(f))
    s = f["accounts"][src]
    if value <= 0 or abs(value - e.bal[s["id"]]) < 0.01:
        return None
    op = _opening(rng, e, f, "max_move", {"src": e.label(src), "dst": e.label(dst)}, False)
    sol = [call("find_customer", email=f["person"]["email"]), call("list_accounts", customer_id=f["id"])]
    sol += [call("list_transactions", account_id=a["id"], since=e.r["today"]) for a in f["accounts"].values()]
    sol += [
        call("list_transactions", account_id=s["id"], status="pending"),
        call("submit_answer", answer=money(value)),
    ]
    return _mk(
        "max_move",
        op,
        f,
        level=3,
        verifier="check_answer",
        params={"expected": money(value)},
        solution=sol,
        guess=money(e.bal[s["id"]]),
        constraints=3,
    )


def task_pay_two(rng, e: _Env, f: dict) -> Candidate | None:
    r, chk, sav = e.r, f["accounts"]["checking"], f["accounts"]["savings"]
    avail_c, avail_s = e.avail(f, "checking"), e.avail(f, "savings")
    cats = {}
    for p in e.payees(f):
        cats.setdefault(p[3], p)
    (p1, p2) = rng.sample(sorted(cats.values()), 2)
    a1 = round(avail_c * rng.uniform(0.3, 0.7), 2)
    a2 = round(avail_c + rng.uniform(15, 260), 2)
    if a2 + r["savings_fee"] > avail_s or a1 + a2 > e.cap_left(f) or a1 < 10:
        return None
    code = e.code[f["id"]] if a2 > r["threshold"] else ""
    pairs = [(p1, a1, chk), (p2, a2, sav)]
    order = pairs if rng.random() < 0.5 else pairs[::-1]
    slots = {
        "p1": order[0][0][2],
        "a1": money(order[0][1]),
        "p2": order[1][0][2],
        "a2": money(order[1][1]),
        "chk": e.label("checking"),
        "sav": e.label("savings"),
    }
    op = _opening(rng, e, f, "pay_two", slots, False)
    sol = [
        call("find_customer", email=f["person"]["email"]),
        call("list_accounts", customer_id=f["id"]),
        call("list_payees", customer_id=f["id"]),
        call("list_transactions", account_id=chk["id"], status="pending"),
    ]
    for p, amount, acc in order:
        args = {"account_id": acc["id"], "payee_id": p[0], "amount": amount}
        if acc is sav and code:
            args["verification_code"] = code
        sol.append(call("pay_bill", **args))
    user = (
        (_who(f) + f"You asked for two bill payments. If asked for your verification code, it is {code}.")
        if code
        else None
    )
    return _mk(
        "pay_two",
        op,
        f,
        level=4 if code else 3,
        verifier="check_state",
        params={},
        solution=sol,
        answer="Both bills are paid.",
        user_instructions=user,
        constraints=4 if code else 3,
        user_facts=1 if code else 0,
    )


def task_dispute(rng, e: _Env, f: dict) -> Candidate | None:
    account = f.get("dupe_account")
    if not account:
        return None
    inside, late = e.duplicates(account)
    if not inside or not late:
        return None
    kind = next(k for k, a in f["accounts"].items() if a["id"] == account)
    op = _opening(rng, e, f, "dispute", {"label": e.label(kind)}, False)
    sol = [
        call("find_customer", email=f["person"]["email"]),
        call("list_accounts", customer_id=f["id"]),
        call("list_transactions", account_id=account),
    ]
    sol += [call("dispute_charge", transaction_id=p[1], reason="Duplicate charge") for p in inside]
    return _mk(
        "dispute",
        op,
        f,
        level=4 if len(inside) > 1 else 3,
        verifier="check_disputes",
        params={"pairs": inside, "ledger_rows": e.rows},
        solution=sol,
        answer="The duplicates are disputed.",
        constraints=2,
        distractors=len(late) + 1,
    )


def task_cover(rng, e: _Env, f: dict) -> Candidate | None:
    plan = cover_plan(e.r, f, e.bal, e.cap_left(f))
    if plan is None:
        return None
    accs = f["accounts"]
    op = _opening(rng, e, f, "cover", {"credit": e.label("credit")}, False)
    sol = [call("find_customer", email=f["person"]["email"]), call("list_accounts", customer_id=f["id"])]
    for src, dst, amount in plan:
        args = {"from_account_id": accs[src]["id"], "to_account_id": accs[dst]["id"], "amount": amount}
        if amount > e.r["threshold"]:
            args["verification_code"] = e.code[f["id"]]
        sol.append(call("transfer", **args))
    params = {
        "customer_id": f["id"],
        "cover": [a["id"] for k, a in accs.items() if k != "credit"],
        "max_transfers": len(plan),
        "cap": e.cap_left(f) + f["out_today"],
        "overdraft": e.r["overdraft"],
        "threshold": e.r["threshold"],
        "today": e.r["today"],
    }
    return _mk(
        "cover",
        op,
        f,
        level=5,
        verifier="check_cover",
        params=params,
        solution=sol,
        answer="Every account is back to zero or above.",
        constraints=5,
        distractors=0,
    )


def task_move_user(rng, e: _Env, f: dict) -> Candidate | None:
    allowed = min(max_out(e.r, "savings", e.avail(f, "savings")), e.cap_left(f))
    wanted = float(int(allowed + rng.uniform(150, 900)) // 10 * 10)
    if allowed <= 0 or wanted <= allowed:
        return None
    accs, code = f["accounts"], e.code[f["id"]]
    op = _opening(rng, e, f, "move_user", {}, True)
    args = {
        "from_account_id": accs["savings"]["id"],
        "to_account_id": accs["checking"]["id"],
        "amount": allowed,
    }
    if allowed > e.r["threshold"]:
        args["verification_code"] = code
    user = (
        _who(f) + f"You want to move ${money(wanted)} from your {e.label('savings')} to your "
        f"{e.label('checking')} today. If the bank cannot move all of it today, move as much as it allows. "
        f"If asked for your verification code, it is {code}."
    )
    sol = [
        call("find_customer", email=f["person"]["email"]),
        call("list_accounts", customer_id=f["id"]),
        call("list_transactions", account_id=accs["checking"]["id"], since=e.r["today"]),
        call("transfer", **args),
    ]
    return _mk(
        "move_user",
        op,
        f,
        level=4,
        verifier="check_state",
        params={},
        solution=sol,
        answer=f"I moved ${money(allowed)}, the most allowed today.",
        user_instructions=user,
        constraints=3,
        user_facts=3 if "verification_code" in args else 2,
    )


def task_pay_user(rng, e: _Env, f: dict) -> Candidate | None:
    twins = [p for p in e.payees(f) if p[3] == f["twin_category"]]
    payee, other = rng.sample(twins, 2)
    avail_c, avail_s = e.avail(f, "checking"), e.avail(f, "savings")
    binding = rng.random() < 0.6
    amount = (
        round(avail_c + rng.uniform(20, 300), 2) if binding else round(avail_c * rng.uniform(0.2, 0.8), 2)
    )
    if binding and (amount + e.r["savings_fee"] > avail_s or amount > e.cap_left(f)):
        amount, binding = round(avail_c * rng.uniform(0.2, 0.8), 2), False
    if amount > e.cap_left(f) or amount < 5:
        return None
    accs, code = f["accounts"], e.code[f["id"]]
    src = accs["savings"] if binding else accs["checking"]
    args = {"account_id": src["id"], "payee_id": payee[0], "amount": amount}
    if amount > e.r["threshold"]:
        args["verification_code"] = code
    op = _opening(rng, e, f, "pay_user", {"category": f["twin_category"]}, True)
    user = (
        _who(f) + f"You want to pay ${money(amount)} to {payee[2]} (not {other[2]}) from your "
        f"{e.label('checking')}; if your {e.label('checking')} cannot cover it, pay it from your "
        f"{e.label('savings')}. If asked for your verification code, it is {code}."
    )
    sol = [
        call("find_customer", email=f["person"]["email"]),
        call("list_accounts", customer_id=f["id"]),
        call("list_payees", customer_id=f["id"]),
        call("list_transactions", account_id=accs["checking"]["id"], status="pending"),
        call("pay_bill", **args),
    ]
    return _mk(
        "pay_user",
        op,
        f,
        level=4 if binding else 3,
        verifier="check_state",
        params={},
        solution=sol,
        answer="The bill is paid.",
        user_instructions=user,
        constraints=3 if binding else 1,
        distractors=1,
        user_facts=4 if "verification_code" in args else 3,
    )


def make_tasks(v: Variant, d: dict, n: int) -> list[Candidate]:
    """Candidates of every kind, interleaved kind by kind so any `n` keeps the mix."""
    e = _Env(v, d)
    rng = v.rng("tasks")
    good = [f for f in e.facts if not f["overdrawn"]]
    pools: dict[str, list] = {k: [] for k in KINDS}
    for f in e.facts:
        for kind in f["accounts"]:
            if kind != "checking2":
                pools["available"].append(lambda f=f, k=kind: task_available(rng, e, f, k))
        pools["cover"].append(lambda f=f: task_cover(rng, e, f))
    for f in good:
        pools["max_move"] += [
            lambda f=f: task_max_move(rng, e, f, "savings", "checking"),
            lambda f=f: task_max_move(rng, e, f, "checking", "savings"),
        ]
        pools["pay_two"].append(lambda f=f: task_pay_two(rng, e, f))
        pools["dispute"].append(lambda f=f: task_dispute(rng, e, f))
        pools["move_user"].append(lambda f=f: task_move_user(rng, e, f))
        pools["pay_user"].append(lambda f=f: task_pay_user(rng, e, f))
    for k in KINDS:
        rng.shuffle(pools[k])
    out: list[Candidate] = []
    seen: set[str] = set()
    while len(out) < n and any(pools.values()):
        for k in KINDS:
            while pools[k] and len(out) < n:
                c = pools[k].pop()()
                if c is not None and c.prompt[0].lower() not in seen:
                    seen.add(c.prompt[0].lower())
                    out.append(c)
                    break
    return out


def harden(c: Candidate) -> Candidate | None:
    """The same task with the customer's email held by the user instead of written in the prompt."""
    from dataclasses import replace

    bare, who = c.extra.get("bare"), c.extra.get("who")
    if not bare or c.user_instructions:
        return None
    feats = dict(c.extra["features"], user_facts=c.extra["features"]["user_facts"] + 1)
    user = who + "If asked for your email, it is the one above."
    return replace(
        c, prompt=[bare], user_instructions=user, extra={**c.extra, "features": feats, "bare": None}
    )


# -- the shape -----------------------------------------------------------------------------------------------
class AccountsLedger(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        d = data(v)
        r = d["rules"]
        ctx = {"bank": v.vocab["bank"], **r}
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, d["tables"])
        return description(v, r)

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list[Candidate]:
        return make_tasks(v, data(v), n)

    def harden(self, env_dir: Path, v: Variant, c: Candidate, reason: str) -> Candidate | None:
        return harden(c)


SHAPE = AccountsLedger()

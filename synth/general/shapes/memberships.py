"""Shape memberships: a membership programme with tiers, members, expiry dates, renewals, upgrades, benefits
(guest passes and credits), family add-ons and payments.

Rules that bind (the tools do not enforce them): a renewal within the grace period after expiry keeps the
member's renewal rate on file, after it the tier's current fee; long-standing members get a loyalty discount;
upgrades and add-ons are prorated to the expiry date (by days or by started months, per variant); benefits are
capped per membership year and suspended after expiry; add-ons only on some tiers; refunds only within N days.
So every quote depends on the rules, and most writes need a state check first.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import unicodedata
from pathlib import Path

from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import ToolCall

from ..base import Shape, Variant, a_or_an, call, candidate, people, phrase, read_db, render, write_db

SCHEMA = """
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE tiers (id TEXT PRIMARY KEY, name TEXT UNIQUE, annual_fee REAL, passes INTEGER, credits REAL,
                    addon_slots INTEGER, addon_fee REAL);
CREATE TABLE members (id TEXT PRIMARY KEY, name TEXT, email TEXT, tier_id TEXT, joined TEXT, expires TEXT,
                      rate REAL, household TEXT);
CREATE TABLE addons (id TEXT PRIMARY KEY, member_id TEXT, name TEXT, added_on TEXT);
CREATE TABLE benefit_use (id TEXT PRIMARY KEY, member_id TEXT, benefit TEXT, amount REAL, used_on TEXT);
CREATE TABLE payments (id TEXT PRIMARY KEY, member_id TEXT, kind TEXT, description TEXT, amount REAL,
                       paid_on TEXT, refunded_on TEXT);
"""


def _vocab(name, service, currency, currency_name, tiers, fee, pass_one, pass_many, credit, addon, purchases):
    return {
        "name": name,
        "service": service,
        "currency": currency,
        "currency_name": currency_name,
        "tiers": tiers,
        "fee": fee,
        "pass_one": pass_one,
        "pass_many": pass_many,
        "pass_key": pass_many.replace(" ", "_").replace("-", "_"),
        "credit": credit,
        "credit_key": credit.replace(" ", "_"),
        "addon_one": addon[0],
        "addon_many": addon[1],
        "addon_key": addon[1].replace(" ", "_").replace("-", "_"),
        "benefit_word": "benefit",
        "purchases": purchases,
    }


VOCABS = [
    _vocab(
        "museum_membership",
        "the Hallworth Museum of Art membership programme",
        "$",
        "dollars",
        ["Individual", "Dual", "Family", "Patron", "Director's Circle"],
        70,
        "guest pass",
        "guest passes",
        "shop credit",
        ("family add-on", "family add-ons"),
        [
            "Members' Lecture Series",
            "Summer Gala Dinner",
            "Curator's Tour",
            "Printmaking Workshop",
            "Exhibition Catalogue",
            "Sculpture Garden Brunch",
            "Late Opening Jazz Night",
        ],
    ),
    _vocab(
        "golf_club",
        "Kingsbarrow Golf Club",
        "£",
        "pounds",
        ["Social", "Weekday", "Intermediate", "Full Playing", "Founders"],
        420,
        "guest round",
        "guest rounds",
        "pro shop credit",
        ("family add-on", "family add-ons"),
        [
            "Spring Pairs Trophy",
            "Junior Coaching Block",
            "Club Dinner Dance",
            "Range Token Bundle",
            "Captain's Day Entry",
            "Winter Fourball Series",
            "Short Game Clinic",
        ],
    ),
    _vocab(
        "coop_grocery",
        "the Riverbend Food Co-op",
        "$",
        "dollars",
        ["Basic Owner", "Household Owner", "Supporting Owner", "Sustaining Owner", "Founding Circle"],
        45,
        "guest shopping pass",
        "guest shopping passes",
        "store credit",
        ("household card", "household cards"),
        [
            "Fermentation Cooking Class",
            "Bulk Olive Oil Pre-order",
            "Farm Tour Ticket",
            "Holiday Box Pre-order",
            "Knife Skills Class",
            "Seed Swap Supper",
            "Sourdough Starter Workshop",
        ],
    ),
    _vocab(
        "professional_association",
        "the Northern Institute of Building Surveyors",
        "£",
        "pounds",
        ["Student", "Associate", "Member", "Senior Member", "Fellow"],
        110,
        "event guest pass",
        "event guest passes",
        "course credit",
        ("partner add-on", "partner add-ons"),
        [
            "Annual Conference Ticket",
            "Contract Law Webinar",
            "Regional Awards Dinner",
            "Site Safety Refresher",
            "Expert Witness Workshop",
            "Dilapidations Masterclass",
            "Party Wall Seminar",
        ],
    ),
    _vocab(
        "car_sharing_club",
        "Commonwheels Car Club",
        "€",
        "euros",
        ["Occasional", "Flex", "Regular", "Frequent", "Business Plus"],
        60,
        "guest driver day",
        "guest driver days",
        "driving credit",
        ("additional driver", "additional drivers"),
        [
            "Van Day Hire",
            "Airport Return Package",
            "Weekend Getaway Bundle",
            "Child Seat Rental",
            "Electric Car Taster Day",
            "Moving Day Van",
            "Roof Box Rental",
        ],
    ),
]

SHAPE_NAME = "memberships"
FEE_STEPS = (1.0, 1.7, 2.4, 3.5, 5.6)
PASS_CAPS = ((0, 1), (2, 3), (4, 5), (6, 8), (10, 12))
CREDIT_SHARE = (0.0, 0.08, 0.12, 0.16, 0.22)


# -- the rules ------------------------------------------------------------------------------------------------
def _params(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "today": (dt.date(2025, 1, 6) + dt.timedelta(days=rng.randrange(300))).isoformat(),
        "grace_days": rng.choice([14, 21, 30, 45, 60]),
        "loyalty_years": rng.choice([3, 5, 8, 10]),
        "loyalty_pct": rng.choice([10, 15, 20, 25]),
        "prorate": rng.choice(["days", "months"]),
        "refund_days": rng.choice([7, 14, 21, 30]),
        "joining_fee": rng.choice([15, 20, 25, 30, 40, 50]),
    }


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _plus_months(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


def _plus_year(day: dt.date) -> dt.date:
    return _plus_months(day, 12)


def _months_left(today: dt.date, expires: dt.date) -> int:
    """Started months until expiry: the fewest whole months from today that reach the expiry date."""
    m = 0
    while _plus_months(today, m) < expires:
        m += 1
    return m


def _full_years(joined: dt.date, today: dt.date) -> int:
    return today.year - joined.year - ((today.month, today.day) < (joined.month, joined.day))


class Rules:
    """The variant's policy applied to its data: what a correct operator computes."""

    def __init__(self, p: dict) -> None:
        self.p = p
        self.today = _date(p["today"])

    def status(self, m: dict) -> str:
        late = (self.today - _date(m["expires"])).days
        return "active" if late <= 0 else "grace" if late <= self.p["grace_days"] else "lapsed"

    def loyal(self, m: dict) -> bool:
        return _full_years(_date(m["joined"]), self.today) >= self.p["loyalty_years"]

    def renewal(self, m: dict, tier: dict) -> float:
        base = tier["annual_fee"] if self.status(m) == "lapsed" else m["rate"]
        return round(base * (1 - self.p["loyalty_pct"] / 100), 2) if self.loyal(m) else round(base, 2)

    def prorate(self, amount: float, m: dict) -> float:
        expires = _date(m["expires"])
        if self.p["prorate"] == "days":
            return round(amount * (expires - self.today).days / 365, 2)
        return round(amount * _months_left(self.today, expires) / 12, 2)

    def year_start(self, m: dict) -> dt.date:
        return _plus_months(_date(m["expires"]), -12)

    def used(self, m: dict, uses: list[dict], benefit: str) -> float:
        start = self.year_start(m)
        return round(
            sum(u["amount"] for u in uses if u["benefit"] == benefit and _date(u["used_on"]) >= start), 2
        )

    def refundable(self, pay: dict) -> bool:
        return not pay["refunded_on"] and (self.today - _date(pay["paid_on"])).days <= self.p["refund_days"]


def _description(v: Variant, p: dict) -> str:
    voc = v.vocab
    cur = voc["currency"]
    if p["prorate"] == "days":
        prorate = "the days left until the expiry date divided by 365"
    else:
        prorate = (
            "the months left until the expiry date divided by 12, a started month counting as a whole one"
        )
    return (
        f"You are the membership office of {voc['service']}. Today is {p['today']}. Use the tools to look "
        f"members up and to act for them; prices are in {voc['currency_name']}. Policy, which the tools do not "
        f"enforce for you: a membership renewed before its expiry date or within {p['grace_days']} days after "
        f"it is charged the member's renewal rate on file; after those {p['grace_days']} days it is charged the "
        f"tier's current annual fee. Members who joined at least {p['loyalty_years']} years ago get "
        f"{p['loyalty_pct']}% off any renewal. A renewed year starts at the later of the old expiry date and "
        f"today. {voc['pass_many'].capitalize()} and {voc['credit']} are capped per membership year (the year "
        f"that ends on the expiry date) at the tier's allowance; uses before the current membership year do not "
        f"count. Benefits are suspended from the expiry date until the membership is renewed, grace period "
        f"included. When a request exceeds what is left, record only what is left and tell the member. Only a "
        f"member whose membership has not expired can change tier; an upgrade costs the difference between the "
        f"two tiers' annual fees times {prorate}, rounded to the cent. {voc['addon_many'].capitalize()} are "
        f"allowed only on tiers that list an allowance for them, up to that number per membership; each costs "
        f"the tier's {voc['addon_one']} fee, prorated to the expiry date like an upgrade (a full year on a new "
        f"membership). New members pay the tier's annual fee plus a one-time joining fee of {cur}{p['joining_fee']}. "
        f"A payment can be refunded in full within {p['refund_days']} days of the day it was paid, never later. "
        "Answer questions with submit_answer; after making changes, reply to the member without a tool call."
    )


# -- the data -------------------------------------------------------------------------------------------------
def _split(name: str) -> tuple[str, str]:
    first, _, last = name.partition(" ")
    return first, last or first


def _email(first: str, last: str, k: int) -> str:
    plain = unicodedata.normalize("NFKD", f"{first}.{last}{k}").encode("ascii", "ignore").decode()
    return f"{plain}@example.com".lower().replace(" ", "").replace("'", "")


def _data(v: Variant, p: dict) -> dict:
    rng = v.rng("data")
    voc = v.vocab
    today = _date(p["today"])
    tiers = []
    slots_at = {2: rng.choice([2, 3]), 3: rng.choice([0, 3, 4]), 4: rng.choice([3, 4])}
    for i, name in enumerate(voc["tiers"]):
        fee = float(round(voc["fee"] * FEE_STEPS[i] * rng.uniform(0.92, 1.08) / 5) * 5)
        slots = slots_at.get(i, 0)
        addon_fee = float(round(voc["fee"] * rng.uniform(0.3, 0.55) / 5) * 5) if slots else 0.0
        credits = float(round(voc["fee"] * FEE_STEPS[4] * CREDIT_SHARE[i] / 5) * 5)
        tiers.append((f"T{i + 1}", name, fee, rng.randint(*PASS_CAPS[i]), credits, slots, addon_fee))
    folks = people(v, 40, "members")
    kids = people(v, 30, "kids")
    members, addons, uses, payments = [], [], [], []
    used_emails: set[str] = set()
    base_id = rng.randrange(1000, 7000, 100)

    def add(first: str, last: str, household: str, status: str) -> None:
        k = rng.randint(1, 99)
        while _email(first, last, k) in used_emails:
            k += 1
        used_emails.add(_email(first, last, k))
        tier = rng.choices(tiers, weights=[3, 3, 3, 2, 1])[0]
        if status == "active":
            expires = today + dt.timedelta(days=rng.randint(25, 340))
        elif status == "grace":
            expires = today - dt.timedelta(days=rng.randint(1, p["grace_days"] - 2))
        else:
            expires = today - dt.timedelta(days=rng.randint(p["grace_days"] + 3, p["grace_days"] + 150))
        joined = _plus_months(expires, -12 * rng.choice([1, 2, 3, 4, 6, 9, 12, 15]) - rng.randint(0, 11))
        rate = float(round(tier[2] * rng.uniform(0.8, 0.93)))
        mid = f"M{base_id + len(members) * 3 + rng.randint(0, 2)}"
        members.append(
            (
                mid,
                f"{first} {last}",
                _email(first, last, k),
                tier[0],
                joined.isoformat(),
                expires.isoformat(),
                rate,
                household,
            )
        )
        last_renewal = _plus_months(expires, -12)
        if last_renewal <= today:
            payments.append([mid, "renewal", f"{tier[1]} renewal", rate, last_renewal.isoformat()])
        for j in range(rng.randint(0, tier[5])):
            kid = kids[(len(addons) * 7 + j) % len(kids)]["name"].split(" ")[0]
            addons.append((f"A{101 + len(addons)}", mid, f"{kid} {last}", last_renewal.isoformat()))
        start = last_renewal - dt.timedelta(days=200)
        for _ in range(rng.randint(1, 4)):
            day = start + dt.timedelta(days=rng.randint(0, max(1, (min(today, expires) - start).days)))
            uses.append([mid, voc["pass_key"], float(rng.randint(1, 2)), day.isoformat()])
        for _ in range(rng.randint(1, 3)):
            day = start + dt.timedelta(days=rng.randint(0, max(1, (min(today, expires) - start).days)))
            uses.append(
                [
                    mid,
                    voc["credit_key"],
                    round(rng.randint(8, 70) * rng.choice([1, 0.5, 0.25]) + 0.5, 2),
                    day.isoformat(),
                ]
            )
        for item in rng.sample(voc["purchases"], rng.randint(1, 3)):
            ago = rng.choice([rng.randint(1, p["refund_days"] - 2), rng.randint(p["refund_days"] + 3, 80)])
            price = float(round(voc["fee"] * rng.uniform(0.15, 0.9))) + rng.choice([0.0, 0.5])
            payments.append([mid, "purchase", item, price, (today - dt.timedelta(days=ago)).isoformat()])

    statuses = ["active", "grace", "lapsed"]
    for h in range(14):  # couples share a household and a surname
        first, last = _split(folks[h]["name"])
        partner = _split(folks[20 + h]["name"])[0]
        pattern = [("lapsed", "active"), ("grace", "lapsed"), ("active", "active"), ("grace", "active")][
            h % 4
        ]
        add(first, last, f"H{101 + h}", pattern[0])
        add(partner, last, f"H{101 + h}", pattern[1])
    for s in range(14, 20):
        first, last = _split(folks[s]["name"])
        add(first, last, f"H{101 + s}", statuses[s % 3])
    for s in range(34, 40):
        first, last = _split(folks[s]["name"])
        add(first, last, f"H{101 + s}", "active")
    uses.sort(key=lambda u: u[3])
    payments.sort(key=lambda x: x[4])
    return {
        "settings": [("today", p["today"])],
        "tiers": tiers,
        "members": members,
        "addons": addons,
        "benefit_use": [(f"U{3001 + i}", *u) for i, u in enumerate(uses)],
        "payments": [(f"P{5001 + i}", *x, None) for i, x in enumerate(payments)],
    }


# -- the shape ------------------------------------------------------------------------------------------------
class Memberships(Shape):
    NAME = SHAPE_NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = _params(v)
        for name in ("tools.py", "verify.py"):
            (out / name).write_text(render(self.NAME, f"{name}.j2", v=v.vocab, p=p))
        write_db(out / "state" / "db.sqlite", SCHEMA, _data(v, p))
        return _description(v, p)

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        w = _World(Path(env_dir), v)
        quotas = {
            w.household_plan: 7,
            w.renew_pair: 6,
            w.use_benefit: 6,
            w.renew_then_use: 5,
            w.upgrade_add_family: 5,
            w.refund: 5,
            w.renewal_quote: 5,
            w.upgrade_quote: 5,
            w.allowance: 4,
        }
        # the kinds interleaved by their quotas, then again in turn for whatever a kind could not fill
        order = [
            f
            for _, _, f in sorted((j / q, i, f) for i, (f, q) in enumerate(quotas.items()) for j in range(q))
        ]
        order += list(quotas) * n
        out, seen = [], set()
        for k, maker in enumerate(order):
            if len(out) >= n:
                break
            for attempt in range(4):
                made = maker(v.rng("task", k, attempt))
                if made is not None and made.prompt[0] not in seen and made.extra["subject"] not in seen:
                    seen.update({made.prompt[0], made.extra["subject"]})
                    out.append(made)
                    break
        return out

    def harden(self, env_dir: Path, v: Variant, c, reason: str):
        """Move who the member is (and what they want) from the prompt to the user, where the kind allows."""
        held = c.extra.get("held")
        if not held or c.user_instructions:
            return None
        prompt, instructions, facts = held
        out = candidate(
            SHAPE_NAME,
            c.template.split("/")[2] + "_held",
            0,
            level=min(5, c.difficulty + 1),
            prompt=prompt,
            verifier=c.verifier,
            params={
                k: x for k, x in c.params.items() if not (c.verifier == "check_state" and k == "expected")
            },
            solution=c.solution,
            answer=c.answer,
            guess=c.guess,
            user_instructions=instructions,
            constraints=c.extra["features"]["constraints"],
            distractors=c.extra["features"]["distractors"],
            user_facts=facts,
        )
        out.extra["subject"] = c.extra.get("subject")
        return out


def _money(cur: str, x: float) -> str:
    return f"{cur}{x:,.0f}" if x == int(x) else f"{cur}{x:,.2f}"


class _World:
    """An environment's data and rules, indexed for the task makers."""

    def __init__(self, env_dir: Path, v: Variant) -> None:
        data = read_db(env_dir)
        self.env_dir, self.v, self.voc = env_dir, v, v.vocab
        self.p = _params(v)
        self.r = Rules(self.p)
        self.tiers = {t["id"]: t for t in data["tiers"]}
        self.by_fee = sorted(self.tiers.values(), key=lambda t: t["annual_fee"])
        self.members = data["members"]
        self.by_id = {m["id"]: m for m in self.members}
        self.uses = {
            m["id"]: [u for u in data["benefit_use"] if u["member_id"] == m["id"]] for m in self.members
        }
        self.pays = {
            m["id"]: [x for x in data["payments"] if x["member_id"] == m["id"]] for m in self.members
        }
        self.addons = {
            m["id"]: [a for a in data["addons"] if a["member_id"] == m["id"]] for m in self.members
        }
        self.visible = self._visible(data)

    @staticmethod
    def _visible(data: dict) -> set[float]:
        """Every number a single read could show: an answer equal to one is left to a lucky shortcut."""
        out = set()
        for rows in data.values():
            for row in rows:
                out.update(round(float(x), 2) for x in row.values() if isinstance(x, (int, float)))
        return out

    # helpers
    def tier(self, m: dict) -> dict:
        return self.tiers[m["tier_id"]]

    def partner(self, m: dict) -> dict | None:
        return next(
            (o for o in self.members if o["household"] == m["household"] and o["id"] != m["id"]), None
        )

    def who(self, m: dict) -> str:
        return f"{m['name']} ({m['email']})"

    def find(self, m: dict) -> list:
        return [call("find_member", email=m["email"]), call("get_member", member_id=m["id"])]

    def money(self, x: float) -> str:
        return _money(self.voc["currency"], x)

    def fresh(self, value: float) -> bool:
        return round(value, 2) not in self.visible and value > 0

    def _held(
        self, rng, m: dict, prompts: list[str], extra: str = "", facts: int = 1
    ) -> tuple[str, str, int]:
        """What a user-held version of a task says (prompt, instructions, facts): who they are stays with them."""
        return (
            phrase(rng, prompts)[1],
            f"You are {m['name']} ({m['email']}). If asked, your membership number is {m['id']}. {extra}".strip(),
            facts,
        )

    # -- kinds: writes ------------------------------------------------------------------------------------------
    def renew_pair(self, rng):
        """Renew two members of a household: one is past the grace period (current fee), one is not."""
        pairs = []
        for m in self.members:
            o = self.partner(m)
            if (
                o
                and m["id"] < o["id"]
                and {self.r.status(m), self.r.status(o)} & {"lapsed"}
                and ({self.r.status(m), self.r.status(o)} - {"lapsed"})
            ):
                pairs.append((m, o))
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        if rng.random() < 0.5:
            a, b = b, a
        pa, pb = self.r.renewal(a, self.tier(a)), self.r.renewal(b, self.tier(b))
        other = _split(b["name"])[0]
        held = rng.random() < 0.45
        templates = [
            "Hi, this is {{ who }}. Please renew my membership and my partner {{ other }}'s as well.",
            "Hello, {{ who }} here. {{ other }} and I would both like to renew our memberships today.",
            "I'm {{ who }}. Could you renew both memberships in our household, mine and {{ other }}'s?",
        ]
        held_templates = [
            "Hi, I'd like to renew my membership and my partner's, please.",
            "Hello! Both memberships in our household need renewing. Can you sort that out?",
            "We want to renew our two memberships, mine and my partner's.",
        ]
        held_text = phrase(rng, held_templates)[1]
        i, text = phrase(rng, held_templates if held else templates, who=self.who(a), other=other)
        sol = self.find(a) + [call("get_member", member_id=b["id"]), call("list_tiers")]
        sol += [
            call("renew_membership", member_id=a["id"], amount=pa),
            call("renew_membership", member_id=b["id"], amount=pb),
        ]
        instructions = (
            f"You are {a['name']} ({a['email']}). You want to renew your membership and your partner "
            f"{b['name']}'s. If asked, your membership number is {a['id']} and {other}'s is {b['id']}. "
            "Pay whatever the office says is due."
        )
        c = candidate(
            SHAPE_NAME,
            "renew_pair" + "_held" * held,
            i,
            level=4 + held,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Both memberships are renewed.",
            user_instructions=instructions if held else None,
            constraints=3,
            distractors=int(self.r.loyal(a)) + int(self.r.loyal(b)),
            user_facts=2 * held,
        )
        c.extra["subject"] = f"renew:{a['id']}"
        if not held:
            c.extra["held"] = (held_text, instructions, 2)
        return c

    def renew_then_use(self, rng):
        """A member in the grace period wants to use a benefit: renew first (benefits are suspended), then
        record the use, capped by the new year's allowance."""
        cands = [m for m in self.members if self.r.status(m) == "grace" and self.tier(m)["passes"] >= 1]
        if not cands:
            return None
        m = rng.choice(cands)
        t = self.tier(m)
        price = self.r.renewal(m, t)
        use_pass = t["credits"] <= 0 or rng.random() < 0.5
        if use_pass:
            want = t["passes"] + rng.randint(1, 2) if rng.random() < 0.6 else max(1, t["passes"] - 1)
            benefit, got = self.voc["pass_key"], float(min(want, t["passes"]))
            what = f"{want} {self.voc['pass_one'] if want == 1 else self.voc['pass_many']}"
        else:
            want = round(t["credits"] + rng.randint(5, 40), 2)
            benefit, got = self.voc["credit_key"], min(want, t["credits"])
            what = f"{self.money(want)} of my {self.voc['credit']}"
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please renew my membership and then put {{ what }} on it for today.",
                "I'm {{ who }}. I want to use {{ what }} today; renew my membership first if it needs it.",
                "This is {{ who }}. Renew me for another year, please, and record {{ what }} for today's visit.",
            ],
            who=self.who(m),
            what=what,
        )
        sol = self.find(m) + [
            call("list_tiers"),
            call("renew_membership", member_id=m["id"], amount=price),
            call("record_benefit_use", member_id=m["id"], benefit=benefit, amount=got),
        ]
        c = candidate(
            SHAPE_NAME,
            "renew_then_use",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Renewed, and the benefit is recorded.",
            constraints=3 + (want > got),
            distractors=len(self.uses[m["id"]]),
        )
        c.extra["subject"] = f"renew_use:{m['id']}"
        return c

    def use_benefit(self, rng):
        """Record a benefit use that exceeds what is left this membership year: record only what is left."""
        cands = []
        for m in self.members:
            if self.r.status(m) != "active":
                continue
            t = self.tier(m)
            left_p = t["passes"] - self.r.used(m, self.uses[m["id"]], self.voc["pass_key"])
            left_c = round(t["credits"] - self.r.used(m, self.uses[m["id"]], self.voc["credit_key"]), 2)
            if left_p >= 1:
                cands.append((m, self.voc["pass_key"], float(left_p)))
            if left_c >= 1:
                cands.append((m, self.voc["credit_key"], left_c))
        if not cands:
            return None
        m, benefit, left = rng.choice(cands)
        if benefit == self.voc["pass_key"]:
            want = int(left) + rng.randint(1, 3)
            what = f"{want} {self.voc['pass_many']}"
        else:
            want = round(left + rng.randint(4, 30) + rng.choice([0, 0.5]), 2)
            what = f"{self.money(want)} of {self.voc['credit']}"
        held = rng.random() < 0.45
        templates = [
            "Hi, I'm {{ who }}. Please record {{ what }} on my membership for today.",
            "{{ who }} here. I'd like to use {{ what }} today.",
            "Hello, this is {{ who }}. Can you put {{ what }} through on my membership today?",
        ]
        held_templates = [
            "Hi, I'd like to use some of my membership benefits today.",
            "Hello! Can you record a benefit use on my membership for today?",
            "I want to use part of my membership allowance today, please.",
        ]
        held_text = phrase(rng, held_templates)[1]
        i, text = phrase(rng, held_templates if held else templates, who=self.who(m), what=what)
        sol = self.find(m) + [
            call("list_tiers"),
            call("list_benefit_use", member_id=m["id"]),
            call("record_benefit_use", member_id=m["id"], benefit=benefit, amount=left),
        ]
        instructions = (
            f"You are {m['name']} ({m['email']}). Today you want to use {what.replace('my ', 'your ')}. "
            f"If asked, your membership number is {m['id']}. If you cannot have all of it, take what is left."
        )
        c = candidate(
            SHAPE_NAME,
            "use_benefit" + "_held" * held,
            i,
            level=3 + held,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Recorded what is left of your allowance.",
            user_instructions=instructions if held else None,
            constraints=2,
            distractors=sum(_date(u["used_on"]) < self.r.year_start(m) for u in self.uses[m["id"]]),
            user_facts=2 * held,
        )
        c.extra["subject"] = f"use:{m['id']}:{benefit}"
        if not held:
            c.extra["held"] = (held_text, instructions, 2)
        return c

    def upgrade_add_family(self, rng):
        """Add people to a membership whose tier takes no add-ons: move to the cheapest tier that takes enough,
        prorated, then add them, each add-on prorated too."""
        cands = []
        for m in self.members:
            t = self.tier(m)
            if self.r.status(m) != "active" or t["addon_slots"] or _date(m["expires"]) <= self.r.today:
                continue
            for k in (1, 2):
                up = [x for x in self.by_fee if x["addon_slots"] >= k and x["annual_fee"] > t["annual_fee"]]
                if up:
                    cands.append((m, k, up[0], len(up) - 1))
        if not cands:
            return None
        m, k, target, dearer = rng.choice(cands)
        t = self.tier(m)
        last = _split(m["name"])[1]
        kids = [p["name"].split(" ")[0] + " " + last for p in people(self.v, 6, f"newkids:{m['id']}")]
        kids = list(dict.fromkeys(kids))[:k]
        if len(kids) < k:
            return None
        names = " and ".join(kids)
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I'd like to add {{ names }} to my membership as {{ addon }}. If my tier "
                "doesn't allow that, move me to the cheapest tier that does.",
                "I'm {{ who }}. Please put {{ names }} on my membership as {{ addon }}, upgrading me to the "
                "cheapest tier that allows it if you have to.",
                "Hello, this is {{ who }}. {{ names }} should be covered by my membership as {{ addon }}; switch "
                "me to whichever tier is cheapest and allows that.",
            ],
            who=self.who(m),
            names=names,
            addon=self.voc["addon_many"] if k > 1 else a_or_an(self.voc["addon_one"]),
        )
        sol = self.find(m) + [
            call("list_tiers"),
            call(
                "change_tier",
                member_id=m["id"],
                tier=target["name"],
                amount=self.r.prorate(target["annual_fee"] - t["annual_fee"], m),
            ),
        ]
        sol += [
            ToolCall(
                name="add_family_member",
                arguments={
                    "member_id": m["id"],
                    "name": kid,
                    "amount": self.r.prorate(target["addon_fee"], m),
                },
            )
            for kid in kids
        ]
        c = candidate(
            SHAPE_NAME,
            "upgrade_add_family",
            i,
            level=5,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Upgraded and added.",
            constraints=4,
            distractors=dearer,
        )
        c.extra["subject"] = f"upgrade_add:{m['id']}:{k}"
        return c

    def refund(self, rng):
        """Refund two or three purchases where at least one is past the refund window."""
        cands = []
        for m in self.members:
            buys = [x for x in self.pays[m["id"]] if x["kind"] == "purchase" and not x["refunded_on"]]
            names = [x["description"] for x in buys]
            if len(set(names)) != len(names):
                continue
            ok = [x for x in buys if self.r.refundable(x)]
            if ok and len(ok) < len(buys) and len(buys) >= 2:
                cands.append((m, buys, ok))
        if not cands:
            return None
        m, buys, ok = rng.choice(cands)
        late = [x for x in buys if x not in ok]
        picked = [rng.choice(ok), rng.choice(late)]
        rest = [x for x in buys if x not in picked]
        if rest and rng.random() < 0.4:
            picked.append(rng.choice(rest))
        rng.shuffle(picked)
        items = [x["description"] for x in picked]
        listed = ", ".join(f"the {x}" for x in items[:-1]) + f" and the {items[-1]}"
        held = rng.random() < 0.45
        templates = [
            "Hi, {{ who }} here. I'd like refunds for {{ listed }}, please.",
            "I'm {{ who }}. Please refund what I paid for {{ listed }}.",
            "Hello, this is {{ who }}. Can I get my money back for {{ listed }}?",
        ]
        held_templates = [
            "Hi, I'd like a refund for a few things I paid for recently.",
            "Hello, I need some payments refunded, please.",
            "Can you refund some of my recent purchases?",
        ]
        held_text = phrase(rng, held_templates)[1]
        i, text = phrase(rng, held_templates if held else templates, who=self.who(m), listed=listed)
        sol = [call("find_member", email=m["email"]), call("list_payments", member_id=m["id"])]
        sol += [call("refund_payment", payment_id=x["id"]) for x in picked if x in ok]
        instructions = (
            f"You are {m['name']} ({m['email']}). You want refunds for {listed}. If asked, your membership "
            f"number is {m['id']}. Accept it if some cannot be refunded."
        )
        c = candidate(
            SHAPE_NAME,
            "refund" + "_held" * held,
            i,
            level=3 + held,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Refunded what the policy allows.",
            user_instructions=instructions if held else None,
            constraints=1,
            distractors=len(buys) - len(picked) + len(picked) - sum(x in ok for x in picked),
            user_facts=2 * held,
        )
        c.extra["subject"] = f"refund:{m['id']}:{len(picked)}"
        if not held:
            c.extra["held"] = (held_text, instructions, 2)
        return c

    # -- kinds: answers ---------------------------------------------------------------------------------------
    def _answer(
        self,
        kind,
        i,
        level,
        text,
        expected,
        guess,
        sol,
        *,
        held,
        use_held,
        constraints,
        distractors=0,
        subject,
    ):
        """An answer task; `held` is its user-held version (used now when `use_held`, else kept for harden)."""
        instructions, facts = (held[1], held[2]) if use_held else (None, 0)
        c = candidate(
            SHAPE_NAME,
            kind + "_held" * use_held,
            i,
            level=level + use_held,
            prompt=held[0] if use_held else text,
            verifier="check_answer",
            params={"expected": expected},
            solution=sol,
            answer=None,
            guess=guess,
            user_instructions=instructions,
            constraints=constraints,
            distractors=distractors,
            user_facts=facts,
        )
        c.extra["subject"] = subject
        if not use_held:
            c.extra["held"] = held
        return c

    def renewal_quote(self, rng):
        """What renewing costs for a loyal member, or for a whole household (the rules change every number)."""
        cands = []
        for m in self.members:
            o = self.partner(m)
            price = self.r.renewal(m, self.tier(m))
            if self.r.loyal(m) and self.fresh(price) and price != self.tier(m)["annual_fee"]:
                cands.append((m, None, price, self.tier(m)["annual_fee"]))
            if o and m["id"] < o["id"]:
                total = round(price + self.r.renewal(o, self.tier(o)), 2)
                naive = self.tier(m)["annual_fee"] + self.tier(o)["annual_fee"]
                if self.fresh(total) and total != naive:
                    cands.append((m, o, total, naive))
        if not cands:
            return None
        m, o, expected, naive = rng.choice(cands)
        if o is None:
            i, text = phrase(
                rng,
                [
                    "Hi, {{ who }} here. How much will it cost me to renew my membership?",
                    "I'm {{ who }}. What would my renewal come to if I renewed today?",
                    "This is {{ who }}. Before I renew, what's the price for me?",
                ],
                who=self.who(m),
            )
            sol = self.find(m) + [call("list_tiers"), call("submit_answer", answer=self.money(expected))]
            held = self._held(
                rng,
                m,
                [
                    "Hi, how much would it cost me to renew my membership today?",
                    "What would my membership renewal come to if I renewed now?",
                    "Before I renew, can you tell me what I'd pay?",
                ],
            )
        else:
            i, text = phrase(
                rng,
                [
                    "Hi, {{ who }} here. What would it cost to renew both my membership and {{ other }}'s today?",
                    "I'm {{ who }}. How much in total for {{ other }} and me to renew?",
                    "This is {{ who }}. If we renewed both our memberships today, what would we pay altogether?",
                ],
                who=self.who(m),
                other=_split(o["name"])[0],
            )
            sol = self.find(m) + [
                call("get_member", member_id=o["id"]),
                call("list_tiers"),
                call("submit_answer", answer=self.money(expected)),
            ]
            held = self._held(
                rng,
                m,
                [
                    "Hi, what would it cost in total to renew both memberships in our household?",
                    "How much would my partner and I pay altogether to renew our memberships today?",
                    "We're thinking of renewing both of our memberships. What's the total?",
                ],
                f"Your partner is {o['name']}.",
                2,
            )
        return self._answer(
            "renewal_quote",
            i,
            3 if o is None else 4,
            text,
            expected,
            self.money(naive),
            sol,
            held=held,
            use_held=rng.random() < 0.4,
            constraints=2,
            distractors=int(o is not None),
            subject=f"quote:{m['id']}:{o is None}",
        )

    def upgrade_quote(self, rng):
        """What an upgrade costs today: the fee difference prorated to the expiry date."""
        cands = []
        for m in self.members:
            if self.r.status(m) != "active" or _date(m["expires"]) <= self.r.today:
                continue
            t = self.tier(m)
            for x in self.by_fee:
                if x["annual_fee"] > t["annual_fee"]:
                    cost = self.r.prorate(x["annual_fee"] - t["annual_fee"], m)
                    if self.fresh(cost) and cost != x["annual_fee"] - t["annual_fee"]:
                        cands.append((m, x, cost))
        if not cands:
            return None
        m, x, cost = rng.choice(cands)
        diff = x["annual_fee"] - self.tier(m)["annual_fee"]
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. How much would it cost to move my membership up to {{ tier }} today?",
                "I'm {{ who }}. If I upgraded to {{ tier }} now, what would I pay?",
                "This is {{ who }}. What's the charge for switching me to the {{ tier }} tier today?",
            ],
            who=self.who(m),
            tier=x["name"],
        )
        sol = self.find(m) + [call("list_tiers"), call("submit_answer", answer=self.money(cost))]
        held = self._held(
            rng,
            m,
            [
                "Hi, I'm thinking of upgrading my membership. What would it cost me today?",
                "How much would I pay to move up a tier today?",
                "I'd like a price for upgrading my membership, please.",
            ],
            f"The tier you have in mind is {x['name']}.",
            2,
        )
        return self._answer(
            "upgrade_quote",
            i,
            3,
            text,
            cost,
            self.money(diff),
            sol,
            held=held,
            use_held=rng.random() < 0.4,
            constraints=2,
            distractors=len(self.by_fee) - 2,
            subject=f"upq:{m['id']}:{x['id']}",
        )

    def allowance(self, rng):
        """How much of a benefit is left this membership year (older uses do not count)."""
        cands = []
        for m in self.members:
            if self.r.status(m) != "active":
                continue
            t = self.tier(m)
            for benefit, cap in (
                (self.voc["credit_key"], t["credits"]),
            ):  # counts of passes are too guessable
                uses = [u for u in self.uses[m["id"]] if u["benefit"] == benefit]
                left = round(cap - self.r.used(m, uses, benefit), 2)
                naive = round(cap - sum(u["amount"] for u in uses), 2)
                if left > 0 and left != naive and left != cap and self.fresh(left) and left >= 2:
                    cands.append((m, benefit, left, naive))
        if not cands:
            return None
        m, benefit, left, naive = rng.choice(cands)
        is_pass = benefit == self.voc["pass_key"]
        what = f"How many {self.voc['pass_many']}" if is_pass else f"How much {self.voc['credit']}"
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. {{ what }} do I have left this membership year?",
                "I'm {{ who }}. {{ what }} can I still use before my membership year ends?",
                "This is {{ who }}. Could you check {{ what | lower }} I have remaining on my membership?",
            ],
            who=self.who(m),
            what=what,
        )
        answer = f"{left:g}" if is_pass else self.money(left)
        sol = self.find(m) + [
            call("list_tiers"),
            call("list_benefit_use", member_id=m["id"]),
            call("submit_answer", answer=answer),
        ]
        held = self._held(
            rng,
            m,
            [
                f"Hi, {what.lower()} do I have left on my membership this year?",
                f"{what} is still available to me this membership year?",
                f"Can you tell me {what.lower()} I can still use this year?",
            ],
        )
        return self._answer(
            "allowance",
            i,
            2,
            text,
            left,
            f"{naive:g}" if is_pass else self.money(naive),
            sol,
            held=held,
            use_held=rng.random() < 0.4,
            constraints=2,
            distractors=sum(_date(u["used_on"]) < self.r.year_start(m) for u in self.uses[m["id"]]),
            subject=f"allow:{m['id']}:{benefit}",
        )

    # -- kind: planning ---------------------------------------------------------------------------------------
    def household_plan(self, rng):
        """Sign up a new household under a budget, with benefits to cover and people who want their own card:
        checked against the constraints, so any plan that keeps them passes."""
        folks = people(self.v, 4, f"household:{rng.randrange(10**6)}")
        last = _split(folks[0]["name"])[1]
        n_adults, n_kids = rng.choice([(1, 1), (1, 2), (2, 1), (2, 2), (2, 0)])
        adults = [f"{_split(f['name'])[0]} {last}" for f in folks[:n_adults]]
        kids = [f"{_split(f['name'])[0]} {last}" for f in folks[2 : 2 + n_kids]]
        if len(set(adults + kids)) < n_adults + n_kids:
            return None
        emails = [_email(*_split(a), rng.randint(1, 99)) for a in adults]
        persons = adults + kids
        own = adults[1:] if n_adults == 2 else []
        plans = _plans(list(self.tiers.values()), persons, own, self.p["joining_fee"])
        # thresholds from a target plan that is not the cheapest one, so the cheap plans fail them
        plans.sort(key=lambda x: (x[0], repr(x[3])))
        if len(plans) < 6:
            return None
        target = plans[rng.randrange(len(plans) // 3, len(plans) * 2 // 3)]
        min_passes = max(1, target[1] - rng.randint(0, 1))
        min_credits = float(round(target[2] * rng.uniform(0.7, 1.0) / 5) * 5)
        ok = [x for x in plans if x[1] >= min_passes and x[2] >= min_credits]
        costs = sorted({x[0] for x in ok})
        if len(costs) < 2 or plans[0] in ok:
            return None
        budget = float(costs[min(len(costs) - 1, rng.randint(1, 2))] + rng.choice([0, 5, 10]))
        valid = [x for x in ok if x[0] <= budget]
        if len(valid) < 2:
            return None
        best = valid[0]
        me = f"{adults[0]} ({emails[0]})"
        others = []
        if n_adults == 2:
            others.append(f"my partner {adults[1]} ({emails[1]})")
        if kids:
            others.append("our " + ("child " if len(kids) == 1 else "children ") + " and ".join(kids))
        household = " and ".join(others)
        cur = self.voc["currency"]
        i, text = phrase(
            rng,
            [
                "Hi, I'm {{ me }}. I'd like to sign up our household: me and {{ household }}. {{ own }}Between us we "
                "need at least {{ passes }} {{ pass_many }} and {{ credits }} of {{ credit }} a year, and the first "
                "year must cost no more than {{ budget }} in all, joining fees included. Please set it up.",
                "{{ me }} here. We want to join: me and {{ household }}. {{ own }}We need {{ passes }} or more "
                "{{ pass_many }} a year between our memberships, at least {{ credits }} of {{ credit }}, and a "
                "total first-year cost of at most {{ budget }}. Can you sign us up?",
                "Hello, this is {{ me }}. Please enrol our family: me and {{ household }}. {{ own }}Our budget "
                "for the first year is {{ budget }} all in; we'd like at least {{ passes }} {{ pass_many }} and "
                "{{ credits }} of {{ credit }} a year across our memberships.",
            ],
            me=me,
            household=household,
            own=f"{_split(own[0])[0]} wants a membership of their own. " if own else "",
            passes=min_passes,
            pass_many=self.voc["pass_many"],
            credits=_money(cur, min_credits),
            credit=self.voc["credit"],
            budget=_money(cur, budget),
        )
        sol = [call("list_tiers")]
        email_of = dict(zip(adults, emails, strict=True))
        for owner, tier_id, fam in best[3]:
            t = self.tiers[tier_id]
            args = {
                "name": owner,
                "tier": t["name"],
                "amount": round(t["annual_fee"] + self.p["joining_fee"] + len(fam) * t["addon_fee"], 2),
            }
            if owner in email_of:
                args["email"] = email_of[owner]
            if fam:
                args["family"] = list(fam)
            sol.append(ToolCall(name="enroll_member", arguments=args))
        c = candidate(
            SHAPE_NAME,
            "household_plan",
            i,
            level=5,
            prompt=text,
            verifier="check_household_plan",
            params={
                "people": persons,
                "own": own,
                "min_passes": min_passes,
                "min_credits": min_credits,
                "budget": budget,
                "joining_fee": float(self.p["joining_fee"]),
                "seed_rows": self.seed_rows(),
            },
            solution=sol,
            answer="You're all signed up.",
            constraints=5 + len(own),
            distractors=min(5, len(ok) - len(valid)),
        )
        c.extra["subject"] = f"plan:{last}:{n_adults}:{n_kids}"
        return c

    def seed_rows(self) -> str:
        if not hasattr(self, "_seed_rows"):
            verify = load_tools_module(self.env_dir / "verify.py", "memberships_verify")
            db = sqlite3.connect(self.env_dir / "state" / "db.sqlite")
            self._seed_rows = verify.seed_rows_digest(db)
            db.close()
        return self._seed_rows


def _plans(tiers: list[dict], persons: list[str], own: list[str], joining: float) -> list[tuple]:
    """Every way to cover `persons` (cost, passes, credits, ((owner, tier id, add-ons), ...)): each person holds
    a membership (any tier) or is an add-on of one whose tier takes enough; `own` people hold one."""
    out = []
    n = len(persons)
    for owners_mask in itertools.product([True, False], repeat=n):
        owners = [p for p, o in zip(persons, owners_mask, strict=True) if o]
        if not owners or any(p not in owners for p in own):
            continue
        rest = [p for p in persons if p not in owners]
        for attach in itertools.product(range(len(owners)), repeat=len(rest)):
            for choice in itertools.product(tiers, repeat=len(owners)):
                fam = [
                    tuple(p for p, a in zip(rest, attach, strict=True) if a == k) for k in range(len(owners))
                ]
                if any(len(f) > t["addon_slots"] for f, t in zip(fam, choice, strict=True)):
                    continue
                cost = sum(
                    t["annual_fee"] + joining + len(f) * t["addon_fee"]
                    for f, t in zip(fam, choice, strict=True)
                )
                plan = tuple((o, t["id"], f) for o, t, f in zip(owners, choice, fam, strict=True))
                out.append(
                    (
                        round(cost, 2),
                        sum(t["passes"] for t in choice),
                        sum(t["credits"] for t in choice),
                        plan,
                    )
                )
    return out


SHAPE = Memberships()

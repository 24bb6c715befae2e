"""Shape ticket_workflow: support tickets moving through workflow states, agents with skills and capacity, SLAs.

Rules that bind (the tools do not enforce them): which transitions are allowed (close only what was resolved long
enough ago, reopen only within a window), new tickets go to the least-loaded agent with the skill and room under
the cap (urgent ones to seniors), tickets past their priority's SLA are escalated (waiting ones are exempt), and
duplicates merge into the oldest. The week's assignment plan is checked against its constraints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path

from ..base import Shape, Variant, a_or_an, call, candidate, people, phrase, read_db, render, write_db
from .itineraries import _about, spread

SCHEMA = """
CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT, email TEXT, skills TEXT, level TEXT);
CREATE TABLE tickets (id TEXT PRIMARY KEY, title TEXT, category TEXT, priority TEXT, status TEXT, assignee_id TEXT,
                      reporter_name TEXT, reporter_email TEXT, opened TEXT, resolved_on TEXT, escalated INTEGER,
                      duplicate_of TEXT);
CREATE TABLE events (ticket_id TEXT, day TEXT, action TEXT, detail TEXT);
"""

VOCABS = [
    {
        "name": "it_helpdesk",
        "title": "An IT help desk",
        "agent": "technician",
        "agents": "technicians",
        "reporter": "employee",
        "where": ["Finance", "Sales", "Legal", "Marketing", "HR", "Warehouse"],
        "titles": {
            "network": [
                "VPN drops every few minutes",
                "No Wi-Fi in meeting room",
                "Shared drive not reachable",
            ],
            "hardware": [
                "Laptop battery swelling",
                "Docking station not detecting monitors",
                "Printer jams on every job",
            ],
            "accounts": [
                "Locked out after password reset",
                "Need access to payroll folder",
                "MFA codes not arriving",
            ],
            "software": ["Outlook crashes on start", "Excel add-in missing", "Teams audio cuts out"],
        },
    },
    {
        "name": "facilities",
        "title": "A facilities maintenance team",
        "agent": "engineer",
        "agents": "engineers",
        "reporter": "occupant",
        "where": [
            "Floor 2 kitchen",
            "Reception",
            "Room 314",
            "Car park B",
            "Gym changing room",
            "Loading bay",
        ],
        "titles": {
            "plumbing": ["Leaking tap", "Toilet will not flush", "Blocked drain"],
            "electrical": ["Flickering ceiling lights", "Dead power socket", "Tripped breaker"],
            "hvac": ["Air conditioning not cooling", "Radiator cold", "Noisy ventilation fan"],
            "cleaning": ["Spill needs cleaning", "Bins not emptied", "Windows smeared"],
        },
    },
    {
        "name": "customer_support",
        "title": "A customer support team",
        "agent": "agent",
        "agents": "agents",
        "reporter": "customer",
        "where": ["web shop", "mobile app", "phone order", "marketplace", "gift card", "subscription"],
        "titles": {
            "billing": ["Charged twice", "Invoice shows wrong address", "Refund not received"],
            "shipping": ["Parcel stuck in transit", "Delivered to wrong address", "Tracking link broken"],
            "returns": ["Return label not working", "Item arrived damaged", "Exchange size request"],
            "account": ["Cannot log in", "Email change request", "Loyalty points missing"],
        },
    },
    {
        "name": "municipal_services",
        "title": "A municipal service-request office",
        "agent": "officer",
        "agents": "officers",
        "reporter": "resident",
        "where": ["Elm Street", "Harbour Road", "Mill Lane", "Station Square", "Park Avenue", "Church Walk"],
        "titles": {
            "roads": ["Pothole in the carriageway", "Faded zebra crossing", "Broken kerb"],
            "lighting": ["Streetlight out", "Streetlight on all day", "Damaged lamp post"],
            "waste": ["Missed bin collection", "Fly-tipping reported", "Overflowing litter bin"],
            "parks": ["Broken swing", "Overgrown hedge", "Graffiti on bench"],
        },
    },
]
for _voc in VOCABS:
    _voc["categories"] = list(_voc["titles"])

PRIORITIES = ["low", "normal", "high", "urgent"]
OPEN = ("triaged", "in_progress", "waiting")


def _params(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "today": (dt.date(2025, 3, 3) + dt.timedelta(days=rng.randrange(150))).isoformat(),
        "sla": {
            "urgent": 1,
            "high": rng.choice([2, 3]),
            "normal": rng.choice([4, 5, 6]),
            "low": rng.choice([8, 10]),
        },
        "max_open": rng.choice([4, 5, 6]),
        "close_after": rng.choice([2, 3, 5]),
        "reopen_days": rng.choice([7, 10, 14]),
    }


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def rows_digest(rows: list[dict]) -> str:
    """verify.rows_digest over rows read here (dicts in column order)."""
    return hashlib.sha256("\n".join(sorted(json.dumps(list(r.values())) for r in rows)).encode()).hexdigest()


class TicketWorkflow(Shape):
    NAME = "ticket_workflow"
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = _params(v)
        ctx = {"v": v.vocab, "index": v.index, **p}
        (out / "tools.py").write_text(render(self.NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(self.NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        voc, sla = v.vocab, p["sla"]
        return (
            f"You are the assistant of {voc['title'].lower()}. Today is {p['today']}. Use the tools to look things "
            f"up and to act for the team. Policy, which the tools do not enforce for you: tickets move new -> "
            "triaged -> in_progress -> waiting (on the reporter) or resolved; waiting -> in_progress or resolved; "
            f"resolved -> closed, but only {p['close_after']} or more days after the day it was resolved; a "
            f"resolved ticket may be reopened (back to in_progress) within {p['reopen_days']} days of its "
            "resolution, never later, and a closed ticket is never reopened. Triage new tickets oldest first: give "
            f"each to the {voc['agent']} with the ticket's category among their skills who has the fewest open "
            f"tickets (triaged, in_progress or waiting), ties to the lower id, never to one who already has "
            f"{p['max_open']} open, and urgent tickets only to seniors; then set it to triaged. A ticket with no "
            "such "
            f"{voc['agent']} stays new. SLAs: a ticket must be resolved within {sla['urgent']} day of opening if "
            f"urgent, {sla['high']} days if high, {sla['normal']} if normal, {sla['low']} if low; a new, triaged or "
            "in_progress ticket opened longer ago than that is in breach (waiting tickets are exempt) and must be "
            "escalated unless it already is. Duplicates are merged into the oldest ticket (earliest opened, then "
            "lower id). Answer questions with submit_answer (lists of tickets by id); after making changes, reply "
            "to the user without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc, cats = v.vocab, v.vocab["categories"]
        today = _day(p["today"])
        staff = people(v, 7, "staff")
        agents = []
        for i, f in enumerate(staff):
            skills = [cats[i % 4]] + ([cats[(i + 1 + rng.randrange(3)) % 4]] if rng.random() < 0.6 else [])
            level = "senior" if i in (0, 2, 5) or rng.random() < 0.25 else "junior"
            email = f"{f['name'].split()[0].lower()}.{voc['name'].split('_')[0]}{i + 1}@example.com"
            agents.append((f"A{i + 1}", f["name"], email, ",".join(sorted(set(skills))), level))
        folks = people(v, 16, "reporters")
        tickets = []

        def add(title, cat, status, opened, resolved=None, assignee=None, reporter=None, priority=None):
            r = reporter or rng.choice(folks)
            tickets.append(
                [
                    f"T{101 + len(tickets)}",
                    title,
                    cat,
                    priority or rng.choice(PRIORITIES[:3] * 2 + ["urgent"]),
                    status,
                    assignee,
                    r["name"],
                    r["email"],
                    opened.isoformat(),
                    resolved.isoformat() if resolved else None,
                    0,
                    None,
                ]
            )
            return tickets[-1]

        def some_title(cat):
            return f"{rng.choice(voc['titles'][cat])} ({rng.choice(voc['where'])})"

        skilled = {c: [a[0] for a in agents if c in a[3].split(",")] for c in cats}
        plan = ["new"] * 9 + ["triaged_free"] * 10 + ["triaged"] * 5 + ["in_progress"] * 8 + ["waiting"] * 6
        plan += ["resolved"] * 14 + ["closed"] * 6
        for kind in plan:
            cat = rng.choice(cats)
            opened = today - dt.timedelta(days=rng.choice([0, 1, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15]))
            # uneven loads: the first skilled one is busiest, so caps and ties matter
            who = rng.choice(skilled[cat][:1] * 2 + skilled[cat]) if skilled[cat] else None
            if kind == "new":
                add(some_title(cat), cat, "new", opened)
            elif kind == "triaged_free":
                add(some_title(cat), cat, "triaged", opened)
            elif kind in ("triaged", "in_progress", "waiting"):
                t = add(some_title(cat), cat, kind, opened, assignee=who)
                t[10] = int(rng.random() < 0.2)
            else:
                opened = today - dt.timedelta(days=rng.randint(4, 30))
                resolved = min(today, opened + dt.timedelta(days=rng.randint(1, 12)))
                add(some_title(cat), cat, kind, opened, resolved=resolved, assignee=who)
        # Duplicates: the same problem reported three times by different people (or twice by one).
        for _ in range(6):
            cat = rng.choice(cats)
            title = some_title(cat)
            base = today - dt.timedelta(days=rng.randint(1, 9))
            one = rng.choice(folks)
            for k in range(3):
                who = one if k < 2 and rng.random() < 0.5 else None
                add(
                    title,
                    cat,
                    rng.choice(["new", "triaged"]),
                    base + dt.timedelta(days=rng.choice([0, 1, 2])),
                    reporter=who,
                )
        tickets.sort(key=lambda t: (t[8], t[0]))
        for i, t in enumerate(tickets):
            t[0] = f"T{101 + i}"
        events = [(t[0], t[8], "opened", t[6]) for t in tickets]
        return {"agents": agents, "tickets": [tuple(t) for t in tickets], "events": events}

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        w = _Desk(read_db(env_dir), _params(v), v)
        makers = [
            w.week_plan,
            w.triage_new,
            w.close_resolved,
            w.sla_breach,
            w.escalate_breaches,
            w.merge_dupes,
            w.reporter_status,
            w.reopen_request,
        ]
        return spread(makers, n, v)


class _Desk:
    """The environment's data, indexed for the task makers; `assign` plays the triage policy forward."""

    def __init__(self, data: dict, p: dict, v: Variant) -> None:
        self.p, self.v, self.voc = p, v, v.vocab
        self.agents = data["agents"]
        self.tickets = data["tickets"]
        self.t = {t["id"]: t for t in self.tickets}
        self.today = _day(p["today"])
        self.name = {a["id"]: a["name"] for a in self.agents}

    def load(self, overrides: dict | None = None) -> dict:
        load = {a["id"]: 0 for a in self.agents}
        for t in self.tickets:
            if t["status"] in OPEN and t["assignee_id"]:
                load[t["assignee_id"]] += 1
        for a, k in (overrides or {}).items():
            load[a] += k
        return load

    def pick(self, t: dict, load: dict) -> str | None:
        """The policy's assignee for a ticket under the given loads (None: nobody may take it)."""
        ok = [
            a
            for a in self.agents
            if t["category"] in a["skills"].split(",")
            and load[a["id"]] < self.p["max_open"]
            and (t["priority"] != "urgent" or a["level"] == "senior")
        ]
        if not ok:
            return None
        return min(ok, key=lambda a: (load[a["id"]], int(a["id"][1:])))["id"]

    def breach(self, t: dict) -> bool:
        return t["status"] in ("new", "triaged", "in_progress") and (
            (self.today - _day(t["opened"])).days > self.p["sla"][t["priority"]]
        )

    def closable(self, t: dict) -> bool:
        return (
            t["status"] == "resolved" and (self.today - _day(t["resolved_on"])).days >= self.p["close_after"]
        )

    def reopenable(self, t: dict) -> bool:
        return (
            t["status"] == "resolved" and (self.today - _day(t["resolved_on"])).days <= self.p["reopen_days"]
        )

    def cat_word(self, cat: str) -> str:
        return cat if cat != "hvac" else "HVAC"

    # kinds ------------------------------------------------------------------------------------------------
    def triage_new(self, rng):
        """Triage new tickets oldest first: each assignment changes the loads the next one sees."""
        new = [t for t in self.tickets if t["status"] == "new"]
        mode = rng.choice(["category", "three"])
        if mode == "category":
            cat = rng.choice(self.voc["categories"])
            todo = [t for t in new if t["category"] == cat]
        else:
            todo = sorted(rng.sample(new, min(3, len(new))), key=lambda t: (t["opened"], t["id"]))
        if len(todo) < 2:
            return None
        load, writes, stay, naive_diff = self.load(), [], 0, 0
        naive_load = self.load()
        for t in todo:
            a = self.pick(t, load)
            skilled = [x["id"] for x in self.agents if t["category"] in x["skills"].split(",")]
            naive = min(skilled, key=lambda x: (naive_load[x], int(x[1:]))) if skilled else None
            if naive:
                naive_load[naive] += 1
            naive_diff += naive != a
            if a is None:
                stay += 1
                continue
            load[a] += 1
            writes += [
                call("assign_ticket", ticket_id=t["id"], agent_id=a),
                call("set_status", ticket_id=t["id"], status="triaged"),
            ]
        if not writes:
            return None
        if mode == "category":
            i, text = phrase(
                rng,
                [
                    "Please triage all the new {{ cat }} tickets.",
                    "Could you work through the new tickets in {{ cat }} and triage them per our rules?",
                    "The {{ cat }} queue has new tickets waiting. Triage them, please.",
                ],
                cat=self.cat_word(cat),
            )
        else:
            ids = [t["id"] for t in todo]
            rng.shuffle(ids)
            i, text = phrase(
                rng,
                [
                    "Please triage tickets {{ a }}, {{ b }} and {{ c }}.",
                    "Could you triage {{ a }}, {{ b }} and {{ c }} for me? They just came in.",
                    "Three new ones need triage: {{ a }}, {{ b }}, {{ c }}. Assign them as the policy says.",
                ],
                a=ids[0],
                b=ids[1],
                c=ids[2],
            )
            i += 3
        held = mode == "three" and rng.random() < 0.8
        instructions = None
        if held:
            i, text = phrase(
                rng,
                [
                    "I've got three new tickets that need triage. Can you handle them?",
                    "Could you triage a few tickets for me? They came in this morning.",
                    "Three tickets landed on my desk and need triaging, please.",
                ],
            )
            i += 6
            instructions = (
                f"You are a team lead. You want tickets {ids[0]}, {ids[1]} and {ids[2]} triaged. Give the ticket "
                "numbers when asked."
            )
        sol = [call("list_tickets", status="new"), call(f"list_{self.voc['agents']}")]
        sol += [call("list_tickets", status=s) for s in OPEN]
        sol += writes
        return _about(
            str([t["id"] for t in todo]),
            candidate(
                "ticket_workflow",
                "triage_new",
                i,
                level=4 if len(todo) >= 3 else 3,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Done.",
                constraints=4,
                distractors=naive_diff + stay,
                user_instructions=instructions,
                user_facts=3 if held else 0,
            ),
        )

    def close_resolved(self, rng):
        """Close what may be closed: resolved long enough ago; not the recent ones, never the waiting ones."""
        by = {}
        for t in self.tickets:
            if t["assignee_id"]:
                by.setdefault(t["assignee_id"], []).append(t)
        pool = [
            a
            for a in sorted(by)
            if any(self.closable(t) for t in by[a])
            and any(t["status"] in ("waiting", "resolved") and not self.closable(t) for t in by[a])
        ]
        if not pool:
            return None
        for cat in self.voc["categories"]:
            mine = [t for t in self.tickets if t["category"] == cat]
            if any(self.closable(t) for t in mine) and any(
                t["status"] in ("waiting", "resolved") and not self.closable(t) for t in mine
            ):
                by[cat] = mine
                pool.append(cat)
        a = rng.choice(pool)
        todo = [t for t in by[a] if self.closable(t)]
        held_back = [t for t in by[a] if t["status"] in ("waiting", "resolved") and not self.closable(t)]
        if a in self.name:
            i, text = phrase(
                rng,
                [
                    "{{ name }} is going on leave. Please close every ticket of theirs that is finished and can be "
                    "closed.",
                    "Could you tidy up {{ name }}'s queue? Close the resolved tickets that are ready to close, nothing "
                    "else.",
                    "Close out {{ name }}'s done tickets, please, but only the ones our rules let you close.",
                ],
                name=self.name[a],
            )
            sol = [call(f"list_{self.voc['agents']}"), call("list_tickets", assignee_id=a)]
        else:
            i, text = phrase(
                rng,
                [
                    "Please close the finished {{ cat }} tickets that are ready to be closed.",
                    "Could you clear out the {{ cat }} queue? Close whatever is done and allowed to close.",
                    "Time for a clean-up in {{ cat }}: close the tickets our rules let you close.",
                ],
                cat=self.cat_word(a),
            )
            i += 3
            sol = [call("list_tickets", category=a)]
        sol += [call("set_status", ticket_id=t["id"], status="closed") for t in todo]
        return _about(
            a,
            candidate(
                "ticket_workflow",
                "close_resolved",
                i,
                level=3 if len(todo) == 1 else 4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Done.",
                constraints=2,
                distractors=len(held_back),
            ),
        )

    def _scope(self, rng):
        """A slice of the tickets a question is about: one category, or one assignee's."""
        if rng.random() < 0.6:
            cat = rng.choice(self.voc["categories"])
            return (
                f"the {self.cat_word(cat)} queue",
                [t for t in self.tickets if t["category"] == cat],
                ("category", cat),
            )
        a = rng.choice(self.agents)
        return (
            f"{a['name']}'s tickets",
            [t for t in self.tickets if t["assignee_id"] == a["id"]],
            ("assignee_id", a["id"]),
        )

    def sla_breach(self, rng):
        """Which tickets of a slice breach their SLA today (a list answer)."""
        label, scope, (field, value) = self._scope(rng)
        hits = [t["id"] for t in scope if self.breach(t)]
        near = [t["id"] for t in scope if t["status"] not in ("resolved", "closed") and t["id"] not in hits]
        if not hits or not near:
            return None
        i, text = phrase(
            rng,
            [
                "Which tickets in {{ label }} are past their SLA today?",
                "List the tickets in {{ label }} that breach their SLA as of today, please.",
                "Looking at {{ label }}: which ones have gone over their SLA?",
            ],
            label=label,
        )
        sol = [call("list_tickets", **{field: value}), call("submit_answer", answer=", ".join(hits))]
        if field == "assignee_id":
            sol.insert(0, call(f"list_{self.voc['agents']}"))
        return _about(
            label,
            candidate(
                "ticket_workflow",
                "sla_breach",
                i,
                level=3,
                prompt=text,
                verifier="check_items",
                params={"expected": hits},
                solution=sol,
                guess=", ".join(hits + near[:1]),
                constraints=2,
                distractors=len(near),
            ),
        )

    def escalate_breaches(self, rng):
        """Escalate a slice's breaches not yet escalated; waiting and already escalated ones are left alone."""
        label, scope, (field, value) = self._scope(rng)
        todo = [t for t in scope if self.breach(t) and not t["escalated"]]
        skip = [t for t in scope if t["status"] not in ("resolved", "closed") and t not in todo]
        if not todo or not skip:
            return None
        i, text = phrase(
            rng,
            [
                "Please escalate whatever in {{ label }} has blown its SLA.",
                "Go through {{ label }} and escalate every ticket that needs escalating today.",
                "Could you check {{ label }} for SLA breaches and escalate them?",
            ],
            label=label,
        )
        instructions = None
        if field == "assignee_id" and rng.random() < 0.7:
            # the user is the colleague whose queue it is: who they are is theirs to say
            i, text = phrase(
                rng,
                [
                    "Could you escalate whatever in my queue has blown its SLA?",
                    "Please check my tickets for SLA breaches and escalate them.",
                    "I'm behind on my tickets. Escalate any that are past their SLA, please.",
                ],
            )
            i += 3
            instructions = f"You are {self.name[value]}, one of the team. Give your name when asked."
        sol = [call("list_tickets", **{field: value})]
        if field == "assignee_id":
            sol.insert(0, call(f"list_{self.voc['agents']}"))
        sol += [call("escalate_ticket", ticket_id=t["id"]) for t in todo]
        return _about(
            label,
            candidate(
                "ticket_workflow",
                "escalate_breaches",
                i,
                level=3 if len(todo) == 1 else 4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Done.",
                constraints=2,
                distractors=len(skip),
                user_instructions=instructions,
                user_facts=1 if instructions else 0,
            ),
        )

    def _groups(self) -> list[list[dict]]:
        by = {}
        for t in self.tickets:
            if t["status"] in ("new", "triaged"):
                by.setdefault(t["title"], []).append(t)
        return [sorted(g, key=lambda t: (t["opened"], t["id"])) for g in by.values() if len(g) >= 2]

    def merge_dupes(self, rng):
        """Merge a group of duplicates into its oldest ticket (the user names them in another order)."""
        groups = [g for g in self._groups() if len(g) >= 3]
        held_groups = [
            g
            for g in self._groups()
            if len(g) == 2
            and g[0]["reporter_email"] == g[1]["reporter_email"]
            and sum(1 for t in self.tickets if t["reporter_email"] == g[0]["reporter_email"]) > 2
        ]
        held = bool(held_groups) and (rng.random() < 0.7 or not groups)
        if held:
            g = rng.choice(held_groups)
            who = g[0]
            i, text = phrase(
                rng,
                [
                    "Hi, I think I reported the same problem twice by mistake. Can you clean that up?",
                    "Hello, I opened two tickets for one issue. Could you merge them?",
                    "I accidentally filed a duplicate ticket. Please sort it out.",
                ],
            )
            instructions = (
                f"You are {who['reporter_name']}; your email is {who['reporter_email']}. You reported "
                f'"{g[0]["title"]}" twice. You don\'t know the ticket numbers. Give your email when asked.'
            )
            sol = [call("list_tickets", reporter_email=who["reporter_email"])]
        else:
            if not groups:
                return None
            g = rng.choice(groups)
            ids = [t["id"] for t in g]
            while ids[0] == g[0]["id"]:
                rng.shuffle(ids)
            i, text = phrase(
                rng,
                [
                    "{{ a }}, {{ b }} and {{ c }} are all the same problem. Please merge them.",
                    "Could you merge tickets {{ a }}, {{ b }} and {{ c }}? They're duplicates of each other.",
                    "We've got three reports of one issue: {{ a }}, {{ b }}, {{ c }}. Merge them as the policy says.",
                ],
                a=ids[0],
                b=ids[1],
                c=ids[2],
            )
            instructions = None
            sol = [call("get_ticket", ticket_id=x) for x in ids]
        sol += [call("merge_tickets", keep_id=g[0]["id"], duplicate_id=t["id"]) for t in g[1:]]
        return _about(
            g[0]["id"],
            candidate(
                "ticket_workflow",
                "merge_dupes",
                i + 3 * held,
                level=4 if held else 3,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Merged.",
                user_instructions=instructions,
                constraints=1,
                distractors=len(g) - 1,
                user_facts=2 if held else 0,
            ),
        )

    def reporter_status(self, rng):
        """The reporter holds who they are and which of their tickets: who is handling it?"""
        by = {}
        for t in self.tickets:
            by.setdefault(t["reporter_email"], []).append(t)
        pool = [
            t
            for mine in by.values()
            if len(mine) >= 2
            for t in mine
            if t["assignee_id"]
            and t["status"] in ("in_progress", "waiting", "triaged", "resolved")
            and sum(1 for x in mine if x["title"] == t["title"]) == 1
        ]
        if not pool:
            return None
        t = rng.choice(pool)
        mine = by[t["reporter_email"]]
        others = {x["assignee_id"] for x in mine if x["assignee_id"]} - {t["assignee_id"]}
        i, text = phrase(
            rng,
            [
                "Hi, I reported a problem a few days ago. Who is looking after it?",
                "Hello! Can you tell me which member of your team has my ticket?",
                "I'd like to know who's handling the issue I reported.",
            ],
        )
        instructions = (
            f"You are {t['reporter_name']}; your email is {t['reporter_email']}. You want to know who is handling "
            f'your report "{t["title"]}" (you don\'t know its number). Give each detail only when asked.'
        )
        return _about(
            t["id"],
            candidate(
                "ticket_workflow",
                "reporter_status",
                i,
                level=3,
                prompt=text,
                verifier="check_answer",
                params={"expected": self.name[t["assignee_id"]], "choices": sorted(self.name.values())},
                solution=[
                    call("list_tickets", reporter_email=t["reporter_email"]),
                    call(f"list_{self.voc['agents']}"),
                    call("submit_answer", answer=self.name[t["assignee_id"]]),
                ],
                guess=self.name[sorted(others)[0]]
                if others
                else next(n for a, n in sorted(self.name.items()) if a != t["assignee_id"]),
                user_instructions=instructions,
                constraints=1,
                distractors=len(mine) - 1,
                user_facts=2,
            ),
        )

    def reopen_request(self, rng):
        """Two of a reporter's tickets are not fixed: reopen the one still in its window, not the other."""
        by = {}
        for t in self.tickets:
            if t["status"] in ("resolved", "closed"):
                by.setdefault(t["reporter_email"], []).append(t)
        pairs = []
        for mine in by.values():
            for a, b in itertools.permutations(mine, 2):
                if self.reopenable(a) and not self.reopenable(b) and a["title"] != b["title"]:
                    pairs.append((a, b))
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        two = sorted([a, b], key=lambda t: t["id"])
        held = rng.random() < 0.7
        if held:
            i, text = phrase(
                rng,
                [
                    "Hi, two of the problems I reported came back. Please reopen my tickets.",
                    "Hello, you marked two of my issues as fixed but they aren't. Can you reopen them?",
                    "Two of my tickets were closed off too early; the problems are still there.",
                ],
            )
            instructions = (
                f'You are {a["reporter_name"]}; your email is {a["reporter_email"]}. The problems "{two[0]["title"]}" '
                f'and "{two[1]["title"]}" are back and you want both tickets reopened. Give each detail only when asked.'
            )
        else:
            i, text = phrase(
                rng,
                [
                    "{{ r }} says {{ x }} and {{ y }} aren't actually fixed. Please reopen them.",
                    "Tickets {{ x }} and {{ y }} came back from the reporter: the problem is still there. Reopen both?",
                    "Could you reopen {{ x }} and {{ y }}? The reporter says neither is fixed.",
                ],
                r=a_or_an(self.voc["reporter"]).capitalize(),
                x=two[0]["id"],
                y=two[1]["id"],
            )
            instructions = None
        sol = (
            [call("list_tickets", reporter_email=a["reporter_email"])]
            if held
            else [call("get_ticket", ticket_id=t["id"]) for t in two]
        )
        sol.append(call("set_status", ticket_id=a["id"], status="in_progress"))
        return _about(
            str([t["id"] for t in two]),
            candidate(
                "ticket_workflow",
                "reopen_request",
                i + 3 * held,
                level=4 if held else 3,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="I reopened one; the other is past the reopening window.",
                user_instructions=instructions,
                constraints=2,
                distractors=1,
                user_facts=3 if held else 0,
            ),
        )

    def week_plan(self, rng):
        """Planning: assign a set of triaged, unassigned tickets under skills, seniority, caps and a spread limit."""
        free = [t for t in self.tickets if t["status"] == "triaged" and not t["assignee_id"]]
        cats = sorted({t["category"] for t in free})
        pick = sorted(rng.sample(cats, min(len(cats), rng.choice([1, 2, 2]))))
        todo = [t for t in free if t["category"] in pick]
        if rng.random() < 0.4:
            pick = ["high", "urgent"]
            todo = [t for t in free if t["priority"] in pick]
        if not 3 <= len(todo) <= 8:
            return None
        max_new = rng.choice([1, 2, 3])
        plans = week_plans(self, [t["id"] for t in todo], max_new, limit=3)
        if len(plans) < 2:
            return None
        i, text = phrase(
            rng,
            [
                "Plan this week's assignments: give every triaged, unassigned {{ cats }} ticket to someone. Keep to "
                "our rules, and don't hand anyone more than {{ k }} of them.",
                "Could you assign all the unassigned triaged tickets in {{ cats }}? Respect skills and caps, and "
                "nobody gets more than {{ k }} of these.",
                "For the week, the unowned triaged {{ cats }} tickets need owners. Spread them so no one takes more "
                "than {{ k }}, within the policy.",
            ],
            cats=" and ".join(
                x for x in [", ".join(self.cat_word(c) for c in pick[:-1]), self.cat_word(pick[-1])] if x
            ),
            k=max_new,
        )
        ids = [t["id"] for t in todo]
        sol = [call("list_tickets", status="triaged"), call(f"list_{self.voc['agents']}")]
        sol += [call("list_tickets", status=s) for s in ("in_progress", "waiting")]
        sol += [
            call("assign_ticket", ticket_id=tid, agent_id=a) for tid, a in zip(ids, plans[0], strict=True)
        ]
        untouched = rows_digest([t for t in self.tickets if t["id"] not in ids])
        return _about(
            str(sorted(pick)) + str(max_new),
            candidate(
                "ticket_workflow",
                "week_plan",
                i,
                level=5,
                prompt=text,
                verifier="check_week_plan",
                params={
                    "tickets": ids,
                    "untouched": untouched,
                    "max_open": self.p["max_open"],
                    "max_new": max_new,
                },
                solution=sol,
                answer="All assigned.",
                constraints=4,
                distractors=len(free) - len(todo),
            ),
        )


def week_plans(desk: _Desk, ids: list[str], max_new: int, limit: int = 3) -> list[tuple[str, ...]]:
    """Valid assignments (an agent id per ticket, in order), by brute force with pruning: skills, urgent to
    seniors, nobody past the open cap or given more than max_new of them."""
    base = desk.load()
    options = []
    for tid in ids:
        t = desk.t[tid]
        options.append(
            [
                a["id"]
                for a in desk.agents
                if t["category"] in a["skills"].split(",")
                and (t["priority"] != "urgent" or a["level"] == "senior")
            ]
        )
    out: list[tuple[str, ...]] = []

    def go(k: int, chosen: list[str], given: dict) -> None:
        if len(out) >= limit:
            return
        if k == len(ids):
            out.append(tuple(chosen))
            return
        for a in options[k]:
            if given.get(a, 0) < max_new and base[a] + given.get(a, 0) < desk.p["max_open"]:
                given[a] = given.get(a, 0) + 1
                go(k + 1, [*chosen, a], given)
                given[a] -= 1

    go(0, [], {})
    return out


SHAPE = TicketWorkflow()

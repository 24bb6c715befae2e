"""Shape calendar_bookings: a studio's front desk: services, their dated slots with a capacity, bookings, a
waitlist and late-cancellation fees (yoga classes, cooking workshops, climbing sessions, dance classes).

Rules that bind (the tools do not enforce them): no booking past capacity, members-only slots, no two
overlapping bookings for one client, a cap on upcoming bookings, a cancellation cutoff after which a cancellation
costs a fee or is refused, and a freed place goes to the waitlist in the variant's order.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
from pathlib import Path

from ..base import (
    Shape,
    Variant,
    asked_version,
    call,
    candidate,
    money,
    people,
    phrase,
    read_db,
    render,
    take_turns,
    write_db,
)

NAME = "calendar_bookings"

SCHEMA = """
CREATE TABLE clients (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, phone TEXT, member INTEGER);
CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT UNIQUE, minutes INTEGER, price REAL);
CREATE TABLE slots (id TEXT PRIMARY KEY, service_id TEXT, day TEXT, starts_at TEXT, ends_at TEXT,
                    capacity INTEGER, members_only INTEGER);
CREATE TABLE bookings (id TEXT PRIMARY KEY, slot_id TEXT, client_id TEXT, status TEXT, price REAL);
CREATE TABLE waitlist (id TEXT PRIMARY KEY, slot_id TEXT, client_id TEXT, position INTEGER);
CREATE TABLE fees (id TEXT PRIMARY KEY, client_id TEXT, booking_id TEXT, amount REAL);
"""


def _v(name, title, slot, slots, client, service, services, times, capacity):
    return {
        "name": name,
        "title": title,
        "slot": slot,
        "slots": slots,
        "client": client,
        "service": service,
        "services": services,
        "times": times,
        "capacity": capacity,
    }


VOCABS = [
    _v(
        "yoga_studio",
        "A yoga studio",
        "class",
        "classes",
        "client",
        "class type",
        [
            ("Vinyasa Flow", 60, 18),
            ("Yin Yoga", 75, 17),
            ("Power Yoga", 60, 19),
            ("Hatha Basics", 60, 15),
            ("Restorative Yoga", 75, 16),
            ("Ashtanga Led Class", 90, 22),
            ("Hot Yoga", 60, 21),
            ("Yoga Nidra", 45, 14),
        ],
        ["07:00", "09:30", "12:15", "17:30", "18:15", "19:00"],
        (3, 6),
    ),
    _v(
        "cooking_school",
        "A cooking school",
        "workshop",
        "workshops",
        "student",
        "course",
        [
            ("Fresh Pasta Workshop", 150, 65),
            ("Knife Skills", 120, 45),
            ("Thai Street Food", 150, 60),
            ("Sourdough Bread", 180, 70),
            ("French Pastry Basics", 180, 75),
            ("Vegan Weeknight Dinners", 120, 50),
            ("Sushi Rolling", 120, 58),
            ("Spanish Tapas", 150, 55),
        ],
        ["10:00", "11:30", "14:00", "17:00", "18:30"],
        (3, 6),
    ),
    _v(
        "climbing_gym",
        "A climbing gym",
        "session",
        "sessions",
        "climber",
        "course",
        [
            ("Intro to Bouldering", 90, 22),
            ("Top-Rope Induction", 120, 30),
            ("Lead Climbing Course", 120, 38),
            ("Technique Clinic", 90, 25),
            ("Fingerboard Training", 60, 15),
            ("Women's Climbing Night", 120, 20),
            ("Movement Masterclass", 90, 28),
            ("Youth Climbing Club", 90, 16),
        ],
        ["08:00", "12:00", "17:00", "18:00", "19:30"],
        (3, 6),
    ),
    _v(
        "dance_school",
        "A dance school",
        "class",
        "classes",
        "dancer",
        "dance style",
        [
            ("Salsa Beginners", 60, 14),
            ("Bachata Improvers", 60, 15),
            ("Contemporary", 75, 16),
            ("Tap Dance", 60, 13),
            ("Ballet Barre", 60, 15),
            ("Lindy Hop", 90, 18),
            ("Hip Hop Basics", 60, 14),
            ("Argentine Tango", 90, 19),
        ],
        ["11:00", "18:00", "18:30", "19:15", "20:30"],
        (3, 6),
    ),
]

FMT = "%Y-%m-%d %H:%M"


def rules(v: Variant) -> dict:
    """The variant's policy parameters and its clock (all from the variant alone)."""
    rng = v.rng("rules")
    start = dt.datetime(2025, 3, 3, 9, 0) + dt.timedelta(days=rng.randrange(200))
    return {
        "now": start.strftime(FMT),
        "cutoff": rng.choice([12, 24, 48]),
        "late": rng.choice(["fee", "fee", "refuse"]),
        "late_fee": rng.choice([25, 50, 100]),
        "member_discount": rng.choice([10, 15, 20]),
        "max_active": rng.choice([3, 4, 5]),
        "order": rng.choice(["position", "members_first"]),
    }


def late_rule(p: dict, client: str) -> str:
    if p["late"] == "fee":
        return (
            f"a later cancellation still goes ahead, and the {client} is charged a late fee of {p['late_fee']}% "
            "of the price they paid (charge_late_fee)."
        )
    return f"later cancellations are not allowed: the booking stays, and the {client} is told why."


@functools.lru_cache(maxsize=65536)
def _t(text: str) -> dt.datetime:
    # Cached: the task makers parse the same few hundred slot times tens of thousands of times.
    return dt.datetime.strptime(text, FMT)


def spoken(text: str) -> str:
    """A slot's date as a person says it: "Thursday 12 June"."""
    x = _t(text)
    return f"{x.strftime('%A')} {x.day} {x.strftime('%B')}"


def _digest(tables: dict[str, list[dict]]) -> str:
    """The plan verifier's `kept_digest` of seed rows, computed here from the seed database."""
    h = hashlib.sha256()
    for table in ("bookings", "waitlist", "fees"):
        rows = sorted(json.dumps(list(r.values()), default=str) for r in tables[table])
        h.update(table.encode() + b"\0" + "\n".join(rows).encode() + b"\0")
    return h.hexdigest()


class CalendarBookings(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = rules(v)
        voc = v.vocab
        ctx = {"v": voc, "index": v.index, **p, "late_rule": late_rule(p, voc["client"])}
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        order = (
            "the one who joined it first (the lowest position)"
            if p["order"] == "position"
            else "members before non-members, and among those the one who joined first (the lowest position)"
        )
        return (
            f"You are the front-desk assistant of {voc['title'].lower()}. It is now {p['now']} "
            f"({_t(p['now']).strftime('%A')}). Use the tools to look things up and to act for the "
            f"{voc['client']}s. Policy, which the booking system does not enforce for you: never book a "
            f"{voc['slot']} past its capacity; {voc['slots']} marked members-only are for members only; a "
            f"{voc['client']} may not hold two bookings that overlap in time, nor more than {p['max_active']} "
            f"upcoming bookings at once. Members pay {p['member_discount']}% less than the list price (the booking "
            f"system prices this itself). A cancelled booking is refunded the price paid, less any late fee. "
            f"Cancelling is free until {p['cutoff']} hours before the start; "
            f"{late_rule(p, voc['client'])} When a booked place in a full {voc['slot']} is given up (cancelled or "
            f"moved away), it goes to the waitlist: to {order} among those who could take it under this policy; "
            f"book them into it. Answer questions with submit_answer; after making changes, reply to the "
            f"{voc['client']} without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc = v.vocab
        now = _t(p["now"])
        services = [(f"SV{i + 1:02d}", n, m, float(pr)) for i, (n, m, pr) in enumerate(voc["services"])]
        slots = []
        for d in range(10):
            day = now.date() + dt.timedelta(days=d)
            times = sorted(rng.sample(voc["times"], rng.randint(3, 4)))
            for hm in times:
                start = dt.datetime.combine(day, dt.time(int(hm[:2]), int(hm[3:])))
                if start <= now + dt.timedelta(hours=1):
                    continue
                sv = rng.choice(services)
                end = start + dt.timedelta(minutes=sv[2])
                cap = rng.randint(*voc["capacity"])
                slots.append(
                    (
                        f"SL{len(slots) + 101}",
                        sv[0],
                        start.strftime("%A"),
                        start.strftime(FMT),
                        end.strftime(FMT),
                        cap,
                        int(rng.random() < 0.2),
                    )
                )
        folks = people(v, 40)
        clients = [
            (f"CL{i + 201}", f["name"], f["email"], f["phone"], int(rng.random() < 0.5))
            for i, f in enumerate(folks)
        ]
        w = World(
            {
                "clients": [
                    dict(zip(("id", "name", "email", "phone", "member"), c, strict=True)) for c in clients
                ],
                "services": [dict(zip(("id", "name", "minutes", "price"), s, strict=True)) for s in services],
                "slots": [
                    dict(
                        zip(
                            ("id", "service_id", "day", "starts_at", "ends_at", "capacity", "members_only"),
                            s,
                            strict=True,
                        )
                    )
                    for s in slots
                ],
                "bookings": [],
                "waitlist": [],
                "fees": [],
            },
            p,
            v,
        )
        # Fill the slots in a shuffled order so some end up full, the clients' calendars busy but within policy.
        order = list(w.slots.values())
        rng.shuffle(order)
        for s in order:
            target = s["capacity"] if rng.random() < 0.4 else rng.randint(0, s["capacity"] - 1)
            pool = [c for c in w.clients.values() if w.can_book(c, s)]
            rng.shuffle(pool)
            for c in pool[:target]:
                w.add_booking(c, s)
        waitlist = []
        for s in sorted(w.slots.values(), key=lambda s: s["id"]):
            if w.booked(s) < s["capacity"] or rng.random() < 0.25:
                continue
            others = [c for c in w.clients.values() if c["id"] not in w.roster(s)]
            if s["members_only"]:
                others = [c for c in others if c["member"]]
            for pos, c in enumerate(rng.sample(others, rng.randint(2, 4)), start=1):
                waitlist.append((f"WL{len(waitlist) + 301}", s["id"], c["id"], pos))
        fees = [
            (f"FE{i + 401}", c["id"], f"BK{900 + i}", round(rng.choice(services)[3] * p["late_fee"] / 100, 2))
            for i, c in enumerate(rng.sample(list(w.clients.values()), 4))
        ]
        return {
            "clients": clients,
            "services": services,
            "slots": slots,
            "bookings": [
                (b["id"], b["slot_id"], b["client_id"], b["status"], b["price"]) for b in w.bookings
            ],
            "waitlist": waitlist,
            "fees": fees,
        }

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        w = World(read_db(env_dir), rules(v), v)
        makers = [
            w.book_earliest,
            w.cancel_two,
            w.cancel_promote,
            w.plan_week,
            w.move_later,
            w.user_cancel,
            w.late_fees,
            w.book_asked,
            w.count_open,
            w.cancel_promote,
            w.user_cancel,
            w.plan_week,
        ]
        return take_turns(makers, v, n)

    def harden(self, env_dir: Path, v: Variant, c, reason: str):
        """A booking the prompt spelled out becomes one the user holds: who they are, what and when."""
        return asked_version(c)


class World:
    """The environment's data, indexed, with the policy as functions (for the data maker and the task makers)."""

    def __init__(self, data: dict, p: dict, v: Variant) -> None:
        self.p, self.v, self.voc = p, v, v.vocab
        self.now = _t(p["now"])
        self.clients = {c["id"]: c for c in data["clients"]}
        self.services = {s["id"]: s for s in data["services"]}
        self.slots = {s["id"]: s for s in data["slots"]}
        self.bookings = [dict(b) for b in data["bookings"]]
        self.waitlist = [dict(x) for x in data["waitlist"]]
        self.seed = data
        self.client_word = self.voc["client"]

    # -- the policy ------------------------------------------------------------------------------------
    def active(self, cid: str, bookings=None) -> list[dict]:
        return [
            b
            for b in (self.bookings if bookings is None else bookings)
            if b["client_id"] == cid
            and b["status"] == "booked"
            and _t(self.slots[b["slot_id"]]["starts_at"]) > self.now
        ]

    def roster(self, s: dict, bookings=None) -> set[str]:
        return {
            b["client_id"]
            for b in (self.bookings if bookings is None else bookings)
            if b["slot_id"] == s["id"] and b["status"] == "booked"
        }

    def booked(self, s: dict, bookings=None) -> int:
        return len(self.roster(s, bookings))

    def overlaps(self, a: dict, b: dict) -> bool:
        return a["starts_at"] < b["ends_at"] and b["starts_at"] < a["ends_at"]

    def can_book(self, c: dict, s: dict, bookings=None, moving: str | None = None) -> bool:
        """Whether the policy lets client `c` into slot `s` (`moving`: the booking they give up for it)."""
        mine = [b for b in self.active(c["id"], bookings) if b["id"] != moving]
        return (
            _t(s["starts_at"]) > self.now
            and c["id"] not in self.roster(s, bookings)
            and self.booked(s, bookings) < s["capacity"]
            and (c["member"] or not s["members_only"])
            and len(mine) < self.p["max_active"] + (moving is not None)
            and not any(self.overlaps(self.slots[b["slot_id"]], s) for b in mine)
        )

    def why_not(self, c: dict, s: dict, bookings=None, moving: str | None = None) -> str | None:
        """The rule that keeps `c` out of `s` (None when nothing does)."""
        if self.booked(s, bookings) >= s["capacity"]:
            return "full"
        if s["members_only"] and not c["member"]:
            return "members"
        mine = [b for b in self.active(c["id"], bookings) if b["id"] != moving]
        if any(self.overlaps(self.slots[b["slot_id"]], s) for b in mine):
            return "overlap"
        if len(mine) >= self.p["max_active"] + (moving is not None):
            return "limit"
        return None if self.can_book(c, s, bookings, moving) else "other"

    def price(self, c: dict, s: dict) -> float:
        price = self.services[s["service_id"]]["price"]
        return round(price * (100 - self.p["member_discount"]) / 100, 2) if c["member"] else round(price, 2)

    def add_booking(self, c: dict, s: dict) -> None:
        self.bookings.append(
            {
                "id": f"BK{len(self.bookings) + 1001}",
                "slot_id": s["id"],
                "client_id": c["id"],
                "status": "booked",
                "price": self.price(c, s),
            }
        )

    def late(self, b: dict) -> bool:
        return _t(self.slots[b["slot_id"]]["starts_at"]) - self.now < dt.timedelta(hours=self.p["cutoff"])

    def fee(self, b: dict) -> float:
        return round(b["price"] * self.p["late_fee"] / 100, 2)

    def promoted(self, s: dict, bookings: list[dict]) -> tuple[dict | None, int]:
        """Who takes a freed place of `s` under the waitlist order, and how many ahead of them were passed over
        (a place only frees up in a slot that was full)."""
        queue = sorted((x for x in self.waitlist if x["slot_id"] == s["id"]), key=lambda x: x["position"])
        if self.p["order"] == "members_first":
            queue = sorted(queue, key=lambda x: (not self.clients[x["client_id"]]["member"], x["position"]))
        for x in queue:
            c = self.clients[x["client_id"]]
            if self.can_book(c, s, bookings):
                return c, sum(y["position"] < x["position"] for y in queue)
        return None, 0

    def after_release(self, b: dict, bookings: list[dict]) -> tuple[list, int] | None:
        """The calls a released place of booking `b` needs (book the promoted client), given the bookings after
        the release; None when the slot had a waitlist but no one on it could take the place."""
        s = self.slots[b["slot_id"]]
        if self.booked(s) < s["capacity"] or not any(x["slot_id"] == s["id"] for x in self.waitlist):
            return [], 0
        who, passed = self.promoted(s, bookings)
        if who is None:
            return None
        return [
            call(f"get_{self.voc['slot']}", slot_id=s["id"]),
            call(f"book_{self.voc['slot']}", client_id=who["id"], slot_id=s["id"]),
        ], passed

    # -- helpers for the makers ----------------------------------------------------------------------
    def who(self, c: dict) -> str:
        return f"{c['name']} ({c['email']})"

    def find(self, c: dict) -> list:
        return [call("find_client", email=c["email"])]

    def mine(self, c: dict) -> list:
        return [call("list_bookings", client_id=c["id"])]

    def service_of(self, s: dict) -> dict:
        return self.services[s["service_id"]]

    def label(self, b: dict) -> tuple[str, str]:
        s = self.slots[b["slot_id"]]
        return self.service_of(s)["name"], spoken(s["starts_at"])

    def nameable(self, c: dict, b: dict) -> bool:
        """The client can name booking `b` by its service and day alone."""
        name, day = self.label(b)
        return sum(self.label(x) == (name, day) for x in self.active(c["id"])) == 1

    def list_slots(self, service_id: str | None = None) -> list:
        args = {"service_id": service_id} if service_id else {}
        return [call(f"list_{self.voc['slots']}", **args)]

    def listed_numbers(self, c: dict) -> set:
        """Counts and fields a lister that never reasons could answer with (kept away from count answers)."""
        first = min(self.slots.values(), key=lambda s: (s["starts_at"], s["id"]))
        sv = min(self.services.values(), key=lambda s: s["name"])
        return {
            len(self.slots),
            len(self.services),
            first["capacity"],
            self.booked(first),
            sum(x["slot_id"] == first["id"] for x in self.waitlist),
            sv["minutes"],
            sv["price"],
            sum(b["client_id"] == c["id"] for b in self.bookings),
        }

    def _cand(self, kind, i, **kw):
        rule = kw.pop("rule")
        writes = kw.pop("writes")
        asked = kw.pop("asked", None)
        c = candidate(NAME, kind, i, **kw)
        c.extra.update({"rule": rule, "writes": writes, "planning": kind == "plan_week", "asked": asked})
        return c

    def _asked(self, rng, c: dict, want: str, kind: str, facts: int) -> dict:
        i, text = phrase(
            rng,
            [
                "Hi, it's {{ first }}. I'd like to book {{ a }}, please.",
                "Hello, {{ first }} here. Can you get me into one of your {{ slots }}?",
                "Hi! I'm {{ first }} and I want to sign up for {{ a }}.",
                "Good morning, this is {{ first }}. Could you book something for me?",
            ],
            first=c["name"].split()[0],
            a=("an " if self.voc["slot"][0] in "aeiou" else "a ") + self.voc["slot"],
            slots=self.voc["slots"],
        )
        user = (
            f"You are {c['name']}; your email is {c['email']}. {want} Give each detail only when the assistant "
            "asks for it."
        )
        return {"kind": kind, "phrasing": i, "prompt": text, "user": user, "facts": facts}

    # -- kinds -----------------------------------------------------------------------------------------
    def _earliest(self, rng, want_evening: bool):
        """(client, service, the slot to book, slots passed over, condition) for an earliest-slot booking whose
        first slot in time is ruled out by the policy."""
        pairs = [(c, sv) for c in self.clients.values() for sv in self.services.values()]
        rng.shuffle(pairs)
        for c, sv in pairs:
            if len(self.active(c["id"])) >= self.p["max_active"]:
                continue
            if any(x["client_id"] == c["id"] for x in self.waitlist):
                continue
            slots = sorted(
                (
                    s
                    for s in self.slots.values()
                    if s["service_id"] == sv["id"] and c["id"] not in self.roster(s)
                ),
                key=lambda s: s["starts_at"],
            )
            if want_evening:
                slots = [s for s in slots if s["starts_at"][11:] >= "17:00"]
            ok = [s for s in slots if self.can_book(c, s)]
            if not ok or ok[0] is slots[0]:
                continue
            passed = slots.index(ok[0])
            return c, sv, ok[0], passed
        return None

    def book_earliest(self, rng):
        """Book the earliest slot of a service that the policy lets the client into (the first is ruled out)."""
        evening = rng.random() < 0.4
        found = self._earliest(rng, evening)
        if found is None:
            return None
        c, sv, s, passed = found
        cond = " that starts at 17:00 or later" if evening else ""
        i, text = phrase(
            rng,
            [
                "Hi, this is {{ who }}. Please book me into the earliest {{ service }} {{ slot }}{{ cond }} that I "
                "can still get into.",
                "Could you put me in the next {{ service }} {{ slot }}{{ cond }} that works for me? I'm {{ who }}.",
                "I'd like the soonest {{ service }} {{ slot }}{{ cond }} you can fit me into. {{ who }}",
                "{{ who }} here. Sign me up for the first available {{ service }}{{ cond }}, please.",
            ],
            who=self.who(c),
            service=sv["name"],
            slot=self.voc["slot"],
            cond=cond,
        )
        sol = self.find(c) + self.mine(c) + self.list_slots(sv["id"])
        sol.append(call(f"book_{self.voc['slot']}", client_id=c["id"], slot_id=s["id"]))
        want = f"You want the earliest {sv['name']} {self.voc['slot']}{cond} that you can still get into."
        return self._cand(
            "book_earliest",
            i,
            level=3,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=4 + evening,
            distractors=passed,
            rule=True,
            writes=1,
            asked=self._asked(rng, c, want, "book_asked", 2 + evening),
        )

    def book_asked(self, rng):
        """The same booking, with who, what and when held by the user."""
        made = self.book_earliest(rng)
        if made is None:
            return None
        return asked_version(made)

    def cancel_two(self, rng):
        """Cancel two bookings, one inside the cutoff: the late one costs a fee, or stays (refused)."""
        cids = list(self.clients)
        rng.shuffle(cids)
        for cid in cids:
            c = self.clients[cid]
            mine = [
                b
                for b in self.active(cid)
                if self.nameable(c, b) and self.after_release(b, self.bookings) == ([], 0)
            ]
            late = [b for b in mine if self.late(b)]
            early = [b for b in mine if not self.late(b)]
            if late and early:
                break
        else:
            return None
        two = [rng.choice(late), rng.choice(early)]
        rng.shuffle(two)
        (na, da), (nb, db) = self.label(two[0]), self.label(two[1])
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please cancel my {{ a }} on {{ da }} and my {{ b }} on {{ db }}.",
                "I'm {{ who }} and I can't make two of my bookings: the {{ a }} {{ slot }} on {{ da }} and the "
                "{{ b }} one on {{ db }}. Cancel them both, please.",
                "This is {{ who }}. Something came up, so could you cancel {{ a }} ({{ da }}) and {{ b }} "
                "({{ db }}) for me?",
            ],
            who=self.who(c),
            a=na,
            da=da,
            b=nb,
            db=db,
            slot=self.voc["slot"],
        )
        sol = self.find(c) + self.mine(c)
        for b in two:
            if not self.late(b):
                sol.append(call("cancel_booking", booking_id=b["id"]))
            elif self.p["late"] == "fee":
                sol.append(call("cancel_booking", booking_id=b["id"]))
                sol.append(call("charge_late_fee", booking_id=b["id"], amount=self.fee(b)))
        made = self._cand(
            "cancel_two",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=2,
            distractors=len(self.active(cid)) - 2,
            rule=True,
            writes=sum(x.name != "list_bookings" and x.name != "find_client" for x in sol),
        )
        made.extra["targets"] = [b["id"] for b in two]
        return made

    def _release_case(self, rng, want_waitlist: bool):
        """(client, booking) whose cancellation is free, in a full slot with a waitlist someone can take."""
        cases = []
        for b in self.bookings:
            if b["status"] != "booked" or self.late(b):
                continue
            c = self.clients[b["client_id"]]
            if not self.nameable(c, b):
                continue
            after = [x if x["id"] != b["id"] else {**x, "status": "cancelled"} for x in self.bookings]
            got = self.after_release(b, after)
            if got is None or bool(got[0]) != want_waitlist:
                continue
            cases.append((c, b, got))
        return rng.choice(cases) if cases else None

    def cancel_promote(self, rng):
        """Cancel a booking of a full slot: the place goes to the right person on the waitlist."""
        found = self._release_case(rng, True)
        if found is None:
            return None
        c, b, (calls, passed) = found
        name, day = self.label(b)
        i, text = phrase(
            rng,
            [
                "Hi, I'm {{ who }}. I can't come to {{ name }} on {{ day }} after all; please cancel it.",
                "{{ who }} here. Please take me off the {{ name }} {{ slot }} on {{ day }}.",
                "Could you cancel my place in {{ name }} on {{ day }}? Thanks, {{ who }}",
            ],
            who=self.who(c),
            name=name,
            day=day,
            slot=self.voc["slot"],
        )
        sol = self.find(c) + self.mine(c) + [call("cancel_booking", booking_id=b["id"])] + calls
        waiters = [x for x in self.waitlist if x["slot_id"] == b["slot_id"]]
        sol[-1:-1] = [call("list_bookings", client_id=x["client_id"]) for x in waiters]
        return self._cand(
            "cancel_promote",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=3,
            distractors=len(waiters) - 1 + passed,
            rule=True,
            writes=2,
        )

    def user_cancel(self, rng):
        """The user holds which booking to cancel; the policy adds the fee or the promotion."""
        cases = []
        for b in self.bookings:
            c = self.clients[b["client_id"]]
            if b["status"] != "booked" or _t(self.slots[b["slot_id"]]["starts_at"]) <= self.now:
                continue
            if not self.nameable(c, b):
                continue
            after = [x if x["id"] != b["id"] else {**x, "status": "cancelled"} for x in self.bookings]
            got = self.after_release(b, after)
            if got is None:
                continue
            late = self.late(b)
            if late and self.p["late"] == "refuse":
                continue
            cases.append((c, b, got, late))
        if not cases:
            return None
        c, b, (calls, passed), late = rng.choice(cases)
        if late and calls:
            return None
        name, day = self.label(b)
        i, text = phrase(
            rng,
            [
                "Hi, it's {{ first }}. I need to cancel one of my bookings.",
                "Hello, {{ first }} here. Something came up and I have to cancel a {{ slot }}.",
                "Hi, this is {{ first }}. Can you cancel a booking for me?",
                "{{ first }} here. I won't make it to one of my {{ slots }}; please cancel it.",
            ],
            first=c["name"].split()[0],
            slot=self.voc["slot"],
            slots=self.voc["slots"],
        )
        user = (
            f"You are {c['name']}; your email is {c['email']}. You want to cancel your {name} {self.voc['slot']} on "
            f"{day}. Give each detail only when the assistant asks for it. If a fee applies, accept it."
        )
        sol = self.find(c) + self.mine(c) + [call("cancel_booking", booking_id=b["id"])]
        if late:
            sol.append(call("charge_late_fee", booking_id=b["id"], amount=self.fee(b)))
        sol += calls
        return self._cand(
            "user_cancel",
            i,
            level=3 + bool(calls or late),
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            user_instructions=user,
            user_facts=3,
            constraints=2,
            distractors=len(self.active(c["id"])) - 1 + passed,
            rule=bool(calls or late),
            writes=1 + bool(calls) + late,
        )

    def move_later(self, rng):
        """Move a booking to the earliest later slot of its service the client can take (nearer ones are ruled
        out); the place it frees goes to the waitlist."""
        cases = []
        for b in self.bookings:
            c = self.clients[b["client_id"]]
            if (
                b["status"] != "booked"
                or not self.nameable(c, b)
                or _t(self.slots[b["slot_id"]]["starts_at"]) <= self.now
            ):
                continue
            if any(x["client_id"] == c["id"] for x in self.waitlist):
                continue
            s = self.slots[b["slot_id"]]
            later = sorted(
                (
                    x
                    for x in self.slots.values()
                    if x["service_id"] == s["service_id"] and x["starts_at"] > s["starts_at"]
                ),
                key=lambda x: x["starts_at"],
            )
            ok = [x for x in later if self.can_book(c, x, moving=b["id"])]
            if not ok:
                continue
            after = [x if x["id"] != b["id"] else {**x, "slot_id": ok[0]["id"]} for x in self.bookings]
            got = self.after_release(b, after)
            if got is None:
                continue
            passed = later.index(ok[0])
            if passed or got[0]:
                cases.append((c, b, ok[0], passed, got))
        if not cases:
            return None
        c, b, target, passed, (calls, skipped) = rng.choice(cases)
        name, day = self.label(b)
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I can't do {{ name }} on {{ day }}. Could you move me to the next {{ name }} "
                "{{ slot }} after it that I can get into?",
                "I'm {{ who }}. Please shift my {{ name }} booking on {{ day }} to a later {{ slot }}, the earliest "
                "one that works.",
                "This is {{ who }}: move my {{ day }} {{ name }} to the soonest later {{ slot }} of it, please.",
            ],
            who=self.who(c),
            name=name,
            day=day,
            slot=self.voc["slot"],
        )
        sol = self.find(c) + self.mine(c) + self.list_slots(self.slots[b["slot_id"]]["service_id"])
        sol.append(call("move_booking", booking_id=b["id"], slot_id=target["id"]))
        sol += calls
        return self._cand(
            "move_later",
            i,
            level=4 if calls else 3,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=4,
            distractors=passed + skipped,
            rule=True,
            writes=1 + bool(calls),
        )

    def plan_week(self, rng):
        """Planning: N bookings on different free days, different services, from an hour of the day, within a
        budget; checked by its constraints."""
        until = (self.now + dt.timedelta(days=7)).strftime(FMT)
        tries = [(cid, k, hour) for cid in sorted(self.clients) for k in (2, 3) for hour in (0, 12, 17)]
        rng.shuffle(tries)
        for cid, k, hour in tries[:80]:
            c = self.clients[cid]
            mine = self.active(cid)
            if len(mine) + k > self.p["max_active"] or any(x["client_id"] == cid for x in self.waitlist):
                continue
            busy = {self.slots[b["slot_id"]]["starts_at"][:10] for b in mine}
            pool = [
                s
                for s in self.slots.values()
                if s["starts_at"] < until
                and int(s["starts_at"][11:13]) >= hour
                and s["starts_at"][:10] not in busy
                and self.can_book(c, s)
            ]
            combos = [
                x
                for x in itertools.combinations(sorted(pool, key=lambda s: s["id"]), k)
                if len({s["starts_at"][:10] for s in x}) == k and len({s["service_id"] for s in x}) == k
            ]
            if len(combos) < 4:
                continue
            totals = sorted(round(sum(self.price(c, s) for s in x), 2) for x in combos)
            budget = float(int(totals[len(totals) // 4]) + 1)
            valid = [x for x in combos if sum(self.price(c, s) for s in x) <= budget + 1e-9]
            if 2 <= len(valid) < len(combos):
                break
        else:
            return None
        when = {
            0: "",
            12: ", none starting before noon",
            17: ", all in the evening (starting at 17:00 or later)",
        }[hour]
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please book me {{ k }} {{ slots }} over the next seven days: each a different "
                "{{ service }}, each on a different day and on days I have nothing else booked{{ when }}, and "
                "{{ budget }} at most for all of them together.",
                "I'm {{ who }}. I want to fit {{ k }} {{ slots }} into the coming week{{ when }}. Make them "
                "different {{ services }} on separate days, not on a day I'm already booked, and keep the total at "
                "or under {{ budget }}. Go ahead and book them.",
                "This is {{ who }}. Could you plan and book my week? {{ K }} {{ slots }} in the next seven "
                "days{{ when }}, no two on the same day or of the same {{ service }}, none on days I already have "
                "a booking, and no more than {{ budget }} in total.",
            ],
            who=self.who(c),
            k=["two", "three"][k - 2],
            K=["Two", "Three"][k - 2],
            slots=self.voc["slots"],
            service=self.voc["service"],
            services=self.voc["service"] + "s",
            when=when,
            budget=f"{budget:.0f}",
        )
        sol = (
            self.find(c)
            + self.mine(c)
            + self.list_slots()
            + list(call(f"book_{self.voc['slot']}", client_id=cid, slot_id=s["id"]) for s in valid[0])
        )
        params = {
            "client_id": cid,
            "sessions": k,
            "budget": budget,
            "until": until,
            "earliest_hour": hour,
            "kept": _digest(self.seed),
        }
        return self._cand(
            "plan_week",
            i,
            level=5,
            prompt=text,
            verifier="check_week_plan",
            params=params,
            solution=sol,
            answer="Done.",
            constraints=7 + bool(hour),
            distractors=len(combos) - len(valid),
            rule=True,
            writes=k,
        )

    def late_fees(self, rng):
        """What cancelling every upcoming booking now would cost (only the ones inside the cutoff), or, where
        late cancelling is refused, what cancelling all that still can be would refund."""
        cids = list(self.clients)
        rng.shuffle(cids)
        for cid in cids:
            c = self.clients[cid]
            mine = self.active(cid)
            late = [b for b in mine if self.late(b)]
            if late and len(late) < len(mine) and all(self.nameable(c, b) for b in mine):
                break
        else:
            return None
        if self.p["late"] == "fee":
            value = round(sum(self.fee(b) for b in late), 2)
            naive = round(sum(self.fee(b) for b in mine), 2)
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. If I cancelled every {{ slot }} I have booked right now, how much would I owe "
                    "in late fees?",
                    "{{ who }} here, just asking: what would the late fees come to if I dropped all my upcoming "
                    "bookings today?",
                    "Quick question from {{ who }}: cancelling all my bookings now, what fees would I be charged in "
                    "total?",
                ],
                who=self.who(c),
                slot=self.voc["slot"],
            )
            sol = self.find(c) + self.mine(c) + [call("submit_answer", answer=money(value))]
            return self._cand(
                "late_fees",
                i,
                level=3,
                prompt=text,
                verifier="check_answer",
                params={"expected": value},
                solution=sol,
                guess=money(naive),
                constraints=2,
                distractors=len(mine) - len(late),
                rule=False,
                writes=0,
            )
        value = round(sum(b["price"] for b in mine if not self.late(b)), 2)
        naive = round(sum(b["price"] for b in mine), 2)
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. If I cancelled every booking of mine that I still can, how much would I get back?",
                "{{ who }} here. What would be refunded to me if I called off all the {{ slots }} I'm still allowed "
                "to cancel?",
                "Hi, {{ who }}. Cancelling whatever of my bookings can still be cancelled, what refund would that "
                "come to?",
            ],
            who=self.who(c),
            slots=self.voc["slots"],
        )
        sol = self.find(c) + self.mine(c) + [call("submit_answer", answer=money(value))]
        return self._cand(
            "refund_total",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=money(naive),
            constraints=2,
            distractors=len(late),
            rule=False,
            writes=0,
        )

    def count_open(self, rng):
        """How many evening slots of the coming days the client could still book (full, members-only and
        overlapping ones do not count)."""
        cids = list(self.clients)
        rng.shuffle(cids)
        start = rng.choice(["17:00", "12:00"])
        for cid in cids:
            c = self.clients[cid]
            if len(self.active(cid)) >= self.p["max_active"]:
                continue
            pool = [
                s
                for s in self.slots.values()
                if s["starts_at"][11:] >= start and c["id"] not in self.roster(s)
            ]
            value = sum(self.can_book(c, s) for s in pool)
            if 3 <= value < len(pool) - 1 and value not in self.listed_numbers(c):
                break
        else:
            return None
        when = "in the evening (from 17:00)" if start == "17:00" else "from noon onwards"
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. How many of your upcoming {{ slots }} {{ when }} could I still book?",
                "{{ who }} here. Counting only {{ slots }} that start {{ when }}, how many are still open to me?",
                "How many {{ slots }} {{ when }} on your schedule could I, {{ who }}, still get a place in?",
            ],
            who=self.who(c),
            slots=self.voc["slots"],
            when=when,
        )
        sol = self.find(c) + self.mine(c) + self.list_slots() + [call("submit_answer", answer=str(value))]
        return self._cand(
            "count_open",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=str(max(value + 1, sum(self.booked(s) < s["capacity"] for s in pool))),
            constraints=4,
            distractors=len(pool) - value,
            rule=False,
            writes=0,
        )


SHAPE = CalendarBookings()

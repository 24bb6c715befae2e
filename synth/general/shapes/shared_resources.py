"""Shape shared_resources: shared rooms, instruments, vans or tools reserved for time ranges (a coworking space, a
university lab, a fleet pool, a makerspace).

Rules that bind (the tools do not enforce them): opening hours, a longest reservation, a buffer between
reservations of one resource, a booking horizon, capacity, trainings some resources need, and priority groups: a
higher group may take a lower group's time, which moves the lower reservation to a free resource of the same kind.
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
    people,
    phrase,
    read_db,
    render,
    take_turns,
    write_db,
)

NAME = "shared_resources"
FMT = "%Y-%m-%d %H:%M"
OPENS, CLOSES = 8, 20

SCHEMA = """
CREATE TABLE members (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, grp TEXT);
CREATE TABLE trainings (member_id TEXT, training TEXT);
CREATE TABLE resources (id TEXT PRIMARY KEY, name TEXT UNIQUE, kind TEXT, capacity INTEGER, features TEXT,
                        training TEXT);
CREATE TABLE reservations (id TEXT PRIMARY KEY, resource_id TEXT, member_id TEXT, starts_at TEXT, ends_at TEXT,
                           people INTEGER, status TEXT);
"""


def _r(name, kind, capacity, features, training=""):
    return {"name": name, "kind": kind, "capacity": capacity, "features": features, "training": training}


VOCABS = [
    {
        "name": "coworking_space",
        "title": "A coworking space",
        "thing": "room",
        "things": "rooms",
        "groups": ["resident", "flex member", "day pass"],
        "kinds": ["meeting room", "studio"],
        "party": "team",
        "resources": [
            _r("Atlas Room", "meeting room", 4, ["whiteboard", "screen"]),
            _r("Birch Room", "meeting room", 6, ["whiteboard", "video conferencing"]),
            _r("Cedar Room", "meeting room", 8, ["projector", "whiteboard"]),
            _r("Delta Boardroom", "meeting room", 14, ["projector", "video conferencing"]),
            _r("Elm Room", "meeting room", 6, ["screen", "video conferencing"]),
            _r("Fjord Room", "meeting room", 10, ["projector", "screen"]),
            _r("Granite Room", "meeting room", 4, ["video conferencing", "whiteboard"]),
            _r("Harbour Room", "meeting room", 12, ["projector", "whiteboard", "video conferencing"]),
            _r("Podcast Studio", "studio", 4, ["microphones", "soundproofing"], "studio induction"),
            _r("Photo Studio", "studio", 5, ["lighting rig", "backdrop"], "studio induction"),
            _r("Edit Suite", "studio", 3, ["microphones", "monitor speakers"], "studio induction"),
        ],
    },
    {
        "name": "university_lab",
        "title": "A university core facility",
        "thing": "instrument",
        "things": "instruments",
        "groups": ["faculty", "postdoc", "student"],
        "kinds": ["microscope", "spectrometer", "bench"],
        "party": "group",
        "resources": [
            _r(
                "Zeiss Confocal",
                "microscope",
                2,
                ["live-cell chamber", "405 nm laser"],
                "confocal training",
            ),
            _r(
                "Leica Confocal",
                "microscope",
                2,
                ["405 nm laser", "spectral detector"],
                "confocal training",
            ),
            _r("Widefield Microscope", "microscope", 3, ["live-cell chamber", "colour camera"]),
            _r(
                "Light-Sheet Microscope",
                "microscope",
                2,
                ["live-cell chamber", "spectral detector"],
                "laser safety",
            ),
            _r("Mass Spectrometer", "spectrometer", 2, ["autosampler", "nano LC"], "mass spec training"),
            _r("NMR 400", "spectrometer", 2, ["autosampler", "cryoprobe"], "nmr training"),
            _r("UV-Vis Spectrometer", "spectrometer", 3, ["cuvette holder", "autosampler"]),
            _r("Flow Bench 1", "bench", 4, ["biosafety cabinet", "centrifuge"]),
            _r("Flow Bench 2", "bench", 4, ["biosafety cabinet", "incubator"]),
            _r("Wet Bench 3", "bench", 6, ["fume hood", "centrifuge"]),
            _r("Wet Bench 4", "bench", 5, ["fume hood", "incubator"]),
        ],
    },
    {
        "name": "fleet_pool",
        "title": "A company vehicle pool",
        "thing": "vehicle",
        "things": "vehicles",
        "groups": ["on-call crew", "field staff", "office staff"],
        "kinds": ["van", "car", "minibus"],
        "party": "crew",
        "resources": [
            _r("Transit Van 1", "van", 3, ["roof rack", "tow bar"]),
            _r("Transit Van 2", "van", 3, ["tail lift", "roof rack"], "tail lift training"),
            _r("Sprinter Van", "van", 3, ["tail lift", "racking"], "tail lift training"),
            _r("Vivaro Van", "van", 2, ["racking", "tow bar"]),
            _r("Fiesta Pool Car", "car", 5, ["satnav", "child seat"]),
            _r("Octavia Estate", "car", 5, ["satnav", "tow bar"]),
            _r("Leaf Electric", "car", 4, ["satnav", "charging cable"]),
            _r("Corolla Hybrid", "car", 5, ["satnav", "roof rack"]),
            _r("Minibus 12", "minibus", 12, ["satnav", "wheelchair ramp"], "minibus permit"),
            _r("Minibus 16", "minibus", 16, ["satnav", "luggage trailer"], "minibus permit"),
        ],
    },
    {
        "name": "makerspace",
        "title": "A community makerspace",
        "thing": "machine",
        "things": "machines",
        "groups": ["staff", "keyholder", "member"],
        "kinds": ["laser cutter", "printer", "workshop"],
        "party": "group",
        "resources": [
            _r(
                "Trotec Laser Cutter",
                "laser cutter",
                2,
                ["600 mm bed", "rotary attachment"],
                "laser induction",
            ),
            _r("Glowforge Laser", "laser cutter", 2, ["camera alignment", "air assist"], "laser induction"),
            _r("Prusa Print Farm", "printer", 3, ["multi-material", "enclosure"]),
            _r("Resin Printer Bay", "printer", 2, ["wash station", "enclosure"], "resin safety"),
            _r("Large-Format Printer", "printer", 2, ["multi-material", "heated bed"]),
            _r("Woodshop", "workshop", 6, ["table saw", "dust extraction"], "woodshop induction"),
            _r("Electronics Bench", "workshop", 4, ["soldering station", "oscilloscope"]),
            _r("Textile Corner", "workshop", 5, ["sewing machines", "cutting table"]),
            _r("Metal Shop", "workshop", 4, ["welder", "dust extraction"], "metal shop induction"),
            _r("Craft Room", "workshop", 8, ["cutting table", "soldering station"]),
        ],
    },
]


def rules(v: Variant) -> dict:
    rng = v.rng("rules")
    start = dt.datetime(2025, 3, 3, 7, 30) + dt.timedelta(days=rng.randrange(200))
    return {
        "now": start.strftime(FMT),
        "max_hours": rng.choice([2, 3, 4]),
        "buffer": rng.choice([15, 30]),
        "horizon": rng.choice([4, 5]),
        "opens": OPENS,
        "closes": CLOSES,
    }


@functools.lru_cache(maxsize=65536)
def _t(text: str) -> dt.datetime:
    # Called millions of times on a few hundred distinct strings while tasks are made: strptime is slow.
    return dt.datetime.strptime(text, FMT)


def spoken(day: str) -> str:
    x = dt.date.fromisoformat(day[:10])
    return f"{x.strftime('%A')} {x.day} {x.strftime('%B')}"


def _digest(rows: list[dict]) -> str:
    """The plan verifier's `kept_digest` of the seed reservations."""
    return hashlib.sha256(
        "\n".join(sorted(json.dumps(list(r.values()), default=str) for r in rows)).encode()
    ).hexdigest()


class SharedResources(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = rules(v)
        voc = v.vocab
        ctx = {"v": voc, "index": v.index, **p}
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        g = voc["groups"]
        return (
            f"You are the booking desk assistant of {voc['title'].lower()}. It is now {p['now']} "
            f"({_t(p['now']).strftime('%A')}). Use the tools to look things up and to act for the members. Policy, "
            f"which the booking system does not enforce for you: {voc['things']} can be reserved between "
            f"{OPENS:02d}:00 and {CLOSES:02d}:00, for at most {p['max_hours']} hours at a time, and only up to "
            f"{p['horizon']} days ahead (a reservation must start before {p['horizon']} days from now have passed). "
            f"Two reservations of the same {voc['thing']} need {p['buffer']} minutes between them (one must start "
            f"at least {p['buffer']} minutes after the other ends). The party must fit the {voc['thing']}'s "
            f"capacity, and a {voc['thing']} that names a training may be reserved only by a member who holds it. "
            f"Priority groups, highest first: {g[0]}, {g[1]}, {g[2]}. A member may take time held by a member of a "
            f"lower group: the lower reservation is then moved, same times, to another {voc['thing']} of the same "
            f"kind that is free and fits its party and its holder's trainings, or cancelled when there is none. "
            f"Nobody may take time from their own or a higher group. Answer questions with submit_answer; after "
            f"making changes, reply to the member without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc = v.vocab
        resources = [
            (f"RC{i + 11}", r["name"], r["kind"], r["capacity"], ", ".join(r["features"]), r["training"])
            for i, r in enumerate(voc["resources"])
        ]
        trainings_all = sorted({r[5] for r in resources if r[5]})
        folks = people(v, 30)
        members = [
            (f"MB{i + 101}", f["name"], f["email"], rng.choice(voc["groups"])) for i, f in enumerate(folks)
        ]
        trainings = [(m[0], t) for m in members for t in trainings_all if rng.random() < 0.45]
        w = World(
            {
                "members": [dict(zip(("id", "name", "email", "grp"), m, strict=True)) for m in members],
                "trainings": [{"member_id": a, "training": b} for a, b in trainings],
                "resources": [
                    dict(zip(("id", "name", "kind", "capacity", "features", "training"), r, strict=True))
                    for r in resources
                ],
                "reservations": [],
            },
            p,
            v,
        )
        now = _t(p["now"])
        rows = []
        for day in range(7):
            date = now.date() + dt.timedelta(days=day)
            for r in w.resources.values():
                for _ in range(rng.randint(1, 3)):
                    minutes = 30 * rng.randint(1, 2 * p["max_hours"])
                    start = dt.datetime.combine(date, dt.time(OPENS)) + dt.timedelta(
                        minutes=30 * rng.randint(0, 2 * (CLOSES - OPENS) - minutes // 30)
                    )
                    a, b = start.strftime(FMT), (start + dt.timedelta(minutes=minutes)).strftime(FMT)
                    if w.clash(r["id"], a, b):
                        continue
                    who = [m for m in w.members.values() if w.trained(m, r)]
                    m = rng.choice(who)
                    res = {
                        "id": f"RS{len(w.reservations) + 1001}",
                        "resource_id": r["id"],
                        "member_id": m["id"],
                        "starts_at": a,
                        "ends_at": b,
                        "people": rng.randint(1, r["capacity"]),
                        "status": "active",
                    }
                    w.reservations.append(res)
                    rows.append(tuple(res.values()))
        return {"members": members, "trainings": trainings, "resources": resources, "reservations": rows}

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        w = World(read_db(env_dir), rules(v), v)
        makers = [
            w.reserve_fit,
            w.bump,
            w.event_plan,
            w.reserve_series,
            w.extend_two,
            w.reserve_asked,
            w.longest_block,
            w.bump_asked,
            w.which_free,
            w.extend_cap,
            w.series_asked,
            w.event_plan,
        ]
        return take_turns(makers, v, n)

    def harden(self, env_dir: Path, v: Variant, c, reason: str):
        """A request the prompt spelled out becomes one the user holds (who they are, what, when)."""
        return asked_version(c)


class World:
    """The environment's data, indexed, with the policy as functions."""

    def __init__(self, data: dict, p: dict, v: Variant) -> None:
        self.p, self.v, self.voc = p, v, v.vocab
        self.now = _t(p["now"])
        self.members = {m["id"]: m for m in data["members"]}
        self.held: dict[str, set] = {}
        for t in data["trainings"]:
            self.held.setdefault(t["member_id"], set()).add(t["training"])
        self.resources = {r["id"]: r for r in data["resources"]}
        self.reservations = [dict(r) for r in data["reservations"]]
        self.seed = data["reservations"]
        self.buffer = dt.timedelta(minutes=p["buffer"])
        self._slots: dict[tuple, tuple] = {}

    # -- the policy ------------------------------------------------------------------------------------
    def trained(self, m: dict, r: dict) -> bool:
        return not r["training"] or r["training"] in self.held.get(m["id"], set())

    def clash(self, rid: str, a: str, b: str, skip: str | None = None, rows=None) -> dict | None:
        """The reservation of `rid` that [a, b) comes within the buffer of (skip: the one being changed)."""
        start, end = _t(a), _t(b) + self.buffer
        for x in self.reservations if rows is None else rows:
            if x["resource_id"] != rid or x["status"] != "active" or x["id"] == skip:
                continue
            if start < _t(x["ends_at"]) + self.buffer and _t(x["starts_at"]) < end:
                return x
        return None

    def fits(self, m: dict, r: dict, a: str, b: str, size: int, skip: str | None = None, rows=None) -> bool:
        start, end = _t(a), _t(b)
        return (
            r["capacity"] >= size
            and self.trained(m, r)
            and OPENS <= start.hour
            and (end.hour < CLOSES or (end.hour == CLOSES and end.minute == 0))
            and end.date() == start.date()
            and end - start <= dt.timedelta(hours=self.p["max_hours"])
            and self.in_horizon(a)
            and self.clash(r["id"], a, b, skip, rows) is None
        )

    def in_horizon(self, a: str) -> bool:
        return self.now < _t(a) < self.now + dt.timedelta(days=self.p["horizon"])

    def rank(self, m: dict) -> int:
        return self.voc["groups"].index(m["grp"])

    def day_slots(self, date: str, minutes: int, step: int = 30) -> tuple[tuple[str, str], ...]:
        """Every (start, end) of `minutes` on `date` within opening hours, `step` apart (made once per World:
        the makers ask for the same days again and again)."""
        key = (date, minutes, step)
        if key not in self._slots:
            start = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(OPENS))
            self._slots[key] = tuple(
                (
                    (a := start + dt.timedelta(minutes=k)).strftime(FMT),
                    (a + dt.timedelta(minutes=minutes)).strftime(FMT),
                )
                for k in range(0, (CLOSES - OPENS) * 60 - minutes + 1, step)
            )
        return self._slots[key]

    def dates(self, within: bool = True) -> list[str]:
        days = [(self.now.date() + dt.timedelta(days=d)).isoformat() for d in range(7)]
        return [d for d in days if self.in_horizon(d + " 12:00") == within]

    # -- helpers for the makers --------------------------------------------------------------------------
    def who(self, m: dict) -> str:
        return f"{m['name']} ({m['email']})"

    def find(self, m: dict) -> list:
        return [call("find_member", email=m["email"])]

    def mine(self, m: dict) -> list:
        return [call("list_reservations", member_id=m["id"])]

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.resources.values() if r["kind"] == kind]

    def _cand(self, kind, i, **kw):
        rule, writes, asked = kw.pop("rule"), kw.pop("writes"), kw.pop("asked", None)
        c = candidate(NAME, kind, i, **kw)
        c.extra.update({"rule": rule, "writes": writes, "planning": kind == "event_plan", "asked": asked})
        return c

    def _asked(self, rng, m: dict, want: str, kind: str, facts: int) -> dict:
        i, text = phrase(
            rng,
            [
                "Hi, it's {{ first }}. I need to reserve {{ a }}.",
                "Hello, {{ first }} here. Can you sort out a reservation for me?",
                "Hi! This is {{ first }}; I'd like to book one of the {{ things }}.",
                "{{ first }} here. Could you help me with a booking?",
            ],
            first=m["name"].split()[0],
            a=("an " if self.voc["thing"][0] in "aeiou" else "a ") + self.voc["thing"],
            things=self.voc["things"],
        )
        user = (
            f"You are {m['name']}; your email is {m['email']}. {want} Give each detail only when the assistant "
            "asks for it."
        )
        return {"kind": kind, "phrasing": i, "prompt": text, "user": user, "facts": facts}

    def pickable(self, r: dict, pool: list[dict]) -> bool:
        """Whether a lister that never reasons would pick `r`: first, last, smallest or largest of a listing."""
        for rows in (pool, list(self.resources.values())):
            caps = [q["capacity"] for q in rows]
            if r in (rows[0], rows[-1]) or r["capacity"] in (min(caps), max(caps)):
                return True
        return False

    def sched(self, r: dict, a: str) -> list:
        return [call("get_schedule", resource_id=r["id"], date=a[:10])]

    # -- kinds -----------------------------------------------------------------------------------------
    def reserve_fit(self, rng):
        """Find the one resource of a kind with the capacity and feature asked, free (with the buffer) at the time
        and allowed to the member, and reserve it."""
        kinds = [k for k in self.voc["kinds"] if len(self.of_kind(k)) >= 3]
        for _ in range(40):
            kind = rng.choice(kinds)
            pool = self.of_kind(kind)
            feature = rng.choice(sorted({f for r in pool for f in r["features"].split(", ")}))
            m = rng.choice(list(self.members.values()))
            date = rng.choice(self.dates())
            minutes = 30 * rng.randint(2, 2 * self.p["max_hours"])
            a, b = rng.choice(list(self.day_slots(date, minutes)))
            size = rng.randint(1, max(r["capacity"] for r in pool))
            ok = [r for r in pool if feature in r["features"].split(", ") and self.fits(m, r, a, b, size)]
            bare = [r for r in pool if r["capacity"] >= size and feature in r["features"]]
            if len(ok) == 1 and len(bare) >= 2:
                break
        else:
            return None
        r = ok[0]
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I need {{ a_thing }} for {{ size }} people with {{ feature }} on {{ day }} from "
                "{{ a }} to {{ b }}. Please reserve one that works.",
                "I'm {{ who }}. Could you book a {{ kind }} with {{ feature }} for my {{ party }} of {{ size }}, "
                "{{ day }}, {{ a }} to {{ b }}?",
                "This is {{ who }}: please find and reserve a {{ kind }} that has {{ feature }} and takes {{ size }} "
                "people, {{ day }} {{ a }}-{{ b }}.",
            ],
            who=self.who(m),
            a_thing=("an " if kind[0] in "aeiou" else "a ") + kind,
            kind=kind,
            size=size,
            feature=feature,
            day=spoken(a),
            a=a[11:],
            b=b[11:],
            party=self.voc["party"],
        )
        sol = self.find(m) + [call("list_resources", kind=kind, min_capacity=size)]
        sol += [x for q in bare for x in self.sched(q, a)]
        sol.append(
            call("reserve", member_id=m["id"], resource_id=r["id"], starts_at=a, ends_at=b, people=size)
        )
        want = (
            f"You need {('an ' if kind[0] in 'aeiou' else 'a ') + kind} with {feature} for {size} people on "
            f"{spoken(a)} from {a[11:]} to {b[11:]}."
        )
        return self._cand(
            "reserve_fit",
            i,
            level=3,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=5,
            distractors=len(bare) - 1,
            rule=True,
            writes=1,
            asked=self._asked(rng, m, want, "reserve_asked", 4),
        )

    def reserve_asked(self, rng):
        made = self.reserve_fit(rng)
        return asked_version(made) if made else None

    def bump(self, rng):
        """The member asks for a resource at a time a reservation holds. A lower group's reservation is moved to
        a free resource of the same kind and the member gets the time; otherwise the member gets another free
        resource of the kind."""
        cases = []
        for x in self.reservations:
            r = self.resources[x["resource_id"]]
            if not self.in_horizon(x["starts_at"]):
                continue
            holder = self.members[x["member_id"]]
            for m in self.members.values():
                if m["id"] == holder["id"] or not self.trained(m, r):
                    continue
                a, b = x["starts_at"], x["ends_at"]
                size = rng.randint(1, r["capacity"])
                others = [q for q in self.of_kind(r["kind"]) if q["id"] != r["id"]]
                # the member's request must clash with x alone (nothing else on r in the way)
                rest = [y for y in self.reservations if y["id"] != x["id"]]
                if self.clash(r["id"], a, b, rows=rest) or not self.fits(m, r, a, b, size, rows=rest):
                    continue
                if self.rank(m) < self.rank(holder):
                    moved = [q for q in others if self.fits(holder, q, a, b, x["people"], rows=rest)]
                    if len(moved) == 1:
                        cases.append((m, r, x, a, b, size, "bump", moved[0], len(others) - 1))
                else:
                    alt = [q for q in others if self.fits(m, q, a, b, size)]
                    if len(alt) == 1:
                        cases.append((m, r, x, a, b, size, "other", alt[0], len(others) - 1))
                break
        if not cases:
            return None
        m, r, x, a, b, size, how, q, dist = rng.choice(cases)
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I need the {{ name }} on {{ day }} from {{ a }} to {{ b }} for {{ size }} "
                "{{ people }}. If it really can't be that one, any other {{ kind }} that works will do.",
                "I'm {{ who }}. Please get me {{ name }}, {{ day }}, {{ a }}-{{ b }}, for {{ size }} {{ people }}; "
                "failing that, another {{ kind }} free at that time.",
                "This is {{ who }}. Book {{ name }} for me on {{ day }} between {{ a }} and {{ b }} ({{ size }} "
                "{{ people }}), or whichever other {{ kind }} fits if it's not possible.",
            ],
            who=self.who(m),
            name=r["name"],
            day=spoken(a),
            a=a[11:],
            b=b[11:],
            size=size,
            people="person" if size == 1 else "people",
            kind=r["kind"],
        )
        sol = self.find(m) + [call("list_resources", kind=r["kind"])] + self.sched(r, a) + self.sched(q, a)
        if how == "bump":
            sol.append(
                call(
                    "change_reservation", reservation_id=x["id"], resource_id=q["id"], starts_at=a, ends_at=b
                )
            )
            sol.append(
                call("reserve", member_id=m["id"], resource_id=r["id"], starts_at=a, ends_at=b, people=size)
            )
        else:
            sol.append(
                call("reserve", member_id=m["id"], resource_id=q["id"], starts_at=a, ends_at=b, people=size)
            )
        want = (
            f"You need the {r['name']} on {spoken(a)} from {a[11:]} to {b[11:]} for {size} "
            f"{'person' if size == 1 else 'people'}; if it can't be that one, any other {r['kind']} free then will do."
        )
        return self._cand(
            "bump",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=5,
            distractors=dist,
            rule=True,
            writes=2 if how == "bump" else 1,
            asked=self._asked(rng, m, want, "bump_asked", 4),
        )

    def bump_asked(self, rng):
        made = self.bump(rng)
        return asked_version(made) if made else None

    def reserve_series(self, rng):
        """The same resource and hours on three days: the days the policy allows are reserved, the one that
        clashes (with the buffer) or lies past the horizon is not."""
        m = rng.choice(list(self.members.values()))
        rs = [r for r in self.resources.values() if self.trained(m, r)]
        for _ in range(60):
            r = rng.choice(rs)
            minutes = 30 * rng.randint(2, 2 * self.p["max_hours"])
            date0 = rng.choice(self.dates())
            a0, b0 = rng.choice(list(self.day_slots(date0, minutes)))
            days = [d for d in self.dates() if d >= date0] + self.dates(False)
            if len(days) < 3:
                continue
            picked = sorted(rng.sample(days, 3))
            tries = [(d + " " + a0[11:], d + " " + b0[11:]) for d in picked]
            ok = [t for t in tries if self.fits(m, r, *t, 1)]
            if len(ok) == 2:
                break
        else:
            return None
        size = 1
        days_text = ", ".join(spoken(t[0]) for t in tries[:2]) + " and " + spoken(tries[2][0])
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please reserve {{ name }} for me from {{ a }} to {{ b }} on {{ days }}, "
                "on whichever of those days it can be done.",
                "I'm {{ who }}. I'd like {{ name }}, {{ a }}-{{ b }}, on {{ days }}. Book the days that are "
                "possible.",
                "This is {{ who }}: can you book {{ name }} for me {{ a }} to {{ b }} on {{ days }}? Where a day "
                "doesn't work, just leave it out.",
            ],
            who=self.who(m),
            name=r["name"],
            a=a0[11:],
            b=b0[11:],
            days=days_text,
        )
        sol = self.find(m) + [call("list_resources")] + [x for t in tries for x in self.sched(r, t[0])]
        sol += [
            call("reserve", member_id=m["id"], resource_id=r["id"], starts_at=a, ends_at=b, people=size)
            for a, b in ok
        ]
        want = f"You want {r['name']} from {a0[11:]} to {b0[11:]} on {days_text}, on whichever of those days it can be done, just for you."
        return self._cand(
            "reserve_series",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=4,
            distractors=1,
            rule=True,
            writes=2,
            asked=self._asked(rng, m, want, "series_asked", 3),
        )

    def series_asked(self, rng):
        made = self.reserve_series(rng)
        return asked_version(made) if made else None

    def _extension(self, x: dict, minutes: int) -> str | None:
        """The end `x` would have, `minutes` later, when the policy allows it (None otherwise)."""
        b = (_t(x["ends_at"]) + dt.timedelta(minutes=minutes)).strftime(FMT)
        m, r = self.members[x["member_id"]], self.resources[x["resource_id"]]
        return b if self.fits(m, r, x["starts_at"], b, x["people"], skip=x["id"]) else None

    def _nameable(self, x: dict) -> bool:
        return (
            sum(
                y["member_id"] == x["member_id"]
                and y["resource_id"] == x["resource_id"]
                and y["starts_at"][:10] == x["starts_at"][:10]
                for y in self.reservations
            )
            == 1
        )

    def extend_two(self, rng):
        """Extend two reservations by an hour each: one of them the policy forbids (a clash within the buffer,
        past the longest reservation or closing time)."""
        mine: dict[str, list] = {}
        for x in self.reservations:
            if self.in_horizon(x["starts_at"]) and self._nameable(x):
                mine.setdefault(x["member_id"], []).append(x)
        cases = []
        for mid, xs in mine.items():
            yes = [x for x in xs if self._extension(x, 60)]
            no = [x for x in xs if not self._extension(x, 60)]
            for a, b in itertools.product(yes, no):
                if a["starts_at"][:10] != b["starts_at"][:10]:
                    cases.append((self.members[mid], a, b))
        if not cases:
            return None
        m, good, bad = rng.choice(cases)
        two = sorted([good, bad], key=lambda x: x["starts_at"])
        n1, n2 = (self.resources[x["resource_id"]]["name"] for x in two)
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Could you extend my {{ n1 }} reservation on {{ d1 }} and my {{ n2 }} "
                "reservation on {{ d2 }} by an hour each?",
                "I'm {{ who }}. Please add an hour to the end of both my bookings: {{ n1 }} on {{ d1 }} and "
                "{{ n2 }} on {{ d2 }}.",
                "This is {{ who }}: I need one more hour on {{ n1 }} ({{ d1 }}) and on {{ n2 }} ({{ d2 }}). Can you "
                "stretch both?",
            ],
            who=self.who(m),
            n1=n1,
            d1=spoken(two[0]["starts_at"]),
            n2=n2,
            d2=spoken(two[1]["starts_at"]),
        )
        r = self.resources[good["resource_id"]]
        sol = self.find(m) + self.mine(m) + self.sched(r, good["starts_at"])
        sol += self.sched(self.resources[bad["resource_id"]], bad["starts_at"])
        sol.append(
            call(
                "change_reservation",
                reservation_id=good["id"],
                resource_id=r["id"],
                starts_at=good["starts_at"],
                ends_at=self._extension(good, 60),
            )
        )
        made = self._cand(
            "extend_two",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=4,
            distractors=1,
            rule=True,
            writes=1,
        )
        made.extra["targets"] = [x["id"] for x in two]
        return made

    def extend_cap(self, rng):
        """Extend a reservation as far as asked or as the policy allows, whichever ends first."""
        cases = []
        for x in self.reservations:
            if not self.in_horizon(x["starts_at"]) or not self._nameable(x):
                continue
            # times fall on quarter hours (half-hour reservations, buffers of 15 or 30): so does the latest end
            best = None
            for k in range(1, 4 * self.p["max_hours"] + 1):
                if self._extension(x, 15 * k):
                    best = 15 * k
                else:
                    break
            if best:
                ask = best + 15 * rng.randint(1, 4)
                cases.append((x, best, ask))
        if not cases:
            return None
        x, best, ask = rng.choice(cases)
        m, r = self.members[x["member_id"]], self.resources[x["resource_id"]]
        want_end = (_t(x["ends_at"]) + dt.timedelta(minutes=ask)).strftime(FMT)
        if want_end[:10] != x["ends_at"][:10]:
            return None
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please extend my {{ name }} reservation on {{ day }} to {{ until }}, or as "
                "late as the rules allow if that's too long.",
                "I'm {{ who }}. Can my {{ name }} booking on {{ day }} run until {{ until }}? If not, make it as "
                "long as it can be.",
                "This is {{ who }}: stretch my {{ day }} reservation of {{ name }} to end at {{ until }}, or at the "
                "latest time allowed.",
            ],
            who=self.who(m),
            name=r["name"],
            day=spoken(x["starts_at"]),
            until=want_end[11:],
        )
        sol = self.find(m) + self.mine(m) + self.sched(r, x["starts_at"])
        sol.append(
            call(
                "change_reservation",
                reservation_id=x["id"],
                resource_id=r["id"],
                starts_at=x["starts_at"],
                ends_at=self._extension(x, best),
            )
        )
        return self._cand(
            "extend_cap",
            i,
            level=3,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=4,
            distractors=0,
            rule=True,
            writes=1,
        )

    def event_plan(self, rng):
        """Planning: two or three parts of an event on one day, one after another, each on a resource with the
        capacity and feature it needs, clear of other reservations by the buffer; checked by its constraints."""
        for _ in range(12):
            date = rng.choice(self.dates())
            m = rng.choice(list(self.members.values()))
            k = rng.choice([2, 3])
            window = rng.choice(
                [("09:00", "17:00"), ("10:00", "18:00"), ("08:00", "14:00"), ("12:00", "20:00")]
            )
            parts = []
            for _ in range(k):
                r = rng.choice([q for q in self.resources.values() if self.trained(m, q)])
                parts.append(
                    {
                        "kind": r["kind"],
                        "feature": rng.choice(r["features"].split(", ")),
                        "people": rng.randint(max(1, r["capacity"] // 2), r["capacity"]),
                        "minutes": 30 * rng.randint(2, min(4, 2 * self.p["max_hours"])),
                    }
                )
            plans = self._plans(m, date, parts, window, limit=2)
            if len(plans) >= 2:
                break
        else:
            return None
        names = ["first", "then", "and last"] if k == 3 else ["first", "then"]
        lines = []
        for word, part in zip(names, parts, strict=False):
            hours = part["minutes"] / 60
            length = f"{hours:g} hour{'s' if hours != 1 else ''}"
            lines.append(
                f"{word} {length} on {('an ' if part['kind'][0] in 'aeiou' else 'a ')}{part['kind']} with "
                f"{part['feature']} for {part['people']} {'person' if part['people'] == 1 else 'people'}"
            )
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I'm running a session on {{ day }} between {{ w0 }} and {{ w1 }}: {{ parts }}. "
                "The parts follow one another. Please reserve what's needed.",
                "I'm {{ who }}. Plan and book my {{ day }} for me, all between {{ w0 }} and {{ w1 }}, in this "
                "order: {{ parts }}.",
                "This is {{ who }}. On {{ day }}, from {{ w0 }} to {{ w1 }} at the latest, I need {{ parts }}, one "
                "after the other. Can you set it up?",
            ],
            who=self.who(m),
            day=spoken(date),
            w0=window[0],
            w1=window[1],
            parts="; ".join(lines),
        )
        sol = self.find(m) + [call("list_resources", kind=p["kind"]) for p in parts]
        for (rid, a, b), part in zip(plans[0], parts, strict=True):
            sol.append(
                call(
                    "reserve",
                    member_id=m["id"],
                    resource_id=rid,
                    starts_at=a,
                    ends_at=b,
                    people=part["people"],
                )
            )
        params = {
            "member_id": m["id"],
            "date": date,
            "parts": [
                {"kind": p["kind"], "minutes": p["minutes"], "people": p["people"], "feature": p["feature"]}
                for p in parts
            ],
            "window": list(window),
            "kept": _digest(self.seed),
        }
        return self._cand(
            "event_plan",
            i,
            level=5,
            prompt=text,
            verifier="check_event_plan",
            params=params,
            solution=sol,
            answer="Done.",
            constraints=7,
            distractors=sum(len(self.of_kind(p["kind"])) for p in parts) - k,
            rule=True,
            writes=k,
        )

    def _plans(self, m: dict, date: str, parts: list, window, limit: int) -> list:
        """Up to `limit` plans of an event (depth-first over resources and half-hour starts)."""
        out: list = []

        def place(k: int, after: str, rows: list, chosen: list) -> None:
            if len(out) >= limit:
                return
            if k == len(parts):
                out.append(list(chosen))
                return
            part = parts[k]
            for r in self.of_kind(part["kind"]):
                if part["feature"] not in r["features"].split(", "):
                    continue
                for a, b in self.day_slots(date, part["minutes"]):
                    if a < after or a[11:] < window[0] or b[11:] > window[1]:
                        continue
                    if not self.fits(m, r, a, b, part["people"], rows=rows):
                        continue
                    new = {
                        "id": f"plan{k}",
                        "resource_id": r["id"],
                        "starts_at": a,
                        "ends_at": b,
                        "status": "active",
                    }
                    chosen.append((r["id"], a, b))
                    place(k + 1, b, rows + [new], chosen)
                    chosen.pop()
                    if len(out) >= limit:
                        return

        place(0, "", self.reservations, [])
        return out

    def longest_block(self, rng):
        """The longest reservation a resource still allows on a day, in minutes (the buffer and the longest
        reservation cut it)."""
        for _ in range(40):
            r = rng.choice(list(self.resources.values()))
            date = rng.choice(self.dates())
            # The longest first: the first length with a free slot is the largest one.
            value = next(
                (
                    minutes
                    for minutes in range(60 * self.p["max_hours"] // 15 * 15, 14, -15)
                    if any(
                        _t(a) > self.now and self.clash(r["id"], a, b) is None
                        for a, b in self.day_slots(date, minutes, 15)
                    )
                ),
                0,
            )
            naive = self._gap(r, date)
            if value >= 60 and value != naive and value != 60 * self.p["max_hours"]:
                break
        else:
            return None
        i, text = phrase(
            rng,
            [
                "What is the longest reservation of {{ name }} I could still make on {{ day }}, in minutes?",
                "How many minutes long could a booking of {{ name }} on {{ day }} be at most, given what's "
                "already reserved?",
                "On {{ day }}, how long (in minutes) is the longest slot I could still book on {{ name }}?",
            ],
            name=r["name"],
            day=spoken(date),
        )
        sol = [call("list_resources"), call("get_schedule", resource_id=r["id"], date=date)]
        sol.append(call("submit_answer", answer=str(value)))
        return self._cand(
            "longest_block",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=str(naive),
            constraints=3,
            distractors=0,
            rule=False,
            writes=0,
        )

    def _gap(self, r: dict, date: str) -> int:
        """The longest free gap of the day with no buffer and no cap: the rule-free reading."""
        marks = [f"{date} {OPENS:02d}:00"]
        for x in sorted(
            (x for x in self.reservations if x["resource_id"] == r["id"] and x["starts_at"][:10] == date),
            key=lambda x: x["starts_at"],
        ):
            marks += [x["starts_at"], x["ends_at"]]
        marks.append(f"{date} {CLOSES:02d}:00")
        return max(
            int((_t(b) - _t(a)).total_seconds() // 60) for a, b in zip(marks[::2], marks[1::2], strict=True)
        )

    def which_free(self, rng):
        """Which resource of a kind the member could use at a time for a party (one fits)."""
        for _ in range(40):
            kind = rng.choice(self.voc["kinds"])
            pool = self.of_kind(kind)
            if len(pool) < 3:
                continue
            m = rng.choice(list(self.members.values()))
            date = rng.choice(self.dates())
            minutes = 30 * rng.randint(2, 2 * self.p["max_hours"])
            a, b = rng.choice(list(self.day_slots(date, minutes)))
            size = rng.randint(1, max(r["capacity"] for r in pool))
            ok = [r for r in pool if self.fits(m, r, a, b, size)]
            near = [r for r in pool if r["capacity"] >= size and r not in ok]
            if len(ok) == 1 and near and not self.pickable(ok[0], pool):
                break
        else:
            return None
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. Which {{ kind }} could I reserve on {{ day }} from {{ a }} to {{ b }} for {{ size }} "
                "{{ people }}?",
                "{{ who }} here. For {{ size }} {{ people }} on {{ day }}, {{ a }}-{{ b }}: which {{ kind }} is "
                "open to me?",
                "Which {{ kind }} is still available to me, {{ who }}, on {{ day }} between {{ a }} and {{ b }}, for "
                "a {{ party }} of {{ size }}?",
            ],
            who=self.who(m),
            kind=kind,
            day=spoken(a),
            a=a[11:],
            b=b[11:],
            size=size,
            people="person" if size == 1 else "people",
            party=self.voc["party"],
        )
        sol = self.find(m) + [call("list_resources", kind=kind)] + [x for r in pool for x in self.sched(r, a)]
        sol.append(call("submit_answer", answer=ok[0]["name"]))
        return self._cand(
            "which_free",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": ok[0]["name"], "choices": sorted(r["name"] for r in self.resources.values())},
            solution=sol,
            guess=near[0]["name"],
            constraints=4,
            distractors=len(pool) - 1,
            rule=False,
            writes=0,
        )


SHAPE = SharedResources()

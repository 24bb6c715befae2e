"""Shape itineraries: a timetable of legs between places, journeys with changes, travellers and their bookings.

Rules that bind (the tools do not enforce them): a change of legs needs a minimum connection time; fare classes
differ in what a change costs and what a cancellation refunds; children and seniors travel at a discount by their
age on the day; a booking hit by a cancelled leg moves free of charge to the earliest-arriving valid journey of
that day, or is refunded in full. Trip plans are checked against their constraints, not one expected plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
from pathlib import Path

from ..base import Shape, Variant, a_or_an, call, candidate, money, people, phrase, read_db, render, write_db

SCHEMA = """
CREATE TABLE places (name TEXT PRIMARY KEY);
CREATE TABLE legs (id TEXT PRIMARY KEY, service TEXT, origin TEXT, destination TEXT, date TEXT, departs TEXT,
                   arrives TEXT, base_fare REAL, seats_left INTEGER, status TEXT);
CREATE TABLE travellers (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, phone TEXT, birth_date TEXT);
CREATE TABLE bookings (id TEXT PRIMARY KEY, traveller_id TEXT, fare_class TEXT, passenger TEXT, price REAL,
                       fee REAL, refund REAL, status TEXT);
CREATE TABLE booking_legs (booking_id TEXT, leg_id TEXT, seq INTEGER);
"""

VOCABS = [
    {
        "name": "regional_rail",
        "title": "A regional rail operator",
        "place": "station",
        "places": "stations",
        "vehicle": "train",
        "vehicles": "trains",
        "codes": ["IR", "RE", "IC"],
        "classes": ["Saver", "Standard", "Flex"],
        "minutes": (35, 150),
        "conn": [8, 10, 12, 15],
        "fares": (14, 58),
        "names": [
            "Basel",
            "Bern",
            "Lucerne",
            "Lausanne",
            "Lugano",
            "St. Gallen",
            "Interlaken",
            "Chur",
            "Winterthur",
        ],
    },
    {
        "name": "ferry_line",
        "title": "An island ferry line",
        "place": "port",
        "places": "ports",
        "vehicle": "ferry",
        "vehicles": "ferries",
        "codes": ["BS", "SJ", "AF"],
        "classes": ["Deck", "Economy", "Flexi"],
        "minutes": (60, 240),
        "conn": [30, 40, 45, 60],
        "fares": (22, 75),
        "names": ["Piraeus", "Naxos", "Paros", "Mykonos", "Santorini", "Milos", "Syros", "Tinos", "Ios"],
    },
    {
        "name": "airline",
        "title": "A domestic airline",
        "place": "airport",
        "places": "airports",
        "vehicle": "flight",
        "vehicles": "flights",
        "codes": ["NA", "SK", "PX"],
        "classes": ["Basic", "Main", "Flexible"],
        "minutes": (55, 230),
        "conn": [40, 45, 50, 60],
        "fares": (60, 240),
        "names": [
            "Denver",
            "Chicago",
            "Seattle",
            "Boston",
            "Austin",
            "Atlanta",
            "Phoenix",
            "Portland",
            "Nashville",
        ],
    },
    {
        "name": "intercity_coach",
        "title": "An intercity coach company",
        "place": "coach station",
        "places": "coach stations",
        "vehicle": "coach",
        "vehicles": "coaches",
        "codes": ["NX", "MC", "FL"],
        "classes": ["Saver", "Standard", "Fully Flexible"],
        "minutes": (60, 240),
        "conn": [15, 20, 25, 30],
        "fares": (9, 42),
        "names": [
            "London",
            "Birmingham",
            "Manchester",
            "Leeds",
            "Bristol",
            "Oxford",
            "Cambridge",
            "Cardiff",
            "York",
        ],
    },
]

DAYS = 6


def _params(v: Variant) -> dict:
    rng = v.rng("rules")
    start = dt.date(2025, 6, 2) + dt.timedelta(days=rng.randrange(80))
    return {
        "min_conn": rng.choice(v.vocab["conn"]),
        "classes": list(v.vocab["classes"]),
        "multipliers": dict(
            zip(
                v.vocab["classes"],
                [1.0, rng.choice([1.25, 1.3, 1.4, 1.5]), rng.choice([1.6, 1.75, 1.9])],
                strict=True,
            )
        ),
        "change_fee": rng.choice([10, 15, 20, 25]),
        "std_refund": rng.choice([50, 60, 75, 80]),
        "child_age": rng.choice([12, 14, 16]),
        "child_disc": rng.choice([25, 40, 50]),
        "senior_age": rng.choice([60, 65]),
        "senior_disc": rng.choice([15, 20, 30]),
        "dates": [(start + dt.timedelta(days=i)).isoformat() for i in range(DAYS)],
    }


def _mins(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def _hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def _spoken(d: str) -> str:
    x = dt.date.fromisoformat(d)
    return f"{x.strftime('%A')}, {x.strftime('%B')} {x.day}"


def _clock(hhmm: str) -> str:
    """ "14:05" as people say it: "2:05 pm"."""
    h, m = int(hhmm[:2]), int(hhmm[3:])
    return f"{(h - 1) % 12 + 1}:{m:02d} {'am' if h < 12 else 'pm'}"


def age_on(birth: str, day: str) -> int:
    b, d = dt.date.fromisoformat(birth), dt.date.fromisoformat(day)
    return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


def passenger_type(p: dict, age: int) -> str:
    return "child" if age < p["child_age"] else "senior" if age >= p["senior_age"] else "adult"


def fare(p: dict, base: float, fare_class: str, passenger: str) -> float:
    """What tools.fare computes: the class price rounded, then the discount rounded."""
    disc = {"adult": 0, "child": p["child_disc"], "senior": p["senior_disc"]}[passenger]
    price = round(base * p["multipliers"][fare_class], 2)
    return round(price * (1 - disc / 100), 2)


def journeys(
    legs: list[dict], origin: str, dest: str, date: str, min_conn: int, *, valid: bool = True
) -> list:
    """Every same-day journey (a tuple of legs: direct or one change) from origin to dest on date. `valid` keeps
    only scheduled legs with seats and changes of at least min_conn minutes; without it, any change that leaves
    after the arrival counts (the journeys a careless reading would take)."""
    day = [
        g
        for g in legs
        if g["date"] == date and (not valid or (g["status"] == "scheduled" and g["seats_left"] > 0))
    ]
    out = [(g,) for g in day if g["origin"] == origin and g["destination"] == dest]
    gap = min_conn if valid else 1
    for a in day:
        if a["origin"] != origin or a["destination"] == dest:
            continue
        for b in day:
            if b["origin"] == a["destination"] and b["destination"] == dest:
                if _mins(b["departs"]) - _mins(a["arrives"]) >= gap:
                    out.append((a, b))
    return out


def _ids(j: tuple) -> list[str]:
    return [g["id"] for g in j]


def rows_digest(rows: list[dict]) -> str:
    """verify.rows_digest over rows read here (dicts in column order)."""
    return hashlib.sha256("\n".join(sorted(json.dumps(list(r.values())) for r in rows)).encode()).hexdigest()


def trip_plans(w: _World, spec: dict, limit: int = 200) -> list[tuple[float, list[tuple]]]:
    """Valid plans of a trip (total, journeys in order), cheapest first, at most `limit` (a small brute force:
    each order of the visits, each set of travel days, each valid journey per day)."""
    p, legs = w.p, w.legs
    dates = [d for d in p["dates"] if spec["first"] <= d <= spec["last"]]
    best: dict[tuple, list[tuple[float, tuple]]] = {}

    def options(o, d, day):
        key = (o, d, day)
        if key not in best:
            js = [
                j
                for j in journeys(legs, o, d, day, p["min_conn"])
                if _mins(j[-1]["arrives"]) <= _mins(spec["latest"])
            ]
            priced = [
                (round(sum(fare(p, g["base_fare"], spec["fare_class"], spec["passenger"]) for g in j), 2), j)
                for j in js
            ]
            best[key] = sorted(priced, key=lambda x: (x[0], _ids(x[1])))
        return best[key]

    out = []
    for order in itertools.permutations(spec["visits"]):
        stops = [spec["home"], *order, spec["home"]]
        for days in itertools.combinations(dates, len(stops) - 1):
            gaps = [
                (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days
                for a, b in itertools.pairwise(days)
            ]
            if any(g < spec["min_nights"] for g in gaps):
                continue
            opts = [options(stops[i], stops[i + 1], days[i]) for i in range(len(days))]
            if any(not o for o in opts):
                continue
            for combo in itertools.product(*[o[:4] for o in opts]):
                total = round(sum(c[0] for c in combo), 2)
                if total <= spec["budget"] + 1e-9:
                    out.append((total, [c[1] for c in combo]))
    out.sort(key=lambda x: (x[0], [_ids(j) for j in x[1]]))
    return out[:limit]


def cheapest_trip(w: _World, spec: dict) -> float | None:
    plans = trip_plans(w, {**spec, "budget": 1e9}, limit=1)
    return plans[0][0] if plans else None


def _about(subject: str, c):
    """Mark what a candidate is about, so no two of a kind are about the same thing."""
    if c is not None:
        c.extra = {**c.extra, "subject": subject}
    return c


def spread(makers: list, n: int, v: Variant) -> list:
    """At most n candidates, the kinds taken in turn (each retried with fresh draws before its turn passes), no
    prompt and no (kind, subject) asked twice: the kinds stay balanced however often one of them finds nothing."""
    out, seen, per_kind = [], set(), {}
    cap = max(2, n // 4)  # no kind may dominate the environment's tasks
    for k in range(n * 3):
        if len(out) >= n:
            break
        maker = makers[k % len(makers)]
        if per_kind.get(maker, 0) >= cap:
            continue
        for attempt in range(12):
            made = maker(v.rng("task", k, attempt))
            if made is None:
                continue
            key = (made.template.split("/")[2], made.extra.get("subject", made.prompt[0]))
            if made.prompt[0] in seen or key in seen:
                continue
            seen |= {made.prompt[0], key}
            per_kind[maker] = per_kind.get(maker, 0) + 1
            out.append(made)
            break
    return out


class Itineraries(Shape):
    NAME = "itineraries"
    VOCABS = VOCABS

    # -- the environment -------------------------------------------------------------------------------
    def build(self, out: Path, v: Variant) -> str:
        p = _params(v)
        ctx = {"v": v.vocab, "index": v.index, **p}
        (out / "tools.py").write_text(render(self.NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(self.NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        voc, c = v.vocab, p["classes"]
        return (
            f"You are the booking assistant of {voc['title'].lower()}. The timetable runs from {p['dates'][0]} to "
            f"{p['dates'][-1]}; dates in tools are YYYY-MM-DD. Use the tools to look things up and to act for the "
            "traveller. Policy, which the tools do not enforce for you: a journey with a change needs at least "
            f"{p['min_conn']} minutes between arriving and leaving the {voc['place']}, on scheduled legs with seats "
            f"left. Fares per leg are the listed class fare; children under {p['child_age']} travel at "
            f"{p['child_disc']}% off and seniors aged {p['senior_age']} or over at {p['senior_disc']}% off, by "
            f"their age on the day of travel (book them as passenger child or senior). {c[0]} bookings cannot be "
            f"changed and refund nothing when cancelled; {c[1]} bookings can be changed for a fee of "
            f"{p['change_fee']} and refund {p['std_refund']}% of the price when cancelled; {c[2]} bookings change "
            "for free and refund the full price. When a leg is cancelled by us, each booking on it is moved free "
            "of charge (fee 0, whatever its class) to the valid journey between the same two "
            f"{voc['places']} on the same day that leaves no earlier than the booked one and arrives first; if there "
            "is none, the booking is cancelled with a full refund. A same-day journey is one booking. Answer "
            "questions with submit_answer; after making changes, reply to the user without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc = v.vocab
        names = rng.sample(voc["names"], 7)
        hub = names[0]
        edges = {(hub, x) for x in names[1:]}
        others = [(a, b) for a, b in itertools.combinations(names[1:], 2)]
        edges |= set(rng.sample(others, 5))
        legs = []
        for a, b in sorted(edges):
            span = rng.randint(*voc["minutes"])
            base = rng.randint(*voc["fares"])
            for o, d in ((a, b), (b, a)):
                for _ in range(rng.choice([2, 3])):
                    service = f"{rng.choice(voc['codes'])} {rng.randint(100, 989)}"
                    dep = rng.randrange(6 * 12, 19 * 12) * 5
                    dur = span + rng.choice([-10, -5, 0, 0, 5, 10, 15])
                    for date in p["dates"]:
                        legs.append(
                            {
                                "id": "",
                                "service": service,
                                "origin": o,
                                "destination": d,
                                "date": date,
                                "departs": _hhmm(dep),
                                "arrives": _hhmm(dep + dur),
                                "base_fare": float(round(base * rng.choice([0.8, 0.9, 1.0, 1.0, 1.15, 1.3]))),
                                "seats_left": rng.choice([0, 2, 5, 9, 14, 20, 31]),
                                "status": "scheduled",
                            }
                        )
        legs.sort(key=lambda g: (g["date"], g["departs"], g["origin"], g["destination"]))
        for i, g in enumerate(legs):
            g["id"] = f"L{i + 1:03d}"
        folks = people(v, 26)
        travellers = []
        first = dt.date.fromisoformat(p["dates"][0])
        for i, f in enumerate(folks):
            band = i % 4
            age = (
                rng.randint(6, p["child_age"] - 2)
                if band == 0
                else rng.randint(p["senior_age"] + 1, 84)
                if band == 1
                else rng.randint(20, p["senior_age"] - 3)
            )
            birth = first - dt.timedelta(days=365 * age + rng.randint(30, 300))
            travellers.append((f"T{i + 1:02d}", f["name"], f["email"], f["phone"], birth.isoformat()))
        w = _World({"legs": legs, "bookings": [], "booking_legs": [], "travellers": [], "places": []}, p, v)
        bookings, blegs = [], []
        for t in travellers:
            for _ in range(rng.randint(2, 4)):
                date = rng.choice(p["dates"])
                o, d = rng.sample(names, 2)
                js = journeys(legs, o, d, date, p["min_conn"])
                if not js:
                    continue
                j = rng.choice(js)
                cls = rng.choice(p["classes"])
                kind = passenger_type(p, age_on(t[4], date))
                price = round(sum(fare(p, g["base_fare"], cls, kind) for g in j), 2)
                bid = f"B{len(bookings) + 1:03d}"
                bookings.append((bid, t[0], cls, kind, price, 0.0, 0.0, "booked"))
                for seq, g in enumerate(j):
                    blegs.append((bid, g["id"], seq))
                    g["seats_left"] = max(g["seats_left"] - 1, 0)
        # The operator cancels some booked legs: the bookings on them need rebooking.
        booked = sorted({x[1] for x in blegs})
        for leg_id in rng.sample(booked, 9):
            w.leg[leg_id]["status"] = "cancelled"
        return {
            "places": [(n,) for n in sorted(names)],
            "legs": [tuple(g.values()) for g in legs],
            "travellers": travellers,
            "bookings": bookings,
            "booking_legs": blegs,
        }

    # -- tasks -----------------------------------------------------------------------------------------
    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        w = _World(read_db(env_dir), _params(v), v)
        makers = [
            w.trip_plan,
            w.rebook_cancelled,
            w.cancel_pair,
            w.price_return,
            w.change_pair,
            w.cheapest_route,
            w.earliest_service,
        ]
        return spread(makers, n, v)

    def harden(self, env_dir: Path, v: Variant, c, reason: str):
        """A too-easy answer task asked again with the traveller's identity held by the user."""
        if c.user_instructions or c.verifier != "check_answer" or "email" not in c.extra:
            return None
        email, name = c.extra["email"], c.extra["name"]
        text = c.prompt[0].replace(f"{name} ({email})", "a traveller").replace(email, "my email")
        if text == c.prompt[0]:
            return None
        c.prompt = [text + " You'll need my details first."]
        c.user_instructions = f"You are {name}; your email is {email}. Give it when asked."
        c.extra = {**c.extra, "features": {**c.extra["features"], "user_facts": 1}}
        c.template += "/user"
        return c


class _World:
    """The environment's data, indexed for the task makers."""

    def __init__(self, data: dict, p: dict, v: Variant) -> None:
        self.p, self.v, self.voc = p, v, v.vocab
        self.legs = data["legs"]
        self.leg = {g["id"]: g for g in self.legs}
        self.travellers = {t["id"]: t for t in data["travellers"]}
        self.bookings = data["bookings"]
        self.blegs: dict[str, list[dict]] = {}
        for x in sorted(data["booking_legs"], key=lambda x: (x["booking_id"], x["seq"])):
            self.blegs.setdefault(x["booking_id"], []).append(self.leg[x["leg_id"]])
        self.places = sorted({g["origin"] for g in self.legs})
        self.data = data

    def who(self, t: dict) -> str:
        return f"{t['name']} ({t['email']})"

    def kind(self, t: dict, dates: list[str]) -> str | None:
        """The traveller's passenger type on every one of `dates`, or None when it changes between them."""
        kinds = {passenger_type(self.p, age_on(t["birth_date"], d)) for d in dates}
        return kinds.pop() if len(kinds) == 1 else None

    def find(self, t: dict) -> list:
        return [call("find_traveller", email=t["email"]), call("list_bookings", traveller_id=t["id"])]

    def active(self, tid: str) -> list[dict]:
        return [b for b in self.bookings if b["traveller_id"] == tid and b["status"] == "booked"]

    def trip_of(self, b: dict) -> tuple[str, str, str]:
        legs = self.blegs[b["id"]]
        return legs[0]["origin"], legs[-1]["destination"], legs[0]["date"]

    def unique_trip(self, b: dict) -> bool:
        o, d, day = self.trip_of(b)
        return sum(1 for x in self.active(b["traveller_id"]) if self.trip_of(x)[1:] == (d, day)) == 1

    def cost(self, j: tuple, cls: str, kind: str) -> float:
        return round(sum(fare(self.p, g["base_fare"], cls, kind) for g in j), 2)

    def vehicle(self, n: int = 1) -> str:
        return self.voc["vehicle"] if n == 1 else self.voc["vehicles"]

    # kinds -----------------------------------------------------------------------------------------------
    def trip_plan(self, rng):
        """Planning: a round trip with stays in two or three places, budget, dates, arrival window, nights."""
        p = self.p
        t = self.travellers[rng.choice(sorted(self.travellers))]
        n_visits = rng.choice([2, 2, 3])
        home = rng.choice(self.places)
        visits = rng.sample([x for x in self.places if x != home], n_visits)
        span = rng.randint(n_visits + 1, DAYS) if n_visits == 2 else DAYS
        lo = rng.randint(0, DAYS - span)
        first, last = p["dates"][lo], p["dates"][lo + span - 1]
        kind = self.kind(t, p["dates"][lo : lo + span])
        if kind is None:
            return None
        min_nights = 2 if span - 1 >= 2 * n_visits and rng.random() < 0.5 else 1
        spec = {
            "home": home,
            "visits": visits,
            "first": first,
            "last": last,
            "min_nights": min_nights,
            "latest": rng.choice(["17:00", "18:00", "19:00", "20:00"]),
            "fare_class": rng.choice(p["classes"][:2]),
            "passenger": kind,
        }
        low = cheapest_trip(self, spec)
        if low is None:
            return None
        spec["budget"] = float(math.ceil(low * rng.choice([1.04, 1.08, 1.12]) / 5) * 5)
        plans = trip_plans(self, spec, limit=60)
        if len(plans) < 2:
            return None
        loose = cheapest_trip(self, {**spec, "latest": "23:59", "passenger": "adult"})
        held = rng.random() < 0.6
        words = dict(
            who=self.who(t),
            home=home,
            places=" and ".join([", ".join(visits[:-1]), visits[-1]]),
            first=_spoken(first),
            last=_spoken(last),
            nights="two nights" if min_nights == 2 else "a night",
            latest=_clock(spec["latest"]),
            budget=f"{spec['budget']:.0f}",
            cls=spec["fare_class"],
            vehicles=self.vehicle(2),
        )
        if held:
            i, text = phrase(
                rng,
                [
                    "Hi, I'd like you to plan and book a round trip for me by {{ vehicles }}. I want to stay {{ nights }} "
                    "at least in each of {{ places }}, and I never want to arrive anywhere after {{ latest }}. Book "
                    "{{ cls }} fares.",
                    "Could you put together a trip for me? {{ places }}, {{ nights }} minimum in each, {{ cls }} tickets, "
                    "and every journey has to get in by {{ latest }}.",
                    "I need a little tour booked: stays of {{ nights }} or more in {{ places }}, arriving no later than "
                    "{{ latest }} each day, on {{ cls }} fares. Can you sort it out?",
                ],
                **words,
            )
            instructions = (
                f"You are {t['name']}; your email is {t['email']}. You start from and return to {home}. You can "
                f"leave on {_spoken(first)} at the earliest and must be back home by {_spoken(last)}. The whole "
                f"trip must cost at most {spec['budget']:.0f}. Give each detail only when asked."
            )
        else:
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. Please book me a round trip from {{ home }}: leaving no earlier than {{ first }} and "
                    "back by {{ last }}, with at least {{ nights }} in each of {{ places }}. Every arrival must be by "
                    "{{ latest }}, {{ cls }} fares, and no more than {{ budget }} in total.",
                    "{{ who }} here. Plan and book my trip by {{ vehicle }}: out of {{ home }} on or after {{ first }}, "
                    "home again by {{ last }}, staying {{ nights }} or more in {{ places }}. I don't want to arrive "
                    "anywhere after {{ latest }}, I'll travel {{ cls }}, and my budget is {{ budget }} for the lot.",
                    "Hello, this is {{ who }}. I'd like {{ places }} on one trip starting and ending in {{ home }}, "
                    "between {{ first }} and {{ last }}. Give me {{ nights }} at least in each, get me in by {{ latest }} "
                    "every time, book {{ cls }}, and keep it under {{ budget }} altogether.",
                ],
                vehicle=self.vehicle(),
                **words,
            )
            instructions = None
        before = [b["id"] for b in self.bookings]
        params = {
            "traveller_id": t["id"],
            **{k: spec[k] for k in ("home", "visits", "first", "last", "budget", "min_nights", "latest")},
            "min_conn": p["min_conn"],
            "passenger": kind,
            "fare_class": spec["fare_class"],
            "before": before,
            "untouched": rows_digest(self.bookings),
        }
        _, plan = plans[0]
        sol = [call("find_traveller", email=t["email"])]
        for j in plan:
            for g in j:
                sol.append(
                    call("search_legs", origin=g["origin"], destination=g["destination"], date=g["date"])
                )
        for j in plan:
            sol.append(
                call(
                    "book_itinerary",
                    traveller_id=t["id"],
                    leg_ids=_ids(j),
                    fare_class=spec["fare_class"],
                    passenger=kind,
                )
            )
        return candidate(
            "itineraries",
            "trip_plan",
            i,
            level=5,
            prompt=text,
            verifier="check_trip",
            params=params,
            solution=sol,
            answer="Your trip is booked.",
            user_instructions=instructions,
            constraints=6 + (kind != "adult"),
            distractors=int(loose is not None and loose < low),
            user_facts=4 if held else 0,
        )

    def _rebooking(self, b: dict) -> tuple[list, list]:
        """The calls policy makes for one booking hit by a cancelled leg, and the journeys a careless reading
        would pick over the right one (distractors)."""
        legs = self.blegs[b["id"]]
        o, d, day = legs[0]["origin"], legs[-1]["destination"], legs[0]["date"]
        start = _mins(legs[0]["departs"])
        ok = [
            j for j in journeys(self.legs, o, d, day, self.p["min_conn"]) if _mins(j[0]["departs"]) >= start
        ]
        ok = [j for j in ok if _ids(j) != _ids(legs)]
        raw = [j for j in journeys(self.legs, o, d, day, 1, valid=False) if _mins(j[0]["departs"]) >= start]
        if not ok:
            return [call("cancel_booking", booking_id=b["id"], refund=b["price"])], []
        key = lambda j: (_mins(j[-1]["arrives"]), len(j), -_mins(j[0]["departs"]), _ids(j))  # noqa: E731
        ok.sort(key=key)
        if len(ok) > 1 and _mins(ok[1][-1]["arrives"]) == _mins(ok[0][-1]["arrives"]):
            return None, []  # two journeys arrive together: the policy does not pick one
        best = ok[0]
        worse = [j for j in raw if key(j) < key(best) and _ids(j) != _ids(legs)]
        return [call("change_itinerary", booking_id=b["id"], leg_ids=_ids(best), fee=0)], worse

    def rebook_cancelled(self, rng):
        """Rebook every booking of a traveller hit by a cancelled leg (or refund it when nothing is left)."""
        hit = {}
        for b in self.bookings:
            if b["status"] == "booked" and any(g["status"] == "cancelled" for g in self.blegs[b["id"]]):
                hit.setdefault(b["traveller_id"], []).append(b)
        if not hit:
            return None
        tid = rng.choice(sorted(hit))
        t = self.travellers[tid]
        writes, distractors = [], 0
        for b in hit[tid]:
            calls, worse = self._rebooking(b)
            if calls is None:
                return None
            writes += calls
            distractors += len(worse)
        b0 = hit[tid][0]
        o, d, day = self.trip_of(b0)
        held = rng.random() < 0.6
        if held:
            i, text = phrase(
                rng,
                [
                    "Hi, I got a message that one of my {{ vehicles }} was cancelled. Can you fix my bookings?",
                    "Hello, apparently you cancelled a {{ vehicle }} I was booked on. What happens now? Please sort it out.",
                    "One of my {{ vehicles }} has been cancelled, I'm told. Please rebook me as your rules allow.",
                ],
                vehicle=self.vehicle(),
                vehicles=self.vehicle(2),
            )
            instructions = (
                f"You are {t['name']}; your email is {t['email']}. You were told a {self.vehicle()} of yours from "
                f"{o} to {d} on {_spoken(day)} was cancelled. You want whatever the rules give you. Give your email "
                "only when asked."
            )
        else:
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. My {{ vehicle }} from {{ o }} to {{ d }} on {{ day }} was cancelled. Please rebook "
                    "me, and check whether any other booking of mine is affected too.",
                    "{{ who }} here: you cancelled my {{ o }} to {{ d }} {{ vehicle }} on {{ day }}. Sort out that booking "
                    "and any other of mine hit by cancellations, per your policy.",
                    "Hello, this is {{ who }}. The {{ vehicle }} I booked from {{ o }} to {{ d }} for {{ day }} is "
                    "cancelled. What can you do? Please handle every affected booking of mine.",
                ],
                who=self.who(t),
                o=o,
                d=d,
                day=_spoken(day),
                vehicle=self.vehicle(),
            )
            instructions = None
        sol = self.find(t)
        for b in hit[tid]:
            o2, d2, day2 = self.trip_of(b)
            sol.append(call("search_legs", origin=o2, destination=d2, date=day2))
        sol += writes
        return _about(
            tid,
            candidate(
                "itineraries",
                "rebook_cancelled",
                i,
                level=5 if held else 4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Done.",
                user_instructions=instructions,
                constraints=3,
                distractors=distractors + len(self.active(tid)) - len(hit[tid]),
                user_facts=1 if held else 0,
            ),
        )

    def _clean(self, tid: str) -> list[dict]:
        """A traveller's bookings with every leg scheduled, each the only trip to its place that day."""
        return [
            b
            for b in self.active(tid)
            if all(g["status"] == "scheduled" for g in self.blegs[b["id"]]) and self.unique_trip(b)
        ]

    def cancel_pair(self, rng):
        """Cancel two bookings: the refunds follow the fare classes (one of them usually refunds less)."""
        c0 = self.p["classes"]
        pool = [
            tid for tid in sorted(self.travellers) if len({b["fare_class"] for b in self._clean(tid)}) >= 2
        ]
        if not pool:
            return None
        t = self.travellers[rng.choice(pool)]
        mine = self._clean(t["id"])
        a = rng.choice(mine)
        b = rng.choice([x for x in mine if x["fare_class"] != a["fare_class"]])
        refund = {c0[0]: 0.0, c0[1]: self.p["std_refund"] / 100, c0[2]: 1.0}
        pair = sorted([a, b], key=lambda x: self.trip_of(x)[2])
        trips = [self.trip_of(x) for x in pair]
        held = rng.random() < 0.6
        words = dict(
            who=self.who(t),
            d1=trips[0][1],
            day1=_spoken(trips[0][2]),
            d2=trips[1][1],
            day2=_spoken(trips[1][2]),
            vehicles=self.vehicle(2),
        )
        if held:
            i, text = phrase(
                rng,
                [
                    "Hi, my plans changed and I need to cancel two of my bookings.",
                    "Hello, could you cancel a couple of trips for me?",
                    "I won't be travelling after all on two of my bookings. Please cancel them.",
                ],
            )
            instructions = (
                f"You are {t['name']}; your email is {t['email']}. You want to cancel your trip to {trips[0][1]} on "
                f"{_spoken(trips[0][2])} and your trip to {trips[1][1]} on {_spoken(trips[1][2])}. Give each detail "
                "only when asked."
            )
        else:
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. Please cancel my trip to {{ d1 }} on {{ day1 }} and the one to {{ d2 }} on {{ day2 }}.",
                    "{{ who }} here. I can't make two journeys: {{ d1 }} on {{ day1 }} and {{ d2 }} on {{ day2 }}. "
                    "Cancel both and refund whatever is due.",
                    "Hello, this is {{ who }}. Could you cancel my bookings to {{ d1 }} ({{ day1 }}) and to {{ d2 }} "
                    "({{ day2 }})?",
                ],
                **words,
            )
            instructions = None
        sol = self.find(t) + [
            call("cancel_booking", booking_id=x["id"], refund=round(x["price"] * refund[x["fare_class"]], 2))
            for x in pair
        ]
        return _about(
            str(sorted(x["id"] for x in pair)),
            candidate(
                "itineraries",
                "cancel_pair",
                i,
                level=4 if held else 3,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Both are cancelled.",
                user_instructions=instructions,
                constraints=2,
                distractors=len(self.active(t["id"])) - 2,
                user_facts=3 if held else 0,
            ),
        )

    def change_pair(self, rng):
        """Move two one-leg bookings to the same service a day later: the class and the seats decide each."""
        p, c0 = self.p, self.p["classes"]
        by_key = {(g["service"], g["origin"], g["destination"], g["date"]): g for g in self.legs}

        def later(b):
            g = self.blegs[b["id"]][0]
            nxt = dt.date.fromisoformat(g["date"]) + dt.timedelta(days=1)
            return by_key.get((g["service"], g["origin"], g["destination"], nxt.isoformat()))

        pool = {}
        for tid in sorted(self.travellers):
            mine = [b for b in self._clean(tid) if len(self.blegs[b["id"]]) == 1 and later(b) is not None]
            if len(mine) >= 2:
                pool[tid] = mine
        if not pool:
            return None
        tid = rng.choice(sorted(pool))
        t = self.travellers[tid]
        pair = sorted(rng.sample(pool[tid], 2), key=lambda x: self.trip_of(x)[2])
        writes, refused = [], 0
        for b in pair:
            nxt = later(b)
            if b["fare_class"] == c0[0] or nxt["status"] != "scheduled" or nxt["seats_left"] <= 0:
                refused += 1
                continue
            fee = p["change_fee"] if b["fare_class"] == c0[1] else 0
            writes.append(call("change_itinerary", booking_id=b["id"], leg_ids=[nxt["id"]], fee=fee))
        if not writes or (refused == 0 and rng.random() < 0.5):
            return None
        trips = [self.trip_of(x) for x in pair]
        held = rng.random() < 0.6
        if held:
            i, text = phrase(
                rng,
                [
                    "Hi, I need to push two of my {{ vehicles }} back by a day. Can you help?",
                    "Hello! Could you move a couple of my bookings to the next day?",
                    "Two of my journeys need to shift one day later, same {{ vehicles }}. Please change them.",
                ],
                vehicles=self.vehicle(2),
            )
            instructions = (
                f"You are {t['name']}; your email is {t['email']}. You want your {self.vehicle()} from {trips[0][0]} "
                f"to {trips[0][1]} on {_spoken(trips[0][2])} and the one from {trips[1][0]} to {trips[1][1]} on "
                f"{_spoken(trips[1][2])} moved to the same service one day later. Give each detail only when asked. "
                "If one cannot be moved, keep it as it is."
            )
        else:
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. Please move my {{ o1 }} to {{ d1 }} {{ vehicle }} on {{ day1 }} and my {{ o2 }} to "
                    "{{ d2 }} one on {{ day2 }} to the same services a day later, wherever your rules allow.",
                    "{{ who }} here. Both my {{ vehicles }}, {{ o1 }} to {{ d1 }} on {{ day1 }} and {{ o2 }} to {{ d2 }} on "
                    "{{ day2 }}, need to go one day later on the same service. Change what can be changed.",
                    "Hello, this is {{ who }}. Could you shift my {{ day1 }} {{ vehicle }} from {{ o1 }} to {{ d1 }} and "
                    "my {{ day2 }} one from {{ o2 }} to {{ d2 }} to the following day, same departure? Leave any that "
                    "can't be moved as they are.",
                ],
                who=self.who(t),
                o1=trips[0][0],
                d1=trips[0][1],
                day1=_spoken(trips[0][2]),
                o2=trips[1][0],
                d2=trips[1][1],
                day2=_spoken(trips[1][2]),
                vehicle=self.vehicle(),
                vehicles=self.vehicle(2),
            )
            instructions = None
        sol = self.find(t)
        for b in pair:
            g = self.blegs[b["id"]][0]
            nxt = later(b)
            sol.append(
                call("search_legs", origin=g["origin"], destination=g["destination"], date=nxt["date"])
            )
        sol += writes
        return _about(
            str(sorted(x["id"] for x in pair)),
            candidate(
                "itineraries",
                "change_pair",
                i,
                level=4 if held or refused else 3,
                prompt=text,
                verifier="check_state",
                params={},
                solution=sol,
                answer="Done.",
                user_instructions=instructions,
                constraints=3,
                distractors=refused,
                user_facts=3 if held else 0,
            ),
        )

    def _party(self, rng, t: dict, dates: list[str]):
        """The traveller and up to two companions of given ages: [(label, passenger type)], or None."""
        kind = self.kind(t, dates)
        if kind is None:
            return None
        party = [("me", kind)]
        for _ in range(rng.choice([0, 1, 1, 2])):
            age = rng.choice([rng.randint(4, 17), rng.randint(30, 50), rng.randint(62, 80)])
            if abs(age - self.p["child_age"]) <= 0 or abs(age - self.p["senior_age"]) <= 0:
                return None
            party.append((age, passenger_type(self.p, age)))
        if all(k == "adult" for _, k in party):
            return None
        return party

    def price_return(self, rng):
        """Price a return trip for a small party: the discounts change the number."""
        p = self.p
        t = self.travellers[rng.choice(sorted(self.travellers))]
        a, b = rng.choice(sorted({(g["origin"], g["destination"]) for g in self.legs}))
        d1, d2 = sorted(rng.sample(p["dates"], 2))
        out_legs = [g for g in self.legs if (g["origin"], g["destination"], g["date"]) == (a, b, d1)]
        back_legs = [g for g in self.legs if (g["origin"], g["destination"], g["date"]) == (b, a, d2)]
        out_legs = [g for g in out_legs if g["status"] == "scheduled"]
        back_legs = [g for g in back_legs if g["status"] == "scheduled"]
        if not out_legs or not back_legs:
            return None
        go, back = rng.choice(out_legs), rng.choice(back_legs)
        party = self._party(rng, t, [d1, d2])
        if party is None:
            return None
        cls = rng.choice(p["classes"])
        value = round(sum(fare(p, g["base_fare"], cls, k) for g in (go, back) for _, k in party), 2)
        naive = round(sum(fare(p, g["base_fare"], cls, "adult") for g in (go, back)) * len(party), 2)
        ages = [x for x, _ in party[1:]]
        company = (
            ""
            if not ages
            else f" and my companion, who is {ages[0]}"
            if len(ages) == 1
            else f" and my two companions, aged {ages[0]} and {ages[1]}"
        )
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. What would {{ cls }} tickets cost for me{{ company }}, going from {{ a }} to {{ b }} on "
                "the {{ t1 }} {{ vehicle }} on {{ day1 }} and coming back on the {{ t2 }} on {{ day2 }}?",
                "{{ who }} here. Could you price a return for me{{ company }}: out {{ a }} to {{ b }} on {{ day1 }} "
                "leaving {{ t1 }}, back on {{ day2 }} leaving {{ t2 }}, {{ cls }} class? Just the total, please.",
                "How much is {{ a_cls }} return from {{ a }} to {{ b }} for me{{ company }}? Out on {{ day1 }} at {{ t1 }}, "
                "back on {{ day2 }} at {{ t2 }}. I'm {{ who }}.",
            ],
            who=self.who(t),
            cls=cls,
            a_cls=a_or_an(cls),
            company=company,
            a=a,
            b=b,
            t1=_clock(go["departs"]),
            t2=_clock(back["departs"]),
            day1=_spoken(d1),
            day2=_spoken(d2),
            vehicle=self.vehicle(),
        )
        sol = [
            call("find_traveller", email=t["email"]),
            call("search_legs", origin=a, destination=b, date=d1),
            call("search_legs", origin=b, destination=a, date=d2),
            call("submit_answer", answer=money(value)),
        ]
        return self._with_who(
            candidate(
                "itineraries",
                "price_return",
                i,
                level=3,
                prompt=text,
                verifier="check_answer",
                params={"expected": value},
                solution=sol,
                guess=money(naive),
                constraints=1 + sum(k != "adult" for _, k in party),
                distractors=len(out_legs) + len(back_legs) - 2,
            ),
            t,
        )

    def _with_who(self, c, t: dict):
        c.extra = {**c.extra, "email": t["email"], "name": t["name"]}
        return c

    def cheapest_route(self, rng):
        """The cheapest valid journey's fare for the traveller, arriving by a time: rules rule out cheaper ones."""
        p = self.p
        t = self.travellers[rng.choice(sorted(self.travellers))]
        a, b = rng.sample(self.places, 2)
        day = rng.choice(p["dates"])
        kind = self.kind(t, [day])
        by = rng.choice(["12:00", "14:00", "16:00", "18:00", "20:00"])
        cls = rng.choice(p["classes"])
        ok = [
            j for j in journeys(self.legs, a, b, day, p["min_conn"]) if _mins(j[-1]["arrives"]) <= _mins(by)
        ]
        raw = journeys(self.legs, a, b, day, 1, valid=False)
        if not ok or kind is None:
            return None
        value = min(self.cost(j, cls, kind) for j in ok)
        naive = min(self.cost(j, cls, "adult") for j in raw)
        if abs(value - naive) < 0.01:
            return None
        cheaper = sum(1 for j in raw if self.cost(j, cls, kind) < value)
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. What's the cheapest {{ cls }} fare for me from {{ a }} to {{ b }} on {{ day }} if I "
                "have to be there by {{ by }}? Changes are fine.",
                "{{ who }} here. I need to get from {{ a }} to {{ b }} on {{ day }}, arriving no later than {{ by }}, "
                "in {{ cls }}. What's the lowest price I'd pay?",
                "How little can I, {{ who }}, pay to travel {{ a }} to {{ b }} on {{ day }} in {{ cls }}, arriving by "
                "{{ by }}? A change on the way is OK.",
            ],
            who=self.who(t),
            cls=cls,
            a=a,
            b=b,
            day=_spoken(day),
            by=_clock(by),
        )
        vias = sorted({j[0]["destination"] for j in raw if len(j) == 2})
        sol = [
            call("find_traveller", email=t["email"]),
            call("search_legs", origin=a, destination=b, date=day),
        ]
        for via in vias:
            sol += [
                call("search_legs", origin=a, destination=via, date=day),
                call("search_legs", origin=via, destination=b, date=day),
            ]
        sol.append(call("submit_answer", answer=money(value)))
        return self._with_who(
            candidate(
                "itineraries",
                "cheapest_route",
                i,
                level=4,
                prompt=text,
                verifier="check_answer",
                params={"expected": value},
                solution=sol,
                guess=money(naive),
                constraints=3 + (kind != "adult"),
                distractors=cheaper,
            ),
            t,
        )

    def earliest_service(self, rng):
        """Which service to board first for the earliest valid arrival, leaving no earlier than a time."""
        p = self.p
        a, b = rng.sample(self.places, 2)
        day = rng.choice(p["dates"])
        after = rng.choice(["07:00", "08:30", "10:00", "11:30", "13:00", "15:00"])
        ok = [
            j for j in journeys(self.legs, a, b, day, p["min_conn"]) if _mins(j[0]["departs"]) >= _mins(after)
        ]
        raw = [
            j
            for j in journeys(self.legs, a, b, day, 1, valid=False)
            if _mins(j[0]["departs"]) >= _mins(after)
        ]
        if not ok:
            return None
        key = lambda j: (_mins(j[-1]["arrives"]), -_mins(j[0]["departs"]))  # noqa: E731
        ok.sort(key=key)
        if len(ok) > 1 and key(ok[1])[0] == key(ok[0])[0] and ok[1][0]["service"] != ok[0][0]["service"]:
            return None
        answer = ok[0][0]["service"]
        services = sorted({g["service"] for g in self.legs if g["origin"] == a and g["date"] == day})
        worse = [j for j in raw if key(j) < key(ok[0])]
        first = min(raw, key=lambda j: _mins(j[0]["departs"]))[0]["service"]
        guess = worse[0][0]["service"] if worse else first
        if guess == answer:
            guess = next((s for s in services if s != answer), None)
            if guess is None:
                return None
        i, text = phrase(
            rng,
            [
                "I need to get from {{ a }} to {{ b }} on {{ day }} and can't leave before {{ after }}. Which "
                "{{ vehicle }} should I take first to arrive as early as possible?",
                "Leaving {{ a }} no earlier than {{ after }} on {{ day }}, what's the first {{ vehicle }} I should board "
                "to reach {{ b }} soonest? Give me its service number.",
                "On {{ day }} I'm free from {{ after }} and want to be in {{ b }} as early as I can, starting from "
                "{{ a }}. Which service do I catch first?",
            ],
            a=a,
            b=b,
            day=_spoken(day),
            after=_clock(after),
            vehicle=self.vehicle(),
        )
        vias = sorted({j[0]["destination"] for j in raw if len(j) == 2})
        sol = [call("search_legs", origin=a, destination=b, date=day)]
        for via in vias:
            sol += [
                call("search_legs", origin=a, destination=via, date=day),
                call("search_legs", origin=via, destination=b, date=day),
            ]
        sol.append(call("submit_answer", answer=answer))
        return candidate(
            "itineraries",
            "earliest_service",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": answer, "choices": services},
            solution=sol,
            guess=guess,
            constraints=3,
            distractors=len(worse),
        )


SHAPE = Itineraries()

"""Build the trip-planning reference environment from a seed: an SQLite travel database, the tools, the
verifier, and tasks whose reference solutions (tool calls found by a solver over the database) pass.

    python -m toolgym.synth.reference.trip_planning.build OUT_STORE [--seed 0]
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import sqlite3
from pathlib import Path

from toolgym.envs.spec import ToolCall

from ...family import Candidate, render_prompt
from ..common import main, state_db, write_env

ENV_ID = "trip_planning"
HERE = Path(__file__).resolve().parent
CITIES = [
    ("Lisbon", "Iberia"),
    ("Porto", "Iberia"),
    ("Seville", "Iberia"),
    ("Valencia", "Iberia"),
    ("Lyon", "Rhone"),
    ("Marseille", "Provence"),
    ("Turin", "Piedmont"),
    ("Geneva", "Lake Geneva"),
]
HOTEL_WORDS = [
    "Aurora",
    "Harbor",
    "Grand",
    "Garden",
    "Ivy",
    "Meridian",
    "Summit",
    "Lantern",
    "Cedar",
    "Royal",
]
SIGHTS = [
    "Old Town Walk",
    "Cathedral",
    "Art Museum",
    "Botanical Garden",
    "Castle",
    "Science Center",
    "River Cruise",
    "Market Hall",
    "Opera House",
    "City Tower",
]
CUISINES = ["seafood", "grill", "vegetarian", "bistro", "tapas", "noodles", "pizza", "bakery"]
FOOD_WORDS = [
    "Olive",
    "Saffron",
    "Copper Pot",
    "Blue Door",
    "Fig Tree",
    "Salt & Pepper",
    "Little Oven",
    "Corner Table",
    "Lemon Leaf",
    "Night Owl",
]
DESCRIPTION = (
    "You are a travel-planning assistant. Use the tools to look up cities, hotels, attractions, restaurants, "
    "transport and weather in the travel database, then hand in the plan with submit_result. Only facts you "
    "looked up count."
)
DAY2_RULES = (
    "Day 2 depends on that night's hotel price: at 800 or more, the two meals together cost under 350, both "
    "restaurants are rated at least 4.0 and the afternoon ticket is under 120; from 500 to under 800, at least "
    "one restaurant is rated at least 4.0 and the ticket is under 180; from 200 to under 500, at least one "
    "restaurant is rated at least 3.2."
)


def make_database(path: Path, rng: random.Random) -> dict:
    """Write the travel database; return its contents as Python lists for the solver."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE cities (name TEXT PRIMARY KEY, region TEXT, description TEXT);
        CREATE TABLE hotels (name TEXT PRIMARY KEY, city TEXT, price REAL, rating REAL, address TEXT);
        CREATE TABLE attractions (name TEXT PRIMARY KEY, city TEXT, kind TEXT, ticket_price REAL, rating REAL,
                                  hours TEXT);
        CREATE TABLE restaurants (name TEXT PRIMARY KEY, city TEXT, cuisine TEXT, avg_cost REAL, rating REAL);
        CREATE TABLE transport (from_city TEXT, to_city TEXT, mode TEXT, depart TEXT, hours REAL, price REAL);
        CREATE TABLE weather (city TEXT, date TEXT, condition TEXT, high_c INTEGER, low_c INTEGER,
                              PRIMARY KEY (city, date));
        """
    )
    data: dict = {"hotels": [], "attractions": [], "restaurants": [], "edges": set(), "weather": {}}
    bands = [(120, 199), (200, 499), (200, 499), (500, 799), (500, 799), (800, 1200)]
    for city, region in CITIES:
        db.execute(
            "INSERT INTO cities VALUES (?, ?, ?)", (city, region, f"{city}, a city of the {region} region.")
        )
        for i, (word, (lo, hi)) in enumerate(zip(rng.sample(HOTEL_WORDS, 6), bands, strict=True)):
            row = (
                f"Hotel {word} {city}",
                city,
                float(rng.randint(lo, hi)),
                round(rng.uniform(3.0, 4.9), 1),
                f"{rng.randint(1, 200)} {word} Street",
            )
            db.execute("INSERT INTO hotels VALUES (?, ?, ?, ?, ?)", row)
            data["hotels"].append(dict(zip(("name", "city", "price", "rating"), row[:4], strict=True)))
            del i
        for sight in rng.sample(SIGHTS, 6):
            row = (
                f"{city} {sight}",
                city,
                sight.split()[-1].lower(),
                float(rng.choice([0, 15, 40, 90, 110, 150, 200, 240])),
                round(rng.uniform(3.0, 4.9), 1),
                "09:00-18:00",
            )
            db.execute("INSERT INTO attractions VALUES (?, ?, ?, ?, ?, ?)", row)
            data["attractions"].append(
                {"name": row[0], "city": city, "ticket_price": row[3], "rating": row[4]}
            )
        for j, word in enumerate(rng.sample(FOOD_WORDS, 8)):
            # The first two are good and affordable, so every city can host a luxury day 2.
            cost = float(rng.randint(60, 150)) if j < 2 else float(rng.randint(40, 260))
            rating = round(rng.uniform(4.1, 4.8), 1) if j < 2 else round(rng.uniform(2.8, 4.9), 1)
            row = (f"{word} {city}", city, rng.choice(CUISINES), cost, rating)
            db.execute("INSERT INTO restaurants VALUES (?, ?, ?, ?, ?)", row)
            data["restaurants"].append({"name": row[0], "city": city, "avg_cost": cost, "rating": rating})
    names = [c for c, _ in CITIES]
    pairs = {(names[i], names[(i + 1) % len(names)]) for i in range(len(names))}
    while len(pairs) < len(names) + 5:
        a, b = rng.sample(names, 2)
        pairs.add((a, b))
    for a, b in sorted(pairs):
        for x, y in ((a, b), (b, a)):
            data["edges"].add((x, y))
            for mode in rng.sample(["train", "flight"], rng.randint(1, 2)):
                db.execute(
                    "INSERT INTO transport VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        x,
                        y,
                        mode,
                        f"{rng.randint(6, 20):02d}:{rng.choice(['00', '30'])}",
                        round(rng.uniform(1, 6), 1),
                        float(rng.randint(30, 250)),
                    ),
                )
    start = dt.date(2025, 7, 1)
    for city in names:
        for d in range(16):
            date = (start + dt.timedelta(days=d)).isoformat()
            cond = rng.choices(["sunny", "cloudy", "rain", "storm"], [5, 3, 2, 1])[0]
            high = rng.randint(22, 34)
            db.execute(
                "INSERT INTO weather VALUES (?, ?, ?, ?, ?)",
                (city, date, cond, high, high - rng.randint(6, 12)),
            )
            data["weather"][(city, date)] = cond
    db.commit()
    db.close()
    return data


def _day2_ok(price: float, lunch: dict, dinner: dict, sight: dict) -> bool:
    best = max(lunch["rating"], dinner["rating"])
    if price >= 800:
        return (
            lunch["avg_cost"] + dinner["avg_cost"] < 350
            and min(lunch["rating"], dinner["rating"]) >= 4.0
            and sight["ticket_price"] < 120
        )
    if price >= 500:
        return best >= 4.0 and sight["ticket_price"] < 180
    if price >= 200:
        return best >= 3.2
    return True


def solve(data: dict, params: dict) -> list[dict] | None:
    """The first plan (in a fixed search order) that keeps every rule of `params`, or None."""
    names = [c for c, _ in CITIES]
    dates = params["dates"]
    by_city = {
        k: {c: [r for r in data[k] if r["city"] == c] for c in names}
        for k in ("hotels", "attractions", "restaurants")
    }
    for c2, c3 in itertools.permutations([c for c in names if c != params["start"]], 2):
        cities = [params["start"], c2, c3]
        if (cities[0], c2) not in data["edges"] or (c2, c3) not in data["edges"]:
            continue
        if params.get("avoid_rain") and any(
            data["weather"][(c, d)] in ("rain", "storm") for c, d in zip(cities, dates, strict=True)
        ):
            continue
        plan, total = [], 0.0
        for i, city in enumerate(cities):
            hotels = sorted(by_city["hotels"][city], key=lambda h: (h["price"], h["name"]))
            if i == 1 and params.get("day2_min_hotel_price"):
                hotels = [h for h in hotels if h["price"] >= params["day2_min_hotel_price"]]
            sights = [
                s
                for s in sorted(by_city["attractions"][city], key=lambda s: s["name"])
                if s["rating"] >= (params.get("min_attraction_rating") or 0)
            ]
            rests = sorted(by_city["restaurants"][city], key=lambda r: r["name"])
            day = None
            for h, s, (a, b) in itertools.product(hotels, sights, itertools.permutations(rests, 2)):
                if i != 1 or _day2_ok(h["price"], a, b, s):
                    day = {
                        "time": dates[i],
                        "city": city,
                        "hotel": h["name"],
                        "afternoon_restaurant": a["name"],
                        "afternoon_attraction": s["name"],
                        "evening_restaurant": b["name"],
                    }
                    total += h["price"]
                    break
            if day is None:
                break
            plan.append(day)
        if len(plan) == 3 and total <= (params.get("max_hotel_total") or float("inf")):
            return plan
    return None


def solution_calls(plan: list[dict], params: dict) -> list[ToolCall]:
    """The tool calls of the reference solution: every lookup the plan depends on, then submit_result."""
    calls = [
        ToolCall(name="list_cities"),
        ToolCall(name="list_destinations", arguments={"from_city": params["start"]}),
    ]
    for i, day in enumerate(plan):
        city = day["city"]
        if i > 0:
            calls.append(
                ToolCall(
                    name="search_transport", arguments={"from_city": plan[i - 1]["city"], "to_city": city}
                )
            )
        if params.get("avoid_rain"):
            calls.append(ToolCall(name="get_weather", arguments={"city": city, "date": day["time"]}))
        calls.append(ToolCall(name="list_hotels", arguments={"city": city}))
        calls.append(ToolCall(name="list_attractions", arguments={"city": city}))
        calls.append(ToolCall(name="list_restaurants", arguments={"city": city}))
    calls.append(ToolCall(name="get_hotel", arguments={"name": plan[1]["hotel"]}))
    calls.append(ToolCall(name="submit_result", arguments={"plan": plan}))
    return calls


PROMPT = (
    "Plan a 3-day trip starting in {{ start }} on {{ dates[0] }} (days {{ dates | join(', ') }}). Each day is in a "
    "different city, day 1 in {{ start }}; travel between consecutive days only along a direct train or flight. "
    "Never reuse a hotel, attraction or restaurant. {{ rules }} {{ extra }} Submit with submit_result: a JSON list "
    "with one object per day holding time (the date), city, hotel, afternoon_restaurant, afternoon_attraction and "
    "evening_restaurant."
)
EXTRA = {
    "avoid_rain": "Avoid any city on a day it rains or storms there (check the forecast).",
    "day2_min_hotel_price": 'On day 2 stay in a hotel costing at least {{ "%g" | format(value) }} a night.',
    "max_hotel_total": 'The three hotel nights may cost at most {{ "%g" | format(value) }} in all.',
    "min_attraction_rating": 'Every attraction must be rated at least {{ "%g" | format(value) }}.',
}
"""The sentence each optional rule of a task adds to the prompt (jinja2, `value` the rule's parameter)."""


def prompt(params: dict) -> str:
    extra = [render_prompt(text, value=params[k]) for k, text in EXTRA.items() if params.get(k)]
    text = render_prompt(
        PROMPT, start=params["start"], dates=params["dates"], rules=DAY2_RULES, extra=" ".join(extra)
    )
    return text.replace("  ", " ")


def build(store: str | Path, seed: int = 0, n_tasks: int = 5) -> Path:
    """Write `<store>/trip_planning/` deterministically from `seed`."""
    out = Path(store) / ENV_ID
    db_path = state_db(out)
    data = make_database(db_path, random.Random(seed))
    tasks, i = [], 0
    while len(tasks) < n_tasks and i < 200:
        rng = random.Random(seed * 100_003 + i)
        i += 1
        first = dt.date(2025, 7, 1) + dt.timedelta(days=rng.randint(0, 12))
        level = len(tasks) % 4
        params = {
            "start": rng.choice(CITIES)[0],
            "dates": [(first + dt.timedelta(days=k)).isoformat() for k in range(3)],
            "avoid_rain": level >= 1,
            "day2_min_hotel_price": 800.0 if level >= 2 else None,
            "max_hotel_total": float(rng.choice([1400, 1600, 1800])) if level >= 3 else None,
            "min_attraction_rating": 3.5 if level >= 3 else None,
        }
        plan = solve(data, params)
        if plan is None:
            continue
        params = {k: v for k, v in params.items() if v not in (None, False)}
        tasks.append(
            Candidate(
                template=f"trip_planning/{level}",
                difficulty=1 + level * 2,
                prompt=[prompt(params)],
                verifier="check_trip_plan",
                params=params,
                solution=solution_calls(plan, params),
                answer=None,
            )
        )
    return write_env(
        out, seed, tasks, category="general", domain="trip_planning", description=DESCRIPTION, source_dir=HERE
    )


if __name__ == "__main__":
    main(build, __doc__)

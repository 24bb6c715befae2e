"""Verifiers of the trip-planning environment: the submitted plan must satisfy every rule against the database,
and the call log must show the lookups the plan depends on (no reward for a plan guessed without looking)."""

from __future__ import annotations

import json

KEYS = ("time", "city", "hotel", "afternoon_restaurant", "afternoon_attraction", "evening_restaurant")
RAINY = ("rain", "storm")


def _row(ctx, table: str, name: str):
    return ctx.db.execute(f"SELECT * FROM {table} WHERE name = ?", (name,)).fetchone()


def _day2_rule(hotel_price: float, lunch, dinner, attraction) -> str | None:
    """The price-band rules of day 2 (REFERENCE.md's trip-planning example); the reason it fails, or None."""
    best = max(lunch["rating"], dinner["rating"])
    if hotel_price >= 800:
        if lunch["avg_cost"] + dinner["avg_cost"] >= 350:
            return "day 2 hotel costs >= 800, so both meals together must cost under 350"
        if min(lunch["rating"], dinner["rating"]) < 4.0:
            return "day 2 hotel costs >= 800, so both restaurants must be rated >= 4.0"
        if attraction["ticket_price"] >= 120:
            return "day 2 hotel costs >= 800, so the afternoon ticket must be under 120"
    elif hotel_price >= 500:
        if best < 4.0:
            return "day 2 hotel costs 500-800, so at least one restaurant must be rated >= 4.0"
        if attraction["ticket_price"] >= 180:
            return "day 2 hotel costs 500-800, so the afternoon ticket must be under 180"
    elif hotel_price >= 200 and best < 3.2:
        return "day 2 hotel costs 200-500, so at least one restaurant must be rated >= 3.2"
    return None


def _looked_up(calls: list[dict], city: str, name: str, by_city: tuple[str, ...], by_name: str) -> bool:
    for c in calls:
        args = c.get("arguments") if isinstance(c.get("arguments"), dict) else {}
        if not c.get("ok"):
            continue
        if c["name"] in by_city and str(args.get("city", "")).lower() == city.lower():
            return True
        if c["name"] == by_name and args.get("name") == name:
            return True
    return False


def check_trip_plan(
    ctx,
    answer,
    calls,
    start: str,
    dates: list,
    avoid_rain: bool = False,
    max_hotel_total: float | None = None,
    min_attraction_rating: float | None = None,
    day2_min_hotel_price: float | None = None,
):
    """Reward 1 when the plan keeps every rule and every fact in it was looked up with a tool; else 0."""
    plan = answer
    if isinstance(plan, str):
        try:
            plan = json.loads(plan)
        except ValueError:
            return 0.0, "the answer is not a JSON plan"
    if not isinstance(plan, list) or len(plan) != len(dates) or not all(isinstance(d, dict) for d in plan):
        return 0.0, f"the plan must be a list of {len(dates)} day objects"
    seen: dict[str, set] = {"city": set(), "hotel": set(), "attraction": set(), "restaurant": set()}
    hotel_total = 0.0
    for i, day in enumerate(plan):
        n = i + 1
        if any(not isinstance(day.get(k), str) for k in KEYS):
            return 0.0, f"day {n} must give {', '.join(KEYS)} as strings"
        if day["time"] != dates[i]:
            return 0.0, f"day {n} must be {dates[i]}"
        city = day["city"]
        if i == 0 and city != start:
            return 0.0, f"day 1 must be in the start city {start}"
        hotel = _row(ctx, "hotels", day["hotel"])
        lunch = _row(ctx, "restaurants", day["afternoon_restaurant"])
        dinner = _row(ctx, "restaurants", day["evening_restaurant"])
        sight = _row(ctx, "attractions", day["afternoon_attraction"])
        for what, row in (
            ("hotel", hotel),
            ("afternoon restaurant", lunch),
            ("evening restaurant", dinner),
            ("attraction", sight),
        ):
            if row is None or row["city"] != city:
                return 0.0, f"day {n}: the {what} is not one in {city}"
        for kind, value in (
            ("city", city),
            ("hotel", hotel["name"]),
            ("attraction", sight["name"]),
            ("restaurant", lunch["name"]),
            ("restaurant", dinner["name"]),
        ):
            if value in seen[kind]:
                return 0.0, f"day {n}: {value} repeats a {kind} already used"
            seen[kind].add(value)
        if i > 0:
            prev = plan[i - 1]["city"]
            leg = ctx.db.execute("SELECT 1 FROM transport WHERE from_city = ? AND to_city = ?", (prev, city))
            if leg.fetchone() is None:
                return 0.0, f"there is no direct transport from {prev} to {city}"
            if not any(
                c.get("ok")
                and c["name"] in ("search_transport", "list_destinations")
                and isinstance(c.get("arguments"), dict)
                and str(c["arguments"].get("from_city", "")).lower() == prev.lower()
                for c in calls
            ):
                return 0.0, f"the plan moves from {prev} to {city} without checking the transport"
        if i == 1:
            if day2_min_hotel_price is not None and hotel["price"] < day2_min_hotel_price:
                return 0.0, f"the day 2 hotel must cost at least {day2_min_hotel_price:g}"
            reason = _day2_rule(hotel["price"], lunch, dinner, sight)
            if reason:
                return 0.0, reason
        if avoid_rain:
            w = ctx.db.execute(
                "SELECT condition FROM weather WHERE city = ? AND date = ?", (city, dates[i])
            ).fetchone()
            if w is not None and w["condition"] in RAINY:
                return 0.0, f"day {n}: it rains in {city} on {dates[i]}"
            if not any(
                c.get("ok")
                and c["name"] == "get_weather"
                and isinstance(c.get("arguments"), dict)
                and str(c["arguments"].get("city", "")).lower() == city.lower()
                and c["arguments"].get("date") == dates[i]
                for c in calls
            ):
                return 0.0, f"day {n}: the weather in {city} on {dates[i]} was never checked"
        if min_attraction_rating is not None and sight["rating"] < min_attraction_rating:
            return 0.0, f"day {n}: the attraction is rated below {min_attraction_rating}"
        hotel_total += hotel["price"]
        checks = (
            (("list_hotels", "find_hotels_by_price"), "get_hotel", hotel["name"], "hotel"),
            (
                ("list_restaurants", "find_restaurants_by_rating"),
                "get_restaurant",
                lunch["name"],
                "restaurant",
            ),
            (
                ("list_restaurants", "find_restaurants_by_rating"),
                "get_restaurant",
                dinner["name"],
                "restaurant",
            ),
            (("list_attractions",), "get_attraction", sight["name"], "attraction"),
        )
        for by_city, by_name, name, what in checks:
            if not _looked_up(calls, city, name, by_city, by_name):
                return 0.0, f"day {n}: the {what} {name} was never looked up with a tool"
    if max_hotel_total is not None and hotel_total > max_hotel_total:
        return 0.0, f"the hotels cost {hotel_total:g} in all, over the budget of {max_hotel_total:g}"
    return 1.0, "the plan keeps every rule"

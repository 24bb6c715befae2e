"""Verifiers of the trip-planning environment: the submitted plan must satisfy every rule against the database,
and the call log must show the lookups the plan depends on (no reward for a plan guessed without looking).

Any plan that keeps the rules passes, not one expected plan. Names are read through the shared normalizer
(`toolgym_env.normalize_text`: case, accents, punctuation and spacing do not count), dates in any common
format, the days in any order, and the plan as the submit tool's list, as JSON text (inside prose, an
`<answer>` tag or after `ANSWER:`), or as an object holding it under "plan"."""

from __future__ import annotations

import datetime as dt
import json

from toolgym_env import answer_text, normalize_text

KEYS = ("time", "city", "hotel", "afternoon_restaurant", "afternoon_attraction", "evening_restaurant")
RAINY = ("rain", "storm")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d %B %Y", "%B %d, %Y", "%B %d %Y", "%d %b %Y", "%b %d, %Y")


def _row(ctx, table: str, name: str, city: str | None = None):
    """The row of `table` whose name reads as `name` (in `city` when given), or None."""
    want = normalize_text(name)
    rows = ctx.db.execute(f"SELECT * FROM {table}").fetchall()
    return next(
        (r for r in rows if normalize_text(r["name"]) == want and (city is None or r["city"] == city)), None
    )


def _date(value) -> str | None:
    """An ISO date from a date written in a common format (time of day ignored), or None."""
    text = str(value).strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            pass
    try:
        return dt.datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return None


def _plan(answer):
    """The submitted plan as a list of day objects, or None: a list, an object with "plan", or JSON text."""
    if isinstance(answer, str):
        text = answer_text(answer)
        start, end = text.find("["), text.rfind("]")
        if start < 0 or end < start:
            start, end = text.find("{"), text.rfind("}")
        try:
            answer = json.loads(text[start : end + 1]) if start >= 0 else None
        except ValueError:
            return None
    if isinstance(answer, dict):
        answer = answer.get("plan")
    return answer


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
        if c["name"] in by_city and normalize_text(args.get("city", "")) == normalize_text(city):
            return True
        if c["name"] == by_name and normalize_text(args.get("name", "")) == normalize_text(name):
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
    plan = _plan(answer)
    if not isinstance(plan, list) or len(plan) != len(dates) or not all(isinstance(d, dict) for d in plan):
        return 0.0, f"the plan must be a list of {len(dates)} day objects"
    if any(not isinstance(day.get(k), str) for day in plan for k in KEYS):
        return 0.0, f"every day must give {', '.join(KEYS)} as strings"
    when = {id(day): _date(day["time"]) for day in plan}
    if sorted(d for d in when.values() if d) == sorted(dates):
        plan = sorted(plan, key=lambda day: when[id(day)])  # the days in any order, each dated
    seen: dict[str, set] = {"city": set(), "hotel": set(), "attraction": set(), "restaurant": set()}
    hotel_total = 0.0
    for i, day in enumerate(plan):
        n = i + 1
        if when[id(day)] != dates[i]:
            return 0.0, f"day {n} must be {dates[i]}"
        city_row = _row(ctx, "cities", day["city"])
        if city_row is None:
            return 0.0, f"day {n}: there is no city {day['city']!r}"
        city = city_row["name"]
        if i == 0 and city != start:
            return 0.0, f"day 1 must be in the start city {start}"
        hotel = _row(ctx, "hotels", day["hotel"], city)
        lunch = _row(ctx, "restaurants", day["afternoon_restaurant"], city)
        dinner = _row(ctx, "restaurants", day["evening_restaurant"], city)
        sight = _row(ctx, "attractions", day["afternoon_attraction"], city)
        for what, row in (
            ("hotel", hotel),
            ("afternoon restaurant", lunch),
            ("evening restaurant", dinner),
            ("attraction", sight),
        ):
            if row is None:
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
            prev = _row(ctx, "cities", plan[i - 1]["city"])["name"]
            leg = ctx.db.execute("SELECT 1 FROM transport WHERE from_city = ? AND to_city = ?", (prev, city))
            if leg.fetchone() is None:
                return 0.0, f"there is no direct transport from {prev} to {city}"
            if not any(
                c.get("ok")
                and c["name"] in ("search_transport", "list_destinations")
                and isinstance(c.get("arguments"), dict)
                and normalize_text(c["arguments"].get("from_city", "")) == normalize_text(prev)
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
                and normalize_text(c["arguments"].get("city", "")) == normalize_text(city)
                and _date(c["arguments"].get("date", "")) == dates[i]
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

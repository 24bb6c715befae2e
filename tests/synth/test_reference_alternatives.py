"""Alternative correct episodes of the general reference environments score 1.0 through the real env server (in
this process): trip plans in other formats (names in another case and spacing, dates written out, days out of
order, JSON text in prose or an <answer> tag instead of the submit tool), found through other lookups and with
extra reads, and a second valid plan found by a small solver; order-desk requests done in another order, by
another lookup path, with extra reads. Plans or writes that break a rule still score 0."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import sqlite3

import pytest
from toolgym.envs import load_tasks, replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import ToolCall
from toolgym.synth.reference.order_desk import build as order_desk
from toolgym.synth.reference.trip_planning import build as trip_planning


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    env = trip_planning.build(tmp_path_factory.mktemp("trip"))
    server = LocalEnvServer(env)
    yield env, server, load_tasks(env)
    server.close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    env = order_desk.build(tmp_path_factory.mktemp("desk"))
    server = LocalEnvServer(env)
    yield env, server, load_tasks(env)
    server.close()


def reward(server, t, calls, answer=None) -> float:
    return replay(server, {"id": t.id, "verifier": t.verifier, "params": t.params}, calls, answer)["reward"]


# -- trip planning ------------------------------------------------------------------------------------------------
def _split(t):
    """(lookups, the reference plan) of a trip task."""
    return [c for c in t.solution if c.name != "submit_result"], t.solution[-1].arguments["plan"]


def _submit(plan) -> ToolCall:
    return ToolCall(name="submit_result", arguments={"plan": plan})


def _spoken(iso: str) -> str:
    d = dt.date.fromisoformat(iso)
    return f"{d.strftime('%B')} {d.day}, {d.year}"


def _reformatted(plan):
    """The same plan, written differently: names in other case and spacing, dates spelled out, days reversed."""
    out = []
    for day in plan:
        day = dict(day)
        day["time"] = _spoken(day["time"])
        day["hotel"] = "  " + day["hotel"].upper()
        day["afternoon_restaurant"] = day["afternoon_restaurant"].lower()
        day["city"] = day["city"].lower() + " "
        out.append(day)
    return out[::-1]


def test_trip_plans_in_other_formats_pass(trip):
    _, server, tasks = trip
    for t in tasks:
        lookups, plan = _split(t)
        assert reward(server, t, lookups + [_submit(_reformatted(plan))]) == 1.0, t.id
        text = json.dumps(plan)
        for answer in (
            text,
            f"Here is the plan I put together:\n{text}\nEnjoy the trip!",
            f"<answer>{text}</answer>",
            f"ANSWER: {json.dumps({'plan': plan})}",
        ):
            assert reward(server, t, lookups, answer) == 1.0, (t.id, answer[:40])


def test_trip_plans_found_another_way_pass(trip):
    """Other lookup tools, in another order, with extra reads between them."""
    _, server, tasks = trip
    for t in tasks:
        lookups, plan = _split(t)
        other = [ToolCall(name="get_current_date"), ToolCall(name="list_cities")]
        for call in reversed(lookups):
            args = call.arguments
            if call.name == "list_hotels":
                other.append(ToolCall(name="find_hotels_by_price", arguments={"city": args["city"].upper()}))
            elif call.name == "list_restaurants":
                other.append(
                    ToolCall(
                        name="find_restaurants_by_rating", arguments={"city": args["city"], "min_rating": 0}
                    )
                )
            elif call.name == "list_attractions":
                city = args["city"]
                names = [d["afternoon_attraction"] for d in plan if d["city"] == city]
                other += [ToolCall(name="get_attraction", arguments={"name": n}) for n in names]
                other.append(ToolCall(name="get_city", arguments={"city": city}))
            else:
                other.append(call)
        assert reward(server, t, other + [_submit(plan)]) == 1.0, t.id


def _rows(env, sql, args=()):
    db = sqlite3.connect(env / "state" / "db.sqlite")
    db.row_factory = sqlite3.Row
    out = [dict(r) for r in db.execute(sql, args)]
    db.close()
    return out


def _other_plans(env, t, plan):
    """A small brute-force solver: plans that change only day 3 (hotel, attraction, restaurants) and keep the
    rules that bind day 3: no reuse, the attraction rating floor, the hotel budget."""
    city = plan[2]["city"]
    hotels = _rows(env, "SELECT * FROM hotels WHERE city = ? ORDER BY name", (city,))
    sights = _rows(env, "SELECT * FROM attractions WHERE city = ? ORDER BY name", (city,))
    rests = _rows(env, "SELECT * FROM restaurants WHERE city = ? ORDER BY name", (city,))
    price = {h["name"]: h["price"] for h in _rows(env, "SELECT * FROM hotels")}
    spent = price[plan[0]["hotel"]] + price[plan[1]["hotel"]]
    for h, s, (a, b) in itertools.product(hotels, sights, itertools.permutations(rests, 2)):
        if s["rating"] < (t.params.get("min_attraction_rating") or 0):
            continue
        if spent + h["price"] > (t.params.get("max_hotel_total") or float("inf")):
            continue
        day = {**plan[2], "hotel": h["name"], "afternoon_attraction": s["name"]}
        day.update(afternoon_restaurant=a["name"], evening_restaurant=b["name"])
        if day != plan[2]:
            yield [*plan[:2], day]


def test_a_second_valid_trip_plan_passes_and_broken_ones_fail(trip):
    env, server, tasks = trip
    for t in tasks:
        lookups, plan = _split(t)
        second = next(_other_plans(env, t, plan))
        assert reward(server, t, lookups + [_submit(second)]) == 1.0, t.id
        repeat = [*plan[:2], {**plan[2], "evening_restaurant": plan[2]["afternoon_restaurant"]}]
        assert reward(server, t, lookups + [_submit(repeat)]) == 0.0  # a restaurant used twice
        moved = [*plan[:2], {**plan[2], "time": plan[1]["time"]}]
        assert reward(server, t, lookups + [_submit(moved)]) == 0.0  # two days on one date
        elsewhere = [*plan[:2], {**plan[2], "hotel": plan[0]["hotel"]}]
        assert reward(server, t, lookups + [_submit(elsewhere)]) == 0.0  # a hotel of another city
        if t.params.get("max_hotel_total"):
            city = plan[2]["city"]
            dear = max(_rows(env, "SELECT * FROM hotels WHERE city = ?", (city,)), key=lambda h: h["price"])
            over = [*plan[:2], {**plan[2], "hotel": dear["name"]}]
            price = {h["name"]: h["price"] for h in _rows(env, "SELECT * FROM hotels")}
            if sum(price[d["hotel"]] for d in over) > t.params["max_hotel_total"]:
                assert reward(server, t, lookups + [_submit(over)]) == 0.0  # over the hotel budget


# -- order desk ---------------------------------------------------------------------------------------------------
WRITES = ("place_order", "cancel_order", "change_quantity", "update_order_address")


def test_order_desk_requests_done_another_way_pass(desk):
    """Extra reads first, the direct lookup instead of the listing, and the writes in reverse order."""
    _, server, tasks = desk
    rng = random.Random(0)
    for t in tasks:
        reads = [c for c in t.solution if c.name not in WRITES and c.name != "list_orders"]
        writes = [c for c in t.solution if c.name in WRITES]
        customer = next(c.arguments["customer_id"] for c in t.solution if "customer_id" in c.arguments)
        extra = [
            ToolCall(name="get_current_time"),
            ToolCall(name="get_customer", arguments={"customer_id": customer}),
            ToolCall(name="list_orders", arguments={"customer_id": customer}),
            ToolCall(name="search_products", arguments={"query": rng.choice(["lamp", "mat", "kettle"])}),
        ]
        assert reward(server, t, extra + reads + writes[::-1], "All done.") == 1.0, t.id
        assert reward(server, t, reads + writes, "Your request is complete, anything else?") == 1.0, t.id


def test_order_desk_extra_or_missing_writes_fail(desk):
    _, server, tasks = desk
    for t in tasks:
        writes = [c for c in t.solution if c.name in WRITES]
        reads = [c for c in t.solution if c.name not in WRITES]
        assert reward(server, t, reads, "Done.") == 0.0
        customer = next(c.arguments["customer_id"] for c in t.solution if "customer_id" in c.arguments)
        another = ToolCall(
            name="place_order",
            arguments={"customer_id": customer, "items": [{"product_id": "P001", "quantity": 1}]},
        )
        assert reward(server, t, t.solution + [another], "Done.") == 0.0, t.id
        if len(writes) >= 2:
            assert reward(server, t, reads + writes[:1], "Done.") == 0.0

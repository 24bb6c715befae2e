"""Shape warehouse_inventory: stock of items in dated lots across several warehouses, customers' orders,
reservations, shipments and transfers along listed routes.

Rules that bind (the tools do not enforce them): an order ships from the nearest warehouse that can cover all of
it, else it is split by the variant's rule, else backordered; each warehouse keeps a safety stock that only
priority accounts may draw on; reserved units are spoken for; expired lots never ship and the lot that expires
first ships first; transfers go only along listed routes, at most N units each. So what a customer can get, where
an order ships and which lots it takes all depend on the rules and the state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import sqlite3
from pathlib import Path

from ..base import Shape, Variant, call, candidate, people, phrase, read_db, render, take_turns, write_db

SCHEMA = """
CREATE TABLE warehouses (id TEXT PRIMARY KEY, name TEXT UNIQUE, city TEXT, safety_stock INTEGER);
CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE lots (id TEXT PRIMARY KEY, item_id TEXT, warehouse_id TEXT, quantity INTEGER, expires TEXT);
CREATE TABLE distances (city TEXT, warehouse_id TEXT, km INTEGER);
CREATE TABLE routes (a TEXT, b TEXT);
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, city TEXT, account TEXT);
CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT, item_id TEXT, quantity INTEGER, ship_to TEXT,
                     placed TEXT, status TEXT);
CREATE TABLE reservations (id TEXT PRIMARY KEY, order_id TEXT, warehouse_id TEXT, item_id TEXT, quantity INTEGER,
                           status TEXT);
CREATE TABLE shipments (id TEXT PRIMARY KEY, order_id TEXT, lot_id TEXT, warehouse_id TEXT, quantity INTEGER,
                        shipped TEXT);
CREATE TABLE transfers (id TEXT PRIMARY KEY, lot_id TEXT, item_id TEXT, from_id TEXT, to_id TEXT, quantity INTEGER,
                        new_lot_id TEXT, moved TEXT);
"""

NAME = "warehouse_inventory"


def _v(name, title, site, unit, priority, items):
    return {"name": name, "title": title, "site": site, "unit": unit, "priority": priority, "items": items}


VOCABS = [
    _v(
        "spare_parts",
        "a vehicle spare-parts distributor",
        "depot",
        "units",
        "fleet account",
        [
            "Hydraulic pump seal kit",
            "Brake caliper rebuild kit",
            "Timing belt kit",
            "Fuel injector O-ring set",
            "Alternator brush pack",
            "Wheel bearing hub assembly",
            "Radiator hose clamp set",
            "Cabin air filter",
            "Oil filter element",
            "Clutch master cylinder",
            "Serpentine drive belt",
            "Iridium spark plug set",
            "Coolant thermostat",
            "Turbo oil feed line",
            "Shock absorber bushing kit",
            "Wiper blade pair",
        ],
    ),
    _v(
        "pharmacy_chain",
        "a pharmacy chain's supply service",
        "distribution centre",
        "packs",
        "hospital account",
        [
            "Amoxicillin 500 mg capsules",
            "Ibuprofen 400 mg tablets",
            "Paracetamol 500 mg tablets",
            "Cetirizine 10 mg tablets",
            "Omeprazole 20 mg capsules",
            "Salbutamol 100 mcg inhaler",
            "Metformin 500 mg tablets",
            "Atorvastatin 20 mg tablets",
            "Loratadine 10 mg tablets",
            "Hydrocortisone 1% cream",
            "Oral rehydration salts",
            "Vitamin D3 1000 IU capsules",
            "Amlodipine 5 mg tablets",
            "Lisinopril 10 mg tablets",
            "Insulin pen needles",
            "Chlorhexidine mouthwash",
        ],
    ),
    _v(
        "bike_parts",
        "a bicycle parts wholesaler",
        "warehouse",
        "units",
        "pro team account",
        [
            "Tubeless tyre sealant",
            "Hydraulic disc brake pads",
            "DOT 5.1 brake fluid",
            "Mineral brake oil",
            "Gravel tyre 700x40c",
            "Trail tyre 29x2.4",
            "Road inner tube 700x25c",
            "Latex inner tube 700x28c",
            "Chain wax lubricant",
            "Handlebar tape",
            "Rim tape 29 inch",
            "Bottom bracket cartridge",
            "Headset bearing set",
            "Gear cable set",
            "Tubeless valve stems",
            "Carbon assembly paste",
        ],
    ),
    _v(
        "deli_wholesale",
        "a delicatessen wholesaler",
        "cold store",
        "cases",
        "restaurant group account",
        [
            "Aged Manchego wedges",
            "Parmigiano Reggiano 24-month",
            "Pecorino Romano wedges",
            "Extra virgin olive oil",
            "Balsamic vinegar of Modena",
            "Kalamata olives",
            "San Marzano tomatoes",
            "Dried porcini mushrooms",
            "Smoked paprika",
            "Arborio rice",
            "Bronze-cut spaghetti",
            "Anchovy fillets in oil",
            "Truffle honey",
            "Chorizo sausages",
            "Saffron threads",
            "Sea salt flakes",
        ],
    ),
]

REGIONS = {
    "uk": [
        ("London", 51.51, -0.13),
        ("Birmingham", 52.49, -1.89),
        ("Manchester", 53.48, -2.24),
        ("Leeds", 53.80, -1.55),
        ("Glasgow", 55.86, -4.25),
        ("Bristol", 51.45, -2.59),
        ("Cardiff", 51.48, -3.18),
        ("Newcastle", 54.98, -1.61),
        ("Sheffield", 53.38, -1.47),
        ("Nottingham", 52.95, -1.15),
        ("Edinburgh", 55.95, -3.19),
        ("Liverpool", 53.41, -2.98),
        ("Southampton", 50.90, -1.40),
        ("Norwich", 52.63, 1.30),
        ("Plymouth", 50.38, -4.14),
        ("Aberdeen", 57.15, -2.09),
    ],
    "us": [
        ("Chicago", 41.88, -87.63),
        ("Detroit", 42.33, -83.05),
        ("Milwaukee", 43.04, -87.91),
        ("Minneapolis", 44.98, -93.27),
        ("Indianapolis", 39.77, -86.16),
        ("Columbus", 39.96, -83.00),
        ("Cleveland", 41.50, -81.69),
        ("Cincinnati", 39.10, -84.51),
        ("Kansas City", 39.10, -94.58),
        ("Omaha", 41.26, -95.93),
        ("Des Moines", 41.59, -93.62),
        ("Louisville", 38.25, -85.76),
        ("Madison", 43.07, -89.40),
        ("Grand Rapids", 42.96, -85.67),
        ("Pittsburgh", 40.44, -79.99),
        ("Toledo", 41.65, -83.54),
    ],
    "de": [
        ("Berlin", 52.52, 13.40),
        ("Hamburg", 53.55, 9.99),
        ("Munich", 48.14, 11.58),
        ("Cologne", 50.94, 6.96),
        ("Frankfurt", 50.11, 8.68),
        ("Stuttgart", 48.78, 9.18),
        ("Leipzig", 51.34, 12.37),
        ("Dresden", 51.05, 13.74),
        ("Hanover", 52.37, 9.73),
        ("Nuremberg", 49.45, 11.08),
        ("Bremen", 53.08, 8.80),
        ("Dortmund", 51.51, 7.47),
        ("Mannheim", 49.49, 8.47),
        ("Kassel", 51.31, 9.48),
        ("Erfurt", 50.98, 11.03),
        ("Augsburg", 48.37, 10.90),
    ],
}


def _km(a, b) -> int:
    """Road distance, roughly: the great-circle distance and a fifth more."""
    la1, lo1, la2, lo2 = map(math.radians, (a[1], a[2], b[1], b[2]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return int(round(1.2 * 2 * 6371 * math.asin(math.sqrt(h))))


def params_of(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "region": sorted(REGIONS)[rng.randrange(len(REGIONS))],
        "split": rng.choice(["nearest", "largest"]),
        "max_transfer": rng.choice([15, 20, 25, 30]),
        "today": (dt.date(2025, 6, 2) + dt.timedelta(days=rng.randrange(60))).isoformat(),
    }


def fingerprint(db: sqlite3.Connection, item_id: str) -> str:
    """What a rebalance must leave alone: orders, reservations, shipments and every other item's lots (the
    verifier computes the same)."""
    h = hashlib.sha256()
    for sql in (
        "SELECT * FROM orders ORDER BY id",
        "SELECT * FROM reservations ORDER BY id",
        "SELECT * FROM shipments ORDER BY id",
        "SELECT id, item_id, warehouse_id, quantity, expires FROM lots WHERE item_id != ? ORDER BY id",
    ):
        rows = db.execute(sql, (item_id,) if "?" in sql else ()).fetchall()
        h.update(json.dumps([list(r) for r in rows]).encode())
    return h.hexdigest()


# -- the policy, as the task maker and the tests apply it ---------------------------------------------------
class Stock:
    """The state the policy reads, mutable so several orders can be planned one after another."""

    def __init__(self, data: dict, p: dict) -> None:
        self.p = p
        self.today = p["today"]
        self.warehouses = {w["id"]: w for w in data["warehouses"]}
        self.items = {i["id"]: i for i in data["items"]}
        self.lots = {x["id"]: dict(x) for x in data["lots"]}
        self.held = [r for r in data["reservations"] if r["status"] == "held"]
        self.km: dict[str, dict[str, int]] = {}
        for d in data["distances"]:
            self.km.setdefault(d["city"], {})[d["warehouse_id"]] = d["km"]
        self.routes = {frozenset((r["a"], r["b"])) for r in data["routes"]}

    def good_lots(self, wh: str, item: str) -> list[dict]:
        """Unexpired lots, the one that expires first first."""
        return sorted(
            (
                x
                for x in self.lots.values()
                if x["warehouse_id"] == wh and x["item_id"] == item and x["expires"] >= self.today
            ),
            key=lambda x: (x["expires"], x["id"]),
        )

    def on_hand(self, wh: str, item: str) -> int:
        return sum(x["quantity"] for x in self.good_lots(wh, item))

    def physical(self, wh: str, item: str) -> int:
        return sum(
            x["quantity"] for x in self.lots.values() if x["warehouse_id"] == wh and x["item_id"] == item
        )

    def reserved(self, wh: str, item: str) -> int:
        return sum(r["quantity"] for r in self.held if r["warehouse_id"] == wh and r["item_id"] == item)

    def available(self, wh: str, item: str, priority: bool) -> int:
        safety = 0 if priority else self.warehouses[wh]["safety_stock"]
        return max(0, self.on_hand(wh, item) - self.reserved(wh, item) - safety)

    def nearest(self, city: str) -> list[str]:
        return sorted(self.km[city], key=lambda w: (self.km[city][w], w))

    def plan(self, order: dict, priority: bool) -> tuple[str, list[tuple[str, int]]] | None:
        """("whole" | "split" | "backorder", [(warehouse, units)]); None where a tie makes the rule ambiguous."""
        item, qty, city = order["item_id"], order["quantity"], order["ship_to"]
        ranked = self.nearest(city)
        kms = [self.km[city][w] for w in ranked]
        if len(set(kms)) != len(kms):
            return None
        avail = {w: self.available(w, item, priority) for w in ranked}
        whole = [w for w in ranked if avail[w] >= qty]
        if whole:
            return "whole", [(whole[0], qty)]
        if sum(avail.values()) < qty:
            return "backorder", []
        order_ws = ranked
        if self.p["split"] == "largest":
            vals = [avail[w] for w in ranked if avail[w] > 0]
            if len(set(vals)) != len(vals):
                return None
            order_ws = sorted(ranked, key=lambda w: -avail[w])
        out, left = [], qty
        for w in order_ws:
            take = min(avail[w], left)
            if take > 0:
                out.append((w, take))
                left -= take
            if left == 0:
                break
        return "split", out

    def lots_for(self, wh: str, item: str, units: int) -> list[tuple[str, int]]:
        """The lots a shipment of `units` takes at `wh`: the one that expires first first."""
        out = []
        for lot in self.good_lots(wh, item):
            take = min(lot["quantity"], units)
            if take:
                out.append((lot["id"], take))
                units -= take
            if not units:
                break
        return out

    def take(self, picks: list[tuple[str, int]]) -> None:
        for lot_id, units in picks:
            self.lots[lot_id]["quantity"] -= units

    def naive(self, order: dict) -> list[tuple[str, int]]:
        """What ignoring the rules gives: the nearest warehouse holding the quantity, lots in id order."""
        item, qty = order["item_id"], order["quantity"]
        for w in self.nearest(order["ship_to"]):
            if self.physical(w, item) >= qty:
                lots = sorted(
                    (x for x in self.lots.values() if x["warehouse_id"] == w and x["item_id"] == item),
                    key=lambda x: x["id"],
                )
                out, left = [], qty
                for x in lots:
                    t = min(x["quantity"], left)
                    if t:
                        out.append((x["id"], t))
                        left -= t
                return out
        return []

    # transfers
    def pieces(self, wh: str, item: str) -> list[int]:
        """The largest transfers a warehouse's unexpired lots allow, biggest first."""
        cap = self.p["max_transfer"]
        out = []
        for lot in self.good_lots(wh, item):
            q = lot["quantity"]
            out += [cap] * (q // cap) + ([q % cap] if q % cap else [])
        return sorted(out, reverse=True)

    def spare(self, wh: str, item: str) -> int:
        return max(0, self.on_hand(wh, item) - self.reserved(wh, item) - self.warehouses[wh]["safety_stock"])

    def min_transfers(self, target: str, item: str, need: int) -> int | None:
        """The fewest direct transfers (along a route into `target`) that bring `need` more units there."""
        sources = [w for w in self.warehouses if w != target and frozenset((w, target)) in self.routes]
        options = []
        for w in sources:
            ps, cap = self.pieces(w, item), self.spare(w, item)
            options.append([min(cap, sum(ps[:k])) for k in range(len(ps) + 1)])
        best = None
        for combo in itertools.product(*[range(len(o)) for o in options]):
            if sum(o[k] for o, k in zip(options, combo, strict=True)) >= need:
                count = sum(combo)
                if best is None or count < best:
                    best = count
        return best


# -- the shape ----------------------------------------------------------------------------------------------
class WarehouseInventory(Shape):
    NAME = NAME
    VOCABS = VOCABS

    def build(self, out: Path, v: Variant) -> str:
        p = params_of(v)
        ctx = {"v": v.vocab, "index": v.index, **p}
        (out / "tools.py").write_text(render(NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        voc = v.vocab
        split = (
            "as much as possible from the nearest one that has any, then the next nearest, and so on"
            if p["split"] == "nearest"
            else "as much as possible from the one with the most available first, then the next most, and so on"
        )
        return (
            f"You are the order desk of {voc['title']}, which keeps stock in several {voc['site']}s. Today is "
            f"{p['today']}. Use the tools to look things up and to act for customers and staff. Policy, which "
            "the tools do not enforce for you: "
            f"each {voc['site']} keeps a safety stock of every item (its safety_stock, in {voc['unit']}) that "
            f"must not be shipped, reserved or transferred away, except that orders of a {voc['priority']} may "
            "use it. Units held by a reservation are spoken for. A lot whose expiry date is before today is "
            "expired and is never shipped or transferred; within a "
            f"{voc['site']}, ship from the unexpired lot that expires first, then the next. What a customer can "
            f"get from a {voc['site']} is its unexpired units less held reservations and, unless they are a "
            f"{voc['priority']}, less the safety stock. An order ships whole from the nearest {voc['site']} (by "
            f"road distance to the order's ship-to city) that can cover all of it; when none can, split it: "
            f"{split}; when even all {voc['site']}s together cannot cover it, mark it backordered and ship "
            "nothing. Orders of one customer are handled oldest first. A reservation for an order follows the "
            "same choice of "
            f"{voc['site']}s as shipping it would. Transfers between {voc['site']}s go only along the listed "
            f"routes (either way), at most {p['max_transfer']} {voc['unit']} each. Answer questions with "
            "submit_answer; after making changes, reply to the user without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        voc = v.vocab
        today = dt.date.fromisoformat(p["today"])
        cities = REGIONS[p["region"]]
        sites = rng.sample(cities, 6)
        warehouses = [
            (f"W{i + 1}", f"{c[0]} {voc['site']}", c[0], rng.choice([4, 5, 6, 8, 10, 12]))
            for i, c in enumerate(sites)
        ]
        names = rng.sample(voc["items"], 12)
        items = [(f"K{101 + i}", n) for i, n in enumerate(names)]
        lots = []
        for item_id, _ in items:
            for w in rng.sample(warehouses, rng.randint(3, 5)):
                days = rng.sample(range(40, 700), 3)
                for k in range(rng.choice([1, 2, 2, 3])):
                    expired = rng.random() < 0.15
                    expires = (
                        today - dt.timedelta(days=rng.randint(3, 90))
                        if expired
                        else today + dt.timedelta(days=days[k])
                    )
                    lots.append(
                        (f"L{len(lots) + 201}", item_id, w[0], rng.randint(3, 42), expires.isoformat())
                    )
        distances = [(c[0], w[0], _km(c, s)) for c in cities for w, s in zip(warehouses, sites, strict=True)]
        order = [w[0] for w in warehouses]
        rng.shuffle(order)
        edges = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, len(order))}
        while len(edges) < 8:
            edges.add(tuple(sorted(rng.sample(order, 2))))
        routes = sorted(edges)
        folks = people(v, 14)
        customers = [
            (
                f"C{i + 101}",
                f["name"],
                f["email"],
                rng.choice(cities)[0],
                "priority" if i % 4 == 1 else "standard",
            )
            for i, f in enumerate(folks)
        ]
        orders, reservations = [], []
        stock_at = {}
        for x in lots:
            if x[4] >= p["today"]:
                stock_at[(x[2], x[1])] = stock_at.get((x[2], x[1]), 0) + x[3]
        for c in customers:
            statuses = (
                ["open"] * rng.randint(1, 3)
                + ["shipped"] * rng.randint(0, 2)
                + ["reserved"] * rng.randint(0, 1)
            )
            for status in statuses:
                item_id = rng.choice(items)[0]
                per_site = [n for (w, i), n in stock_at.items() if i == item_id] or [0]
                top, total = max(per_site), sum(per_site)
                # sized against the stock, so that some orders fit one site, some need a split, some cannot ship
                qty = rng.choice(
                    [
                        rng.randint(4, 20),
                        rng.randint(max(4, top - 8), top + 12),
                        rng.randint(max(4, top - 8), top + 12),
                        rng.randint(top + 1, max(top + 2, total)),
                        rng.randint(top + 1, max(top + 2, total)),
                        total + rng.randint(1, 25),
                    ]
                )
                ship_to = c[3] if rng.random() < 0.7 else rng.choice(cities)[0]
                placed = today - dt.timedelta(
                    days=rng.randint(0, 20) if status != "shipped" else rng.randint(21, 90)
                )
                oid = f"O{len(orders) + 1001}"
                if status == "reserved":
                    held = [(w, n) for (w, i), n in stock_at.items() if i == item_id and n >= 6]
                    if not held:
                        status = "open"
                    else:
                        w, n = rng.choice(sorted(held))
                        qty = rng.randint(3, min(15, n // 2))
                        stock_at[(w, item_id)] -= qty
                        reservations.append((f"R{len(reservations) + 301}", oid, w, item_id, qty, "held"))
                orders.append((oid, c[0], item_id, qty, ship_to, placed.isoformat(), status))
        return {
            "warehouses": warehouses,
            "items": items,
            "lots": lots,
            "distances": distances,
            "routes": routes,
            "customers": customers,
            "orders": orders,
            "reservations": reservations,
            "shipments": [],
            "transfers": [],
        }

    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        return _Maker(env_dir, v).make(n)

    def harden(self, env_dir: Path, v: Variant, cand, reason: str):
        return _Maker(env_dir, v).harden(cand)


def _spoken(d: str) -> str:
    x = dt.date.fromisoformat(d)
    return f"{x.day} {x.strftime('%B')}"


class _Maker:
    """The environment's data and the policy over it, for the task kinds."""

    def __init__(self, env_dir: Path, v: Variant) -> None:
        self.env_dir, self.v, self.voc = Path(env_dir), v, v.vocab
        self.p = params_of(v)
        self.data = read_db(env_dir)
        self.customers = {c["id"]: c for c in self.data["customers"]}
        self.orders = self.data["orders"]
        self.wh_city = {w["id"]: w["city"] for w in self.data["warehouses"]}

    def stock(self) -> Stock:
        return Stock(self.data, self.p)

    # helpers
    def open_of(self, cid: str) -> list[dict]:
        return sorted(
            (o for o in self.orders if o["customer_id"] == cid and o["status"] == "open"),
            key=lambda o: (o["placed"], o["id"]),
        )

    def who(self, c: dict) -> str:
        return f"{c['name']} ({c['email']})"

    def item(self, item_id: str) -> str:
        return self.data["items"][[i["id"] for i in self.data["items"]].index(item_id)]["name"]

    def reads(self, c: dict, orders: list[dict]) -> list:
        out = [call("find_customer", email=c["email"]), call("customer_orders", customer_id=c["id"])]
        for city in dict.fromkeys(o["ship_to"] for o in orders):
            out.append(call("distances_from", city=city))
        out.append(call("list_warehouses"))
        for item_id in dict.fromkeys(o["item_id"] for o in orders):
            out.append(call("stock_levels", item_id=item_id))
        return out

    def writes(self, s: Stock, o: dict, how: str = "ship") -> tuple[list, bool] | None:
        """The calls that carry out the policy for order `o` (and apply them to `s`), and whether a rule
        changed them (against ignoring the rules)."""
        prio = self.customers[o["customer_id"]]["account"] == "priority"
        naive = s.naive(o)
        plan = s.plan(o, prio)
        if plan is None:
            return None
        kind, parts = plan
        if kind == "backorder":
            return [call("backorder_order", order_id=o["id"])], True
        if how == "reserve":
            calls = [call("reserve_stock", order_id=o["id"], warehouse_id=w, quantity=u) for w, u in parts]
            nearest = s.naive(o)
            binds = not nearest or {s.lots[nearest[0][0]]["warehouse_id"]} != {w for w, _ in parts}
            return calls, binds
        picks = [pick for w, u in parts for pick in s.lots_for(w, o["item_id"], u)]
        s.take(picks)
        calls = [call("ship_from_lot", order_id=o["id"], lot_id=lot, quantity=u) for lot, u in picks]
        return calls, sorted(picks) != sorted(naive)

    def obvious_sites(self) -> set[str]:
        """The sites a listing shortcut names: first and last listed, least and most safety stock."""
        ws = self.data["warehouses"]
        return {ws[0]["id"], ws[-1]["id"], min(ws, key=lambda w: w["safety_stock"])["id"]} | {
            max(ws, key=lambda w: w["safety_stock"])["id"]
        }

    def plan_kind(self, o: dict) -> str | None:
        plan = self.stock().plan(o, self.customers[o["customer_id"]]["account"] == "priority")
        return None if plan is None else plan[0]

    def make(self, n: int) -> list:
        makers = [
            self.ship_order,
            self.rebalance,
            self.available,
            self.ship_split,
            self.ship_user,
            self.which_site,
            self.ship_all,
            self.reserve,
            self.network_available,
        ]
        return take_turns(makers, self.v, n)

    def harden(self, cand):
        """A too-easy order task, with the order's number and the customer's email moved to the user."""
        if cand.user_instructions or cand.template.split("/")[2] not in ("ship_order", "reserve"):
            return None
        email = next((c["email"] for c in self.customers.values() if c["email"] in cand.prompt[0]), None)
        oid = next((o["id"] for o in self.orders if o["id"] in cand.prompt[0]), None)
        if not email or not oid:
            return None
        c = next(c for c in self.customers.values() if c["email"] == email)
        cand.user_instructions = (
            f"You are {c['name']}; your email is {email}. {cand.prompt[0]} Give your email and the order "
            f"number {oid} only when asked."
        )
        cand.prompt = ["Hi, I need some help with one of my orders."]
        cand.extra["features"]["user_facts"] = 2
        return cand

    # -- kinds ------------------------------------------------------------------------------------------
    def _order_task(self, rng, want) -> tuple[dict, dict, list, bool] | None:
        """A random open order whose plan kind is in `want`, binding rules preferred."""
        pool = [o for o in self.orders if o["status"] == "open" and self.plan_kind(o) in want]
        rng.shuffle(pool)
        fallback = None
        for o in pool:
            made = self.writes(self.stock(), o)
            if made is None:
                continue
            if made[1] or rng.random() < 0.25:
                return o, self.customers[o["customer_id"]], made[0], made[1]
            fallback = fallback or (o, self.customers[o["customer_id"]], made[0], made[1])
        return fallback

    def _order_words(self, o: dict) -> dict:
        return {
            "oid": o["id"],
            "qty": o["quantity"],
            "unit": self.voc["unit"],
            "item": self.item(o["item_id"]),
        }

    def ship_order(self, rng):
        got = self._order_task(rng, {"whole", "split"})
        if got is None:
            return None
        o, c, writes, binds = got
        i, text = phrase(
            rng,
            [
                "Hi, this is {{ who }}. Please ship my order {{ oid }} ({{ qty }} {{ unit }} of {{ item }}).",
                "{{ who }} here. Could you send out order {{ oid }} for me today?",
                "Hello, I'm {{ who }}. My order {{ oid }} is still waiting; please get it shipped.",
                "I'm {{ who }}. Go ahead and dispatch order {{ oid }}, the {{ item }}, please.",
            ],
            who=self.who(c),
            **self._order_words(o),
        )
        return _mark(
            candidate(
                NAME,
                "ship_order",
                i,
                level=3 if len(writes) == 1 else 4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=self.reads(c, [o]) + writes,
                answer="Done.",
                constraints=4,
                distractors=len(self.data["warehouses"]) - 1,
            ),
            binds,
        )

    def ship_split(self, rng):
        got = self._order_task(rng, {"split"})
        if got is None:
            return None
        o, c, writes, binds = got
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. I need order {{ oid }} shipped; if one {{ site }} can't do it all, split it "
                "the way you normally would.",
                "This is {{ who }}. Please ship all {{ qty }} {{ unit }} of my order {{ oid }}, from more than one "
                "{{ site }} if need be.",
                "{{ who }}: can you get my order {{ oid }} out the door? Use several {{ site }}s if you must.",
            ],
            who=self.who(c),
            site=self.voc["site"],
            **self._order_words(o),
        )
        return _mark(
            candidate(
                NAME,
                "ship_split",
                i,
                level=4 if len(writes) < 4 else 5,
                prompt=text,
                verifier="check_state",
                params={},
                solution=self.reads(c, [o]) + writes,
                answer="Done.",
                constraints=5,
                distractors=len(self.data["warehouses"]) - 2,
            ),
            binds,
        )

    def ship_user(self, rng):
        got = self._order_task(rng, {"whole", "split", "backorder"})
        if got is None:
            return None
        o, c, writes, binds = got
        words = self._order_words(o)
        i, text = phrase(
            rng,
            [
                "Hi, I'd like my order of {{ item }} shipped, please.",
                "Hello, could you help me get my {{ item }} order sent out?",
                "Good morning. My order for {{ item }} still hasn't gone out; can you ship it?",
            ],
            item=words["item"],
        )
        instructions = (
            f"You are {c['name']}; your email is {c['email']}. You want your order {o['id']} ({words['qty']} "
            f"{words['unit']} of {words['item']}, to {o['ship_to']}) shipped. Give your email and the order number "
            "only when asked. If the order cannot be shipped, accept what the assistant tells you."
        )
        return _mark(
            candidate(
                NAME,
                "ship_user",
                i,
                level=4,
                prompt=text,
                verifier="check_state",
                params={},
                solution=self.reads(c, [o]) + writes,
                answer="Done.",
                user_instructions=instructions,
                user_facts=2,
                constraints=4,
                distractors=len(self.open_of(c["id"])) - 1,
            ),
            binds,
        )

    def ship_all(self, rng):
        cids = [cid for cid in sorted(self.customers) if len(self.open_of(cid)) >= 2]
        rng.shuffle(cids)
        for cid in cids:
            c, todo = self.customers[cid], self.open_of(cid)
            if len({o["placed"] for o in todo}) != len(todo):
                continue
            s, writes, binds = self.stock(), [], False
            for o in todo:
                made = self.writes(s, o)
                if made is None:
                    break
                writes += made[0]
                binds = binds or made[1]
            else:
                if not binds and rng.random() < 0.7:
                    continue
                user = rng.random() < 0.6
                i, text = phrase(
                    rng,
                    [
                        "Hi, this is {{ who }}. Please ship every order I still have open.",
                        "{{ who }} here. Could you send out all of my outstanding orders?",
                        "I'm {{ who }}. Whatever orders of mine are still open, please ship them today.",
                    ]
                    if not user
                    else [
                        "Hi, {{ first }} here. Can you ship all my open orders?",
                        "Hello, this is {{ first }}; please send out everything I have on order.",
                        "It's {{ first }}. I'd like all of my outstanding orders shipped, please.",
                    ],
                    first=c["name"].split()[0],
                    who=self.who(c),
                )
                instructions = (
                    f"You are {c['name']}; your email is {c['email']}. You want every open order of yours "
                    "shipped. Give your email when asked; accept it if an order has to be backordered."
                    if user
                    else None
                )
                return _mark(
                    candidate(
                        NAME,
                        "ship_all",
                        i + (3 if user else 0),
                        level=5 if len(writes) >= 3 else 4,
                        prompt=text,
                        verifier="check_state",
                        params={},
                        solution=self.reads(c, todo) + writes,
                        answer="Done.",
                        user_instructions=instructions,
                        user_facts=1 if user else 0,
                        constraints=5,
                        distractors=sum(
                            o["customer_id"] == cid and o["status"] != "open" for o in self.orders
                        ),
                    ),
                    binds,
                )
        return None

    def reserve(self, rng):
        pool = [o for o in self.orders if o["status"] == "open" and self.plan_kind(o)]
        rng.shuffle(pool)
        for o in pool:
            made = self.writes(self.stock(), o, how="reserve")
            if made is None or (not made[1] and rng.random() < 0.6):
                continue
            c = self.customers[o["customer_id"]]
            user = rng.random() < 0.4
            words = self._order_words(o)
            i, text = phrase(
                rng,
                [
                    "Hi, {{ who }} here. Don't ship order {{ oid }} yet, but please reserve the stock for it.",
                    "This is {{ who }}. Could you put the {{ item }} for my order {{ oid }} on hold for me? I'll "
                    "confirm shipping later.",
                    "{{ who }}: please hold stock against my order {{ oid }} so it's there when I'm ready.",
                ]
                if not user
                else [
                    "Hi, please reserve the stock for my {{ item }} order; don't ship it yet.",
                    "Could you hold the {{ item }} I ordered until I confirm shipping?",
                    "I'd like my order of {{ item }} put on hold in your stock, not shipped yet.",
                ],
                who=self.who(c),
                **words,
            )
            instructions = (
                f"You are {c['name']}; your email is {c['email']}. You want stock reserved for your order "
                f"{o['id']} ({words['qty']} {words['unit']} of {words['item']}), not shipped. Give your email and "
                "the order number only when asked; accept a backorder if the assistant says it cannot be covered."
                if user
                else None
            )
            return _mark(
                candidate(
                    NAME,
                    "reserve",
                    i + (3 if user else 0),
                    level=3 if len(made[0]) == 1 else 4,
                    prompt=text,
                    verifier="check_state",
                    params={},
                    solution=self.reads(c, [o]) + made[0],
                    answer="Done.",
                    user_instructions=instructions,
                    user_facts=2 if user else 0,
                    constraints=3,
                    distractors=len(self.data["warehouses"]) - 1,
                ),
                made[1],
            )
        return None

    def _screen(self, value: int, item_id: str) -> bool:
        """Whether an availability answer is worth asking: no lot, reservation or safety figure already shows it."""
        shown = {x["quantity"] for x in self.data["lots"] if x["item_id"] == item_id}
        shown |= {r["quantity"] for r in self.data["reservations"]}
        shown |= {w["safety_stock"] for w in self.data["warehouses"]}
        return value >= 3 and value not in shown

    def available(self, rng):
        s = self.stock()
        c = self.customers[rng.choice(sorted(self.customers))]
        prio = c["account"] == "priority"
        pairs = sorted({(x["warehouse_id"], x["item_id"]) for x in self.data["lots"]})
        rng.shuffle(pairs)
        for wh, item_id in pairs:
            value, naive = s.available(wh, item_id, prio), s.physical(wh, item_id)
            if value == naive or not self._screen(value, item_id):
                continue
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. How many {{ unit }} of {{ item }} could your {{ city }} {{ site }} ship to me right "
                    "now?",
                    "{{ who }} here. If I ordered {{ item }} from the {{ city }} {{ site }} today, how many {{ unit }} "
                    "could I get at most?",
                    "Quick question from {{ who }}: what's the most {{ item }} the {{ city }} {{ site }} can let me "
                    "have at the moment?",
                ],
                who=self.who(c),
                unit=self.voc["unit"],
                item=self.item(item_id),
                city=self.wh_city[wh],
                site=self.voc["site"],
            )
            return candidate(
                NAME,
                "available",
                i,
                level=2,
                prompt=text,
                verifier="check_answer",
                params={"expected": value},
                solution=[
                    call("find_customer", email=c["email"]),
                    call("list_warehouses"),
                    call("stock_levels", item_id=item_id, warehouse_id=wh),
                    call("submit_answer", answer=str(value)),
                ],
                guess=str(naive),
                constraints=3,
                distractors=sum(
                    1 for x in self.data["lots"] if x["item_id"] == item_id and x["expires"] < self.p["today"]
                ),
            )
        return None

    def network_available(self, rng):
        s = self.stock()
        c = self.customers[rng.choice(sorted(self.customers))]
        prio = c["account"] == "priority"
        for item in rng.sample(self.data["items"], len(self.data["items"])):
            value = sum(s.available(w, item["id"], prio) for w in s.warehouses)
            naive = sum(s.physical(w, item["id"]) for w in s.warehouses)
            if value == naive or not self._screen(value, item["id"]):
                continue
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. Across all your {{ site }}s, how many {{ unit }} of {{ item }} could you supply "
                    "me with today?",
                    "{{ who }} here. What is the total of {{ item }} you could ship me right now, counting every "
                    "{{ site }}?",
                    "This is {{ who }}. If I wanted as much {{ item }} as you can sell me today, how many {{ unit }} "
                    "would that be?",
                ],
                who=self.who(c),
                unit=self.voc["unit"],
                item=item["name"],
                site=self.voc["site"],
            )
            return candidate(
                NAME,
                "network_available",
                i,
                level=3,
                prompt=text,
                verifier="check_answer",
                params={"expected": value},
                solution=[
                    call("find_customer", email=c["email"]),
                    call("search_items", query=item["name"]),
                    call("list_warehouses"),
                    call("stock_levels", item_id=item["id"]),
                    call("submit_answer", answer=str(value)),
                ],
                guess=str(naive),
                constraints=3,
                distractors=len(self.data["reservations"]),
            )
        return None

    def which_site(self, rng):
        pool = [o for o in self.orders if o["status"] == "open" and self.plan_kind(o) == "whole"]
        rng.shuffle(pool)
        names = [w["name"] for w in self.data["warehouses"]]
        cities = [w["city"] for w in self.data["warehouses"]]
        for o in pool:
            s = self.stock()
            c = self.customers[o["customer_id"]]
            wh = s.plan(o, c["account"] == "priority")[1][0][0]
            nearest = s.nearest(o["ship_to"])[0]
            if wh == nearest or wh in self.obvious_sites():
                continue
            user = rng.random() < 0.6
            words = self._order_words(o)
            i, text = phrase(
                rng,
                [
                    "I'm {{ who }}. Which of your {{ site }}s would my order {{ oid }} ship from?",
                    "{{ who }} here. Where would order {{ oid }} be sent from if you shipped it today?",
                    "This is {{ who }}: from which {{ site }} will my order {{ oid }} go out?",
                ]
                if not user
                else [
                    "Hi, which of your {{ site }}s would my order of {{ item }} ship from?",
                    "Hello, I'm wondering where my {{ item }} order would be sent from.",
                    "Can you tell me which {{ site }} would handle my order for {{ item }}?",
                ],
                who=self.who(c),
                site=self.voc["site"],
                **words,
            )
            instructions = (
                f"You are {c['name']}; your email is {c['email']}. You want to know which {self.voc['site']} your "
                f"order {o['id']} ({words['qty']} {words['unit']} of {words['item']}) would ship from. Give your "
                "email and the order number only when asked."
                if user
                else None
            )
            naive = s.naive(o)
            guess = self.wh_city[s.lots[naive[0][0]]["warehouse_id"]] if naive else self.wh_city[nearest]
            if guess == self.wh_city[wh]:
                guess = self.wh_city[nearest]
            return candidate(
                NAME,
                "which_site",
                i + (3 if user else 0),
                level=3,
                prompt=text,
                verifier="check_answer",
                params={"expected": self.wh_city[wh], "choices": cities},
                solution=self.reads(c, [o])
                + [call("submit_answer", answer=self.data["warehouses"][int(wh[1:]) - 1]["name"])],
                guess=guess,
                user_instructions=instructions,
                user_facts=2 if user else 0,
                constraints=3,
                distractors=len(names) - 1,
            )
        return None

    def rebalance(self, rng):
        s = self.stock()
        T = self.p["max_transfer"]
        pairs = sorted({(w, i) for w in s.warehouses for i in s.items})
        rng.shuffle(pairs)
        for target, item_id in pairs:
            base = (
                s.on_hand(target, item_id)
                - s.reserved(target, item_id)
                - s.warehouses[target]["safety_stock"]
            )
            sources = [w for w in s.warehouses if w != target and frozenset((w, target)) in s.routes]
            reach = sum(min(s.spare(w, item_id), sum(s.pieces(w, item_id))) for w in sources)
            if reach < T + 5:
                continue
            m = rng.randint(T + 1, reach)
            need = base + m
            if need < 10:
                continue
            best = s.min_transfers(target, item_id, m)
            if best is None or best < 2:
                continue
            plan = self._transfer_plan(s, target, item_id, m, best)
            if plan is None:
                continue
            db = sqlite3.connect(self.env_dir / "state" / "db.sqlite")
            others = fingerprint(db, item_id)
            db.close()
            wname = s.warehouses[target]["name"]
            i, text = phrase(
                rng,
                [
                    "Our {{ wh }} has to be able to ship {{ need }} {{ unit }} of {{ item }} to a standard customer. "
                    "Move stock there from the other {{ site }}s with as few transfers as the rules allow.",
                    "Please rebalance {{ item }} so that the {{ wh }} can cover an order of {{ need }} {{ unit }} for "
                    "a regular customer, using the fewest transfers you can.",
                    "We're short of {{ item }} at the {{ wh }}: make sure it can fill {{ need }} {{ unit }} for a "
                    "non-priority customer. Bring the stock in with the smallest number of transfers possible.",
                ],
                wh=wname,
                need=need,
                unit=self.voc["unit"],
                item=s.items[item_id]["name"],
                site=self.voc["site"],
            )
            params = {
                "item_id": item_id,
                "target": target,
                "need": need,
                "max_transfers": best,
                "others": others,
            }
            return _mark(
                candidate(
                    NAME,
                    "rebalance",
                    i,
                    level=5,
                    prompt=text,
                    verifier="check_rebalance",
                    params=params,
                    solution=[
                        call("list_warehouses"),
                        call("list_routes"),
                        call("search_items", query=s.items[item_id]["name"]),
                        call("stock_levels", item_id=item_id),
                        *plan,
                    ],
                    answer="Done.",
                    constraints=6,
                    distractors=len(s.warehouses) - 1 - len(sources),
                ),
                True,
            )
        return None

    def _transfer_plan(self, s: Stock, target: str, item_id: str, m: int, best: int) -> list | None:
        """One plan of `best` direct transfers that brings `m` units to `target` (largest pieces first)."""
        T = self.p["max_transfer"]
        sources = [w for w in sorted(s.warehouses) if w != target and frozenset((w, target)) in s.routes]
        for combo in itertools.product(*[range(len(s.pieces(w, item_id)) + 1) for w in sources]):
            if sum(combo) != best:
                continue
            calls, moved = [], 0
            for w, k in zip(sources, combo, strict=True):
                cap = s.spare(w, item_id)
                pieces = []
                for lot in s.good_lots(w, item_id):
                    q = lot["quantity"]
                    pieces += [(T, lot["id"])] * (q // T) + ([(q % T, lot["id"])] if q % T else [])
                pieces.sort(key=lambda x: (-x[0], x[1]))
                for size, lot_id in pieces[:k]:
                    u = min(size, cap, m - moved)
                    if u <= 0:
                        break
                    calls.append(call("transfer_stock", lot_id=lot_id, to_warehouse_id=target, quantity=u))
                    cap -= u
                    moved += u
            if moved >= m and len(calls) == best:
                return calls
        return None


def _mark(cand, binds: bool):
    """A write task, marked with whether a rule changes its right action (the shape's tests count them)."""
    cand.extra["binds"] = bool(binds)
    return cand


SHAPE = WarehouseInventory()

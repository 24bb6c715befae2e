"""Shape catalogue_orders: a shop with a catalogue, customers' orders and refunds.

Rules that bind (the tools do not enforce them): returns only of delivered orders within the return window and
never of final-sale items, refunds to the original payment lose a restocking fee, only processing orders can be
cancelled, at most N of one product per order; new orders get a member discount and free delivery above a
threshold, so every quote depends on the rules.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from ..base import (
    Shape,
    Variant,
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

SCHEMA = """
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, tier TEXT, credit REAL);
CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT UNIQUE, category TEXT, price REAL, stock INTEGER,
                       final_sale INTEGER);
CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT, status TEXT, placed TEXT, delivered TEXT, total REAL);
CREATE TABLE order_lines (order_id TEXT, product_id TEXT, quantity INTEGER, unit_price REAL);
CREATE TABLE refunds (id TEXT PRIMARY KEY, order_id TEXT, product_id TEXT, quantity INTEGER, amount REAL,
                      method TEXT);
"""


def _v(name, title, customer, product, products, catalogue):
    return {
        "name": name,
        "title": title,
        "customer": customer,
        "product": product,
        "products": products,
        "categories": list(catalogue),
        "catalogue": catalogue,
    }


VOCABS = [
    _v(
        "home_goods",
        "A home goods shop",
        "customer",
        "product",
        "products",
        {
            "kitchen": [
                "Cast Iron Skillet",
                "Chef's Knife",
                "Enamel Casserole",
                "Bamboo Chopping Board",
                "Copper Saucepan",
                "Stoneware Teapot",
                "Pepper Mill",
                "Glass Storage Jars",
            ],
            "bedding": [
                "Linen Duvet Cover",
                "Wool Blanket",
                "Feather Pillow",
                "Cotton Sheet Set",
                "Quilted Bedspread",
                "Silk Pillowcase",
            ],
            "lighting": [
                "Brass Floor Lamp",
                "Rattan Pendant Shade",
                "Ceramic Table Lamp",
                "Reading Light",
                "Paper Lantern",
                "Wall Sconce",
            ],
            "decor": [
                "Woven Wall Hanging",
                "Terracotta Vase",
                "Oak Picture Frame",
                "Jute Rug",
                "Velvet Cushion",
                "Scented Candle",
            ],
        },
    ),
    _v(
        "outdoor_outfitter",
        "An outdoor outfitter",
        "customer",
        "item",
        "items",
        {
            "camping": [
                "Two-Person Tent",
                "Down Sleeping Bag",
                "Camping Stove",
                "Folding Camp Chair",
                "Insulated Sleeping Mat",
                "Titanium Mug",
            ],
            "footwear": [
                "Leather Hiking Boots",
                "Trail Running Shoes",
                "Wool Hiking Socks",
                "Gaiters",
                "Approach Shoes",
                "Camp Sandals",
            ],
            "clothing": [
                "Rain Shell Jacket",
                "Fleece Pullover",
                "Merino Base Layer",
                "Softshell Trousers",
                "Insulated Vest",
                "Sun Hoodie",
            ],
            "climbing": [
                "Climbing Harness",
                "Belay Device",
                "Chalk Bag",
                "Locking Carabiner",
                "Climbing Helmet",
                "Dynamic Rope",
            ],
        },
    ),
    _v(
        "bookshop",
        "An independent bookshop",
        "reader",
        "book",
        "books",
        {
            "fiction": [
                "The Salt Road",
                "A House of Lanterns",
                "Winter Orchard",
                "The Cartographer's Daughter",
                "Night Ferry",
                "Small Hours",
            ],
            "cookery": [
                "Simple Bread",
                "The Vegetable Year",
                "Ferment at Home",
                "One Pot Suppers",
                "Coastal Kitchen",
                "Baking with Rye",
            ],
            "travel": [
                "Walking the Alps",
                "Rail Journeys of Europe",
                "The Island Guide",
                "Coastal Paths",
                "A Year in Lisbon",
                "Slow Travel Japan",
            ],
            "children": [
                "The Brave Little Fox",
                "Moon Over the Meadow",
                "Counting Ducks",
                "Pirate Pete",
                "The Lost Kite",
                "Dinosaur Dreams",
            ],
        },
    ),
    _v(
        "electronics",
        "An electronics retailer",
        "customer",
        "product",
        "products",
        {
            "audio": [
                "Wireless Earbuds",
                "Bookshelf Speakers",
                "Noise-Cancelling Headphones",
                "Soundbar",
                "Turntable",
                "Portable Speaker",
            ],
            "computing": [
                "Mechanical Keyboard",
                "Wireless Mouse",
                "USB-C Hub",
                "External SSD",
                "Laptop Stand",
                "Webcam",
            ],
            "cameras": [
                "Mirrorless Camera",
                "Prime Lens",
                "Camera Strap",
                "Tripod",
                "Memory Card",
                "Lens Cleaning Kit",
            ],
            "accessories": [
                "Phone Case",
                "Charging Cable",
                "Power Bank",
                "Screen Protector",
                "Wall Charger",
                "Cable Organiser",
            ],
        },
    ),
]

COLOURS = ["Sage", "Slate", "Sand", "Charcoal", "Ivory", "Rust", "Navy", "Olive"]
EDITIONS = ["Hardback", "Paperback", "Large Print", "Signed Edition", "Illustrated Edition", "Pocket Edition"]


def _params(v: Variant) -> dict:
    rng = v.rng("rules")
    return {
        "return_days": rng.choice([14, 21, 30, 45]),
        "restock": rng.choice([10, 15, 20]),
        "member_discount": rng.choice([5, 10, 15]),
        "shipping": rng.choice([3.95, 4.5, 5.95, 6.5]),
        "free_from": rng.choice([50, 75, 100, 150]),
        "max_per_product": rng.choice([2, 3, 4]),
        "today": (dt.date(2025, 5, 1) + dt.timedelta(days=rng.randrange(120))).isoformat(),
    }


def _total(p: dict, tier: str, subtotal: float) -> float:
    goods = subtotal * (1 - p["member_discount"] / 100) if tier == "member" else subtotal
    return round(goods + (0 if goods >= p["free_from"] else p["shipping"]), 2)


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _spoken(d: str) -> str:
    """A date as a person says it: "3 June"."""
    x = _date(d)
    return f"{x.day} {x.strftime('%B')}"


class CatalogueOrders(Shape):
    NAME = "catalogue_orders"
    VOCABS = VOCABS

    # -- the environment -------------------------------------------------------------------------------
    def build(self, out: Path, v: Variant) -> str:
        p = _params(v)
        ctx = {"v": v.vocab, "index": v.index, **p}
        (out / "tools.py").write_text(render(self.NAME, "tools.py.j2", **ctx))
        (out / "verify.py").write_text(render(self.NAME, "verify.py.j2", **ctx))
        write_db(out / "state" / "db.sqlite", SCHEMA, self._data(v, p))
        voc = v.vocab
        return (
            f"You are the assistant of {voc['title'].lower()}. Today is {p['today']}. Use the tools to look "
            f"things up and to act for the {voc['customer']}. Policy, which the tools do not enforce for you: "
            f"returns are accepted only for delivered orders, within {p['return_days']} days of delivery, and "
            f"never for {voc['products']} bought on final sale; a refund to the original payment loses a "
            f"{p['restock']}% restocking fee, a refund as store credit is paid in full, and the {voc['customer']} "
            f"chooses which (store credit when they do not say). Only orders that are still processing can be "
            f"cancelled. An order holds at most {p['max_per_product']} of any one {voc['product']}. Members get "
            f"{p['member_discount']}% off new orders; delivery costs {p['shipping']:.2f} unless the goods come to "
            f"{p['free_from']} or more. Answer questions with submit_answer; after making changes, reply to the "
            "user without a tool call."
        )

    def _data(self, v: Variant, p: dict) -> dict:
        rng = v.rng("data")
        today = _date(p["today"])
        products = []
        for cat, names in v.vocab["catalogue"].items():
            for name in names:
                kinds = (
                    EDITIONS if v.vocab["name"] == "bookshop" else COLOURS
                )  # a book has editions, not colours
                for colour in rng.sample(kinds, rng.choice([1, 1, 2])):
                    label = name if len(products) % 3 else f"{name} ({colour})"
                    if any(x[1] == label for x in products):
                        continue
                    price = round(rng.choice([0.6, 0.8, 1.0, 1.3, 1.8, 2.5]) * rng.randint(8, 60) + 0.99, 2)
                    stock = rng.choice([0, 0, 2, 3, 5, 8, 12])
                    products.append(
                        [f"P{len(products) + 1:03d}", label, cat, price, stock, int(rng.random() < 0.2)]
                    )
        folks = people(v, rng.randint(14, 22))
        customers = [
            (
                f"C{i + 1:03d}",
                f["name"],
                f["email"],
                rng.choice(["standard", "standard", "member"]),
                round(rng.choice([0, 0, 0, 5, 12.5, 20]), 2),
            )
            for i, f in enumerate(folks)
        ]
        orders, lines = [], []
        for c in customers:
            for _ in range(rng.randint(2, 6)):
                age = rng.choice(
                    [rng.randint(0, 2), rng.randint(3, 8), rng.randint(9, 80), rng.randint(9, 80)]
                )
                placed = today - dt.timedelta(days=age)
                if age <= 2:
                    status, delivered = "processing", None
                elif age <= 6 and rng.random() < 0.6:
                    status, delivered = "shipped", None
                else:
                    status = rng.choice(["delivered"] * 5 + ["cancelled"])
                    delivered = (placed + dt.timedelta(days=rng.randint(2, 5))).isoformat()
                    if delivered > p["today"]:
                        status, delivered = "shipped", None
                    if status == "cancelled":
                        delivered = None
                oid = f"O{len(orders) + 1:04d}"
                chosen = rng.sample(products, rng.randint(1, 4))
                subtotal = 0.0
                for prod in chosen:
                    qty = rng.randint(1, 2)
                    paid = round(
                        prod[3] * rng.choice([1.0, 1.0, 0.9, 1.1]), 2
                    )  # prices move: refunds use what was paid
                    lines.append((oid, prod[0], qty, paid))
                    subtotal += paid * qty
                orders.append((oid, c[0], status, placed.isoformat(), delivered, _total(p, c[3], subtotal)))
        return {
            "customers": customers,
            "products": [tuple(x) for x in products],
            "orders": orders,
            "order_lines": lines,
            "refunds": [],
        }

    # -- tasks -----------------------------------------------------------------------------------------
    def tasks(self, env_dir: Path, v: Variant, n: int) -> list:
        p = _params(v)
        w = _World(read_db(env_dir), p, v)
        makers = [
            w.return_two,
            w.cancel_unshipped,
            w.refund_quote,
            w.order_quote,
            w.reorder_substitute,
            w.user_return,
            w.gift_plan,
            w.spend_lookup,
            w.exchange,
            lambda rng: w.gift_plan(rng, held=True),
            lambda rng: w.cancel_unshipped(rng, held=True),
        ]
        return take_turns(makers, v, n, tries=6)


class _World:
    """The environment's data, indexed for the task makers."""

    def __init__(self, data: dict, p: dict, v: Variant) -> None:
        self.p, self.v, self.voc = p, v, v.vocab
        self.customers = {c["id"]: c for c in data["customers"]}
        self.products = {x["id"]: x for x in data["products"]}
        self.orders = data["orders"]
        self.lines: dict[str, list[dict]] = {}
        for line in data["order_lines"]:
            self.lines.setdefault(line["order_id"], []).append(line)
        self.today = _date(p["today"])
        self.n_orders, self.n_refunds = len(data["orders"]), len(data["refunds"])

    # helpers
    def of(self, cid: str, status: str | None = None) -> list[dict]:
        return [
            o for o in self.orders if o["customer_id"] == cid and (status is None or o["status"] == status)
        ]

    def returnable(self, o: dict) -> bool:
        return (
            o["status"] == "delivered" and (self.today - _date(o["delivered"])).days <= self.p["return_days"]
        )

    def find(self, c: dict) -> list:
        return [call(f"find_{self.voc['customer']}", email=c["email"])]

    def who(self, c: dict) -> str:
        return f"{c['name']} ({c['email']})"

    def unique_date(self, o: dict) -> bool:
        return sum(1 for x in self.of(o["customer_id"]) if x["placed"] == o["placed"]) == 1

    # kinds
    def return_two(self, rng):
        """Return two products of a delivered order; one may be final sale (the rule refuses it)."""
        cands = [
            o
            for o in self.orders
            if self.returnable(o) and len(self.lines[o["id"]]) >= 2 and self.unique_date(o)
        ]
        if not cands:
            return None
        o = rng.choice(cands)
        lines = self.lines[o["id"]]
        final = [x for x in lines if self.products[x["product_id"]]["final_sale"]]
        other = [x for x in lines if x not in final]
        if final and other and rng.random() < 0.5:  # half the time the policy must refuse one of the two
            two = [rng.choice(final), rng.choice(other)]
            rng.shuffle(two)
        else:
            two = rng.sample(lines, 2)
        c = self.customers[o["customer_id"]]
        method = rng.choice(["original", "store_credit"])
        ok = [x for x in two if not self.products[x["product_id"]]["final_sale"]]
        if not ok:
            return None
        names = [self.products[x["product_id"]]["name"] for x in two]
        prod = self.voc["product"]
        i, text = phrase(
            rng,
            [
                "Hi, this is {{ who }}. I'd like to return the {{ a }} and the {{ b }} from my order of {{ day }}, "
                "{{ how }}.",
                "Hello! {{ who }} here. Could you take back the {{ a }} and the {{ b }} I got in the order I placed "
                "on {{ day }}? {{ How }}, please.",
                "I'm {{ who }}. Two things from my {{ day }} order need to go back: the {{ a }} and the {{ b }}. "
                "{{ How }}.",
            ],
            who=self.who(c),
            a=names[0],
            b=names[1],
            day=_spoken(o["placed"]),
            how="refunded to my card" if method == "original" else "as store credit",
            How="Refund to my card" if method == "original" else "Store credit is fine",
        )
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"]}),
            call("get_order", order_id=o["id"]),
        ]
        sol += [
            call(
                f"return_{prod}",
                order_id=o["id"],
                **{f"{prod}_id": x["product_id"]},
                quantity=x["quantity"],
                refund_to=method,
            )
            for x in ok
        ]
        return candidate(
            "catalogue_orders",
            "return_two",
            i,
            level=3 if len(ok) == 2 else 4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=3,
            distractors=len(self.lines[o["id"]]) - 2 + (len(ok) < 2),
        )

    def cancel_unshipped(self, rng, held: bool = False):
        """Cancel every order still processing; shipped ones cannot be (several writes, a rule that binds)."""
        cids = [
            cid
            for cid in self.customers
            if len(self.of(cid, "processing")) >= 1
            and len(self.of(cid, "processing")) + len(self.of(cid, "shipped")) >= 2
        ]
        if not cids:
            return None
        c = self.customers[rng.choice(cids)]
        todo = self.of(c["id"], "processing")
        instructions, facts = None, 0
        if held:  # the user says who they are only when asked
            instructions = (
                f"You are {c['name']}; your email is {c['email']}. You want every order of yours that can still be "
                "cancelled cancelled. Give your email only when asked for it."
            )
            facts = 1
            i, text = phrase(
                rng,
                [
                    "Hi, it's {{ first }}. I'd like to cancel everything I've ordered that can still be cancelled.",
                    "{{ first }} here: please cancel whatever of my orders hasn't gone out yet.",
                    "Hello, this is {{ first }}. Can you cancel my orders that are still being prepared?",
                ],
                first=c["name"],
            )
            kind = "user_cancel"
        else:
            kind = "cancel_unshipped"
            i, text = phrase(
                rng,
                [
                    "Hi, {{ who }} here. Please cancel all my orders that haven't shipped yet.",
                    "This is {{ who }}. I've changed my mind: cancel whatever of mine can still be cancelled.",
                    "I'm {{ who }}. Could you stop every order of mine that is still being prepared?",
                ],
                who=self.who(c),
            )
        sol = self.find(c) + [call("list_orders", **{f"{self.voc['customer']}_id": c["id"]})]
        sol += [call("cancel_order", order_id=o["id"]) for o in todo]
        return candidate(
            "catalogue_orders",
            kind,
            i,
            level=2 + min(len(todo), 3),
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            user_instructions=instructions,
            constraints=1,
            distractors=len(self.of(c["id"], "shipped")),
            user_facts=facts,
        )

    def refund_quote(self, rng):
        """How much would returning everything returnable of an order to the card give back (rules change it)."""
        cands = [o for o in self.orders if self.returnable(o) and self.unique_date(o)]
        if not cands:
            return None
        o = rng.choice(cands)
        lines = self.lines[o["id"]]
        ok = [x for x in lines if not self.products[x["product_id"]]["final_sale"]]
        if not ok:
            return None
        value = round(
            sum(round(x["unit_price"] * x["quantity"] * (1 - self.p["restock"] / 100), 2) for x in ok), 2
        )
        naive = round(sum(x["unit_price"] * x["quantity"] for x in lines), 2)
        if abs(value - naive) < 0.01:
            return None
        c = self.customers[o["customer_id"]]
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. If I sent back everything I'm allowed to from my order of {{ day }} and had it "
                "refunded to my card, how much would I get?",
                "{{ who }} here: what would I get back on my card for returning all I can from the order I placed "
                "on {{ day }}?",
                "Quick question from {{ who }}: how much money comes back to my card if I return whatever is "
                "returnable from my {{ day }} order?",
            ],
            who=self.who(c),
            day=_spoken(o["placed"]),
        )
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"]}),
            call("get_order", order_id=o["id"]),
            call("submit_answer", answer=money(value)),
        ]
        return candidate(
            "catalogue_orders",
            "refund_quote",
            i,
            level=3,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=money(naive),
            constraints=3,
            distractors=len(lines) - len(ok),
        )

    def order_quote(self, rng):
        """What would a new order cost, delivered (member discount, free-delivery threshold)."""
        c = self.customers[rng.choice(sorted(self.customers))]
        stocked = [x for x in self.products.values() if x["stock"] >= 2]
        if len(stocked) < 2:
            return None
        a, b = rng.sample(stocked, 2)
        qa, qb = rng.randint(1, 2), rng.randint(1, 2)
        subtotal = a["price"] * qa + b["price"] * qb
        value = _total(self.p, c["tier"], subtotal)
        if abs(value - round(subtotal, 2)) < 0.01:
            return None
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. What would {{ qa }} {{ a }} and {{ qb }} {{ b }} come to for me, delivery included?",
                "{{ who }} here. If I ordered {{ qa }} of the {{ a }} and {{ qb }} of the {{ b }}, what would I pay "
                "in total with delivery?",
                "How much would it cost me, {{ who }}, to get {{ qa }} {{ a }} plus {{ qb }} {{ b }} delivered?",
            ],
            who=self.who(c),
            a=a["name"],
            b=b["name"],
            qa=qa,
            qb=qb,
        )
        sol = self.find(c) + [
            call(f"search_{self.voc['products']}", category=a["category"]),
            call(f"search_{self.voc['products']}", category=b["category"]),
            call("submit_answer", answer=money(value)),
        ]
        return candidate(
            "catalogue_orders",
            "order_quote",
            i,
            level=2,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=money(round(subtotal, 2)),
            constraints=2,
        )

    def reorder_substitute(self, rng):
        """Reorder an old order; out-of-stock products are replaced by the cheapest in-stock one of the category."""
        cands = [
            o
            for o in self.orders
            if o["status"] == "delivered"
            and self.unique_date(o)
            and any(self.products[x["product_id"]]["stock"] < x["quantity"] for x in self.lines[o["id"]])
        ]
        if not cands:
            return None
        o = rng.choice(cands)
        c = self.customers[o["customer_id"]]
        ids, qtys = [], []
        for x in self.lines[o["id"]]:
            prod = self.products[x["product_id"]]
            pick = prod
            if prod["stock"] < x["quantity"]:
                pool = sorted(
                    (
                        y
                        for y in self.products.values()
                        if y["category"] == prod["category"]
                        and y["stock"] >= x["quantity"]
                        and y["id"] not in ids
                    ),
                    key=lambda y: (y["price"], y["id"]),
                )
                if not pool or (len(pool) > 1 and pool[0]["price"] == pool[1]["price"]):
                    return None
                pick = pool[0]
            if pick["id"] in ids:
                return None
            ids.append(pick["id"])
            qtys.append(x["quantity"])
        i, text = phrase(
            rng,
            [
                "Hi, {{ who }} here. Please order again everything from my order of {{ day }}, same quantities. "
                "If something is out of stock, take the cheapest {{ product }} of the same kind that is in stock.",
                "I'm {{ who }}. Could you repeat my {{ day }} order for me? Where an item can't be had, swap in the "
                "least expensive one in stock from the same category.",
                "{{ who }}: I'd like the same things as in the order I placed on {{ day }}. Anything sold out should "
                "be replaced by the cheapest available {{ product }} in its category.",
            ],
            who=self.who(c),
            day=_spoken(o["placed"]),
            product=self.voc["product"],
        )
        prod = self.voc["product"]
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"]}),
            call("get_order", order_id=o["id"]),
        ]
        cats = sorted({self.products[x["product_id"]]["category"] for x in self.lines[o["id"]]})
        sol += [call(f"search_{self.voc['products']}", category=cat, in_stock_only=True) for cat in cats]
        sol.append(
            call(
                "place_order",
                **{f"{self.voc['customer']}_id": c["id"], f"{prod}_ids": ids, "quantities": qtys},
            )
        )
        return candidate(
            "catalogue_orders",
            "reorder_substitute",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=3,
            distractors=len(cats),
        )

    def user_return(self, rng):
        """The user holds the facts: who they are, which order, what goes back, how to refund."""
        cands = [o for o in self.orders if self.returnable(o) and self.unique_date(o)]
        if not cands:
            return None
        o = rng.choice(cands)
        ok = [x for x in self.lines[o["id"]] if not self.products[x["product_id"]]["final_sale"]]
        if not ok:
            return None
        x = rng.choice(ok)
        c = self.customers[o["customer_id"]]
        method = rng.choice(["original", "store_credit"])
        name = self.products[x["product_id"]]["name"]
        prod = self.voc["product"]
        i, text = phrase(
            rng,
            [
                "Hi, I'd like to send back the {{ name }} I bought.",
                "Hello, I need to return the {{ name }} I got from you.",
                "Can you help me return the {{ name }}?",
            ],
            name=name,
        )
        if (
            sum(
                1 for y in self.of(c["id"]) for z in self.lines[y["id"]] if z["product_id"] == x["product_id"]
            )
            > 1
        ):
            return None  # "the X I bought" must name one line of this customer's orders
        instructions = (
            f"You are {c['name']}; your email is {c['email']}. You want to return the {name} "
            f"({x['quantity']} of them) from the order you placed on {_spoken(o['placed'])}, and you want the "
            f"money {'back on your card' if method == 'original' else 'as store credit'}. Give each detail only "
            "when asked for it."
        )
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"]}),
            call("get_order", order_id=o["id"]),
            call(
                f"return_{prod}",
                order_id=o["id"],
                **{f"{prod}_id": x["product_id"]},
                quantity=x["quantity"],
                refund_to=method,
            ),
        ]
        return candidate(
            "catalogue_orders",
            "user_return",
            i,
            level=3,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            user_instructions=instructions,
            user_facts=3,
            constraints=2,
        )

    def gift_plan(self, rng, held: bool = False):
        """Planning: one in-stock, not-final-sale product from each of three categories within a budget."""
        cats = rng.sample(self.voc["categories"], 3)
        pools = [
            [
                x
                for x in self.products.values()
                if x["category"] == cat and x["stock"] >= 1 and not x["final_sale"]
            ]
            for cat in cats
        ]
        if any(len(pool) < 2 for pool in pools):
            return None
        c = self.customers[rng.choice(sorted(self.customers))]
        combos = sorted(
            (_total(self.p, c["tier"], sum(x["price"] for x in combo)), [x["id"] for x in combo])
            for combo in itertools.product(*pools)
        )
        # A budget that some plans meet and most do not: the agent must search, not take the first of each.
        k = max(1, len(combos) // 6)
        budget = float(int(combos[k][0]) + 1)
        valid = [ids for total, ids in combos if total <= budget]
        if len(valid) < 2 or len(valid) > len(combos) // 3:
            return None
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. Please order me one {{ product }} from each of {{ c1 }}, {{ c2 }} and {{ c3 }}. "
                "Nothing on final sale, one of each, and the whole order with delivery must stay within {{ budget }}.",
                "{{ who }} here. I want to buy three gifts: something from {{ c1 }}, something from {{ c2 }} and "
                "something from {{ c3 }}. None of them final sale, and no more than {{ budget }} all in. Go ahead "
                "and place the order.",
                "Hi, this is {{ who }}. Put together an order with exactly one {{ product }} each from {{ c1 }}, "
                "{{ c2 }} and {{ c3 }}; keep clear of final-sale {{ products }} and keep the total with delivery at "
                "{{ budget }} or less.",
            ],
            who=self.who(c),
            c1=cats[0],
            c2=cats[1],
            c3=cats[2],
            budget=f"{budget:.0f}",
            product=self.voc["product"],
            products=self.voc["products"],
        )
        instructions, facts, kind = None, 0, "gift_plan"
        if held:  # the user holds the email, the categories and the budget
            kind, facts = "user_gift_plan", 3
            instructions = (
                f"You are {c['name']}; your email is {c['email']}. You want three gifts ordered: one "
                f"{self.voc['product']} each from {cats[0]}, {cats[1]} and {cats[2]}, none bought on final sale, "
                f"and the whole order with delivery at {budget:.0f} or less. Say which categories and the budget "
                "when asked; give your email when asked."
            )
            i, text = phrase(
                rng,
                [
                    "Hi, it's {{ first }}. I'd like to order a few gifts; can you help me pick them?",
                    "{{ first }} here. I need three presents ordered within my budget.",
                    "Hello, this is {{ first }}: could you put a gift order together for me?",
                ],
                first=c["name"],
            )
        prod = self.voc["product"]
        sol = self.find(c) + [
            call(f"search_{self.voc['products']}", category=cat, in_stock_only=True) for cat in cats
        ]
        sol.append(
            call(
                "place_order",
                **{f"{self.voc['customer']}_id": c["id"], f"{prod}_ids": valid[0], "quantities": [1, 1, 1]},
            )
        )
        params = {
            "customer_id": c["id"],
            "categories": cats,
            "budget": budget,
            "orders_before": self.n_orders,
            "refunds_before": self.n_refunds,
        }
        return candidate(
            "catalogue_orders",
            kind,
            i,
            level=5,
            prompt=text,
            verifier="check_plan_order",
            params=params,
            solution=sol,
            answer="Done.",
            constraints=5,
            distractors=sum(len(pool) for pool in pools) - 3,
            user_instructions=instructions,
            user_facts=facts,
        )

    def spend_lookup(self, rng):
        """How much did the customer pay for the orders delivered in a month (other months are distractors)."""
        c = self.customers[rng.choice(sorted(self.customers))]
        delivered = [o for o in self.of(c["id"], "delivered")]
        months = sorted({o["delivered"][:7] for o in delivered})
        if not months:
            return None
        month = rng.choice(months)
        mine = [o for o in delivered if o["delivered"][:7] == month]
        if len(mine) == len(delivered):  # summing every delivered order must not be the answer
            return None
        value = round(sum(o["total"] for o in mine), 2)
        label = dt.date.fromisoformat(month + "-01").strftime("%B %Y")
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. How much did I pay in total for the orders that were delivered to me in {{ month }}?",
                "{{ who }} here. What did the orders I received in {{ month }} cost me altogether?",
                "Could you add up what I, {{ who }}, paid for everything delivered in {{ month }}?",
            ],
            who=self.who(c),
            month=label,
        )
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"], "status": "delivered"}),
            call("submit_answer", answer=money(value)),
        ]
        total_all = round(sum(o["total"] for o in self.of(c["id"])), 2)
        return candidate(
            "catalogue_orders",
            "spend_lookup",
            i,
            level=2,
            prompt=text,
            verifier="check_answer",
            params={"expected": value},
            solution=sol,
            guess=money(total_all),
            constraints=2,
            distractors=len(self.of(c["id"])) - len(mine),
        )

    def exchange(self, rng):
        """An exchange is a return (as store credit) and a new order: two writes, and the return must be allowed."""
        cands = [o for o in self.orders if self.returnable(o) and self.unique_date(o)]
        if not cands:
            return None
        o = rng.choice(cands)
        ok = [x for x in self.lines[o["id"]] if not self.products[x["product_id"]]["final_sale"]]
        if not ok:
            return None
        x = rng.choice(ok)
        old = self.products[x["product_id"]]
        pool = [
            y
            for y in self.products.values()
            if y["category"] == old["category"] and y["id"] != old["id"] and y["stock"] >= 1
        ]
        if not pool:
            return None
        new = rng.choice(pool)
        c = self.customers[o["customer_id"]]
        prod = self.voc["product"]
        i, text = phrase(
            rng,
            [
                "I'm {{ who }}. I'd like to exchange the {{ old }} from my order of {{ day }} for the {{ new }}. Put the "
                "refund on my account as store credit and send me the {{ new }}.",
                "{{ who }} here. Please swap the {{ old }} I got in my {{ day }} order for one {{ new }}: take the old one "
                "back for store credit and order the new one for me.",
                "Hello, this is {{ who }}. The {{ old }} from the order I placed on {{ day }} isn't right; return it as "
                "store credit and place an order for a single {{ new }} instead.",
            ],
            who=self.who(c),
            old=old["name"],
            new=new["name"],
            day=_spoken(o["placed"]),
        )
        sol = self.find(c) + [
            call("list_orders", **{f"{self.voc['customer']}_id": c["id"]}),
            call("get_order", order_id=o["id"]),
            call(
                f"return_{prod}",
                order_id=o["id"],
                **{f"{prod}_id": x["product_id"]},
                quantity=x["quantity"],
                refund_to="store_credit",
            ),
            call(f"search_{self.voc['products']}", category=old["category"], in_stock_only=True),
            call(
                "place_order",
                **{f"{self.voc['customer']}_id": c["id"], f"{prod}_ids": [new["id"]], "quantities": [1]},
            ),
        ]
        return candidate(
            "catalogue_orders",
            "exchange",
            i,
            level=4,
            prompt=text,
            verifier="check_state",
            params={},
            solution=sol,
            answer="Done.",
            constraints=2,
            distractors=len(pool) - 1,
        )


SHAPE = CatalogueOrders()

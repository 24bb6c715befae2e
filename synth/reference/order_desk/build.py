"""Build the order-desk reference environment from a seed: a shop database (customers, products, orders), the
tools with their business rules, and tasks whose expected final state comes from replaying the reference
solution through the env server itself.

    python -m toolgym.synth.reference.order_desk.build OUT_STORE [--seed 0]
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import tempfile
from pathlib import Path

from toolgym.envs.inside.envserver import EnvServer
from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import ToolCall, write_tasks

from ...family import Candidate, render_prompt
from ..common import main, state_db, task_rows, write_env

ENV_ID = "order_desk"
HERE = Path(__file__).resolve().parent
FIRST = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kemal", "Lena"]
LAST = ["Silva", "Okafor", "Novak", "Haddad", "Kim", "Moreau", "Rossi", "Tanaka"]
PRODUCTS = [
    ("Electric Kettle", "kitchen"),
    ("Chef Knife", "kitchen"),
    ("Cast Iron Pan", "kitchen"),
    ("Tea Set", "kitchen"),
    ("Desk Lamp", "office"),
    ("Notebook Pack", "office"),
    ("Ergonomic Chair", "office"),
    ("Monitor Stand", "office"),
    ("Trail Backpack", "outdoor"),
    ("Water Bottle", "outdoor"),
    ("Camping Stove", "outdoor"),
    ("Rain Jacket", "outdoor"),
    ("Yoga Mat", "fitness"),
    ("Jump Rope", "fitness"),
    ("Dumbbell Set", "fitness"),
    ("Foam Roller", "fitness"),
]
STREETS = ["Oak Lane", "Mill Road", "Harbor Street", "Elm Avenue", "Station Square", "Park Row"]
TOWNS = ["Riverton", "Lakeside", "Hillford", "Brookvale"]
DESCRIPTION = (
    "You are the order desk of an online shop. Help the customer with their orders using the tools: identify "
    "them by email, look up orders and products, and place, cancel or change orders. Only pending orders can be "
    "changed; gold customers get 10% off. When the request is done, reply to the customer without a tool call."
)


def make_database(path: Path, rng: random.Random) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, email TEXT UNIQUE, tier TEXT, address TEXT);
        CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT, category TEXT, price REAL, stock INTEGER);
        CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT, status TEXT, created_at TEXT, total REAL,
                             address TEXT, cancel_reason TEXT);
        CREATE TABLE order_items (order_id TEXT, product_id TEXT, quantity INTEGER, unit_price REAL,
                                  PRIMARY KEY (order_id, product_id));
        """
    )
    for i, (name, cat) in enumerate(PRODUCTS, 1):
        db.execute(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            (f"P{i:03d}", name, cat, float(rng.randint(5, 120)) + 0.99, rng.randint(3, 30)),
        )
    prices = {f"P{i:03d}": None for i in range(1, len(PRODUCTS) + 1)}
    for pid in prices:
        prices[pid] = db.execute("SELECT price FROM products WHERE id = ?", (pid,)).fetchone()[0]
    n = 0
    for c, first in enumerate(FIRST, 1):
        last = rng.choice(LAST)
        cid, tier = f"C{c:03d}", rng.choice(["standard", "standard", "gold"])
        address = f"{rng.randint(1, 99)} {rng.choice(STREETS)}, {rng.choice(TOWNS)}"
        db.execute(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            (cid, f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com", tier, address),
        )
        statuses = ["pending"] + rng.choices(
            ["pending", "shipped", "delivered", "cancelled"], k=rng.randint(1, 3)
        )
        for status in statuses:
            n += 1
            oid = f"O{n:04d}"
            when = dt.datetime(2025, 5, 1, 10) + dt.timedelta(hours=rng.randint(0, 700))
            items = rng.sample(sorted(prices), rng.randint(1, 3))
            subtotal = 0.0
            for pid in items:
                qty = rng.randint(1, 3)
                subtotal += qty * prices[pid]
                db.execute("INSERT INTO order_items VALUES (?, ?, ?, ?)", (oid, pid, qty, prices[pid]))
            total = round(subtotal * (0.9 if tier == "gold" else 1.0), 2)
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (oid, cid, status, when.isoformat(), total, address),
            )
    db.commit()
    db.close()


def _q(db: sqlite3.Connection, sql: str, args=()) -> list[sqlite3.Row]:
    db.row_factory = sqlite3.Row
    return db.execute(sql, args).fetchall()


TURNS = {
    "cancel": ["{{ me }} Please cancel my pending order {{ order }}, I ordered it by mistake."],
    "quantity": [
        "{{ me }} In my pending order {{ order }}, I want {{ qty }} of the {{ item }} instead of {{ was }}."
    ],
    "address": ["{{ me }} I moved: please ship my pending order {{ order }} to {{ address }}."],
    "place": ["{{ me }} I'd like to order two of the {{ new }}."],
    "cancel_then_place": [
        "{{ me }} Please cancel my pending order {{ order }}; I found it cheaper elsewhere.",
        "Thanks. Now order two of the {{ new }} for me, please.",
    ],
}
"""The user turns of each kind of request (jinja2)."""


def make_task(
    db: sqlite3.Connection, rng: random.Random, kind: str
) -> tuple[list[str], list[ToolCall], str] | None:
    """(user turns, reference tool calls, final reply) for one request of `kind`, over the seed database."""
    cust = rng.choice(_q(db, "SELECT * FROM customers ORDER BY id"))
    pending = _q(
        db, "SELECT * FROM orders WHERE customer_id = ? AND status = 'pending' ORDER BY id", (cust["id"],)
    )
    if not pending:
        return None
    order = rng.choice(pending)
    items = _q(
        db,
        "SELECT i.*, p.name FROM order_items i JOIN products p ON p.id = i.product_id "
        "WHERE order_id = ? ORDER BY product_id",
        (order["id"],),
    )
    lookup = [
        ToolCall(name="find_customer", arguments={"email": cust["email"]}),
        ToolCall(name="list_orders", arguments={"customer_id": cust["id"], "status": "pending"}),
        ToolCall(name="get_order", arguments={"order_id": order["id"]}),
    ]
    slots = {"me": render_prompt("I'm {{ name }} ({{ email }}).", name=cust["name"], email=cust["email"])}
    slots.update(order=order["id"])
    item = rng.choice(items)
    products = _q(db, "SELECT * FROM products WHERE stock >= 2 ORDER BY id")
    new = rng.choice(products)
    slots.update(new=new["name"])
    place = [
        ToolCall(name="search_products", arguments={"query": new["name"].split()[-1].lower()}),
        ToolCall(
            name="place_order",
            arguments={"customer_id": cust["id"], "items": [{"product_id": new["id"], "quantity": 2}]},
        ),
    ]
    if kind == "cancel":
        calls = lookup + [
            ToolCall(name="cancel_order", arguments={"order_id": order["id"], "reason": "ordered_by_mistake"})
        ]
    elif kind == "quantity":
        qty = 4 if item["quantity"] != 4 else 5
        slots.update(qty=qty, item=item["name"], was=item["quantity"])
        calls = lookup + [
            ToolCall(
                name="change_quantity",
                arguments={"order_id": order["id"], "product_id": item["product_id"], "quantity": qty},
            )
        ]
    elif kind == "address":
        address = f"{rng.randint(100, 199)} {rng.choice(STREETS)}, {rng.choice(TOWNS)}"
        slots.update(address=address)
        calls = lookup + [
            ToolCall(name="update_order_address", arguments={"order_id": order["id"], "address": address})
        ]
    elif kind == "place":
        calls = lookup[:1] + place
    else:  # two turns: cancel, then a new order
        calls = lookup + [
            ToolCall(name="cancel_order", arguments={"order_id": order["id"], "reason": "found_cheaper"})
        ]
        calls += place
    turns = [render_prompt(text, **slots) for text in TURNS[kind]]
    return turns, calls, "Done: your request is complete."


def build(store: str | Path, seed: int = 0, n_tasks: int = 5) -> Path:
    """Write `<store>/order_desk/` deterministically from `seed`."""
    out = Path(store) / ENV_ID
    db_path = state_db(out)
    make_database(db_path, random.Random(seed))
    write_env(
        out, seed, [], category="general", domain="order_desk", description=DESCRIPTION, source_dir=HERE
    )
    verify = load_tools_module(out / "verify.py", "verify")
    db = sqlite3.connect(db_path)
    initial = verify.db_digest(db)
    kinds = ["cancel", "quantity", "address", "place", "cancel_then_place"]
    tasks, i = [], 0
    while len(tasks) < n_tasks and i < 100:
        rng = random.Random(seed * 100_003 + i)
        i += 1
        kind = kinds[len(tasks) % len(kinds)]
        made = make_task(db, rng, kind)
        if made is None:
            continue
        turns, calls, reply = made
        task_id = f"{ENV_ID}-{len(tasks):03d}"  # as task_rows numbers it
        with tempfile.TemporaryDirectory() as scratch:  # the expected state is what the solution leaves
            server = EnvServer(str(out), scratch=scratch)
            server.reset({"id": task_id})
            replies = [server.call(c.name, json.dumps(c.arguments)) for c in calls]
            if not all(r["ok"] for r in replies):
                continue
            expected = verify.db_digest(server.ctx.db)
            server.ctx.close()
        if expected == initial:
            continue
        tasks.append(
            Candidate(
                template=f"order_desk/{kind}",
                difficulty=1 + 2 * (kind == "cancel_then_place"),
                prompt=turns,
                verifier="check_final_state",
                params={"expected": expected},
                solution=calls,
                answer=reply,
            )
        )
    db.close()
    write_tasks(out, task_rows(ENV_ID, "general", ENV_ID, seed, tasks))
    return out


if __name__ == "__main__":
    main(build, __doc__)

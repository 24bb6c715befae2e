"""The shortcut solvers, through a real env server over a small shop environment: each solves a task built to
fall to it and none solves a task that needs reasoning; probes see results only through `observe=True`."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from toolgym.envs import EnvSpec, Provenance, ToolCall, replay, tools_from_module
from toolgym.envs.inside.envserver import OBSERVE_MAX_CHARS
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import write_env_spec
from toolgym.synth.admission import shortcut_solvers
from toolgym.synth.family import Candidate
from toolgym.synth.shortcuts import NAMES, SHORTCUTS, Toolbox, clues

SHOP_TOOLS = '''
"""A shop: items with categories and prices, customers, orders."""

from toolgym_env import ToolError, tool


@tool
def list_items(ctx, category: str = "") -> list:
    """List the items of the shop (id, name, category, price), optionally of one category.

    Args:
        category: Only this category.
    """
    sql = "SELECT id, name, category, price FROM items" + (" WHERE category = ?" if category else "")
    return ctx.rows(sql + " ORDER BY id", (category,) if category else ())


@tool
def get_item(ctx, item_id: str) -> dict:
    """One item's details: name, category, price and stock.

    Args:
        item_id: The item's id.
    """
    rows = ctx.rows("SELECT * FROM items WHERE id = ?", (item_id,))
    if not rows:
        raise ToolError(f"no item {item_id}")
    return rows[0]


@tool
def find_customer(ctx, email: str) -> dict:
    """Find a customer by email address.

    Args:
        email: The customer's email.
    """
    rows = ctx.rows("SELECT id, name, email FROM customers WHERE email = ?", (email,))
    if not rows:
        raise ToolError(f"no customer {email}")
    return rows[0]


@tool
def list_orders(ctx, customer_id: str) -> list:
    """A customer's orders (id, item_id, quantity, status).

    Args:
        customer_id: The customer's id.
    """
    return ctx.rows(
        "SELECT id, item_id, quantity, status FROM orders WHERE customer_id = ? ORDER BY id", (customer_id,)
    )


@tool
def list_payments(ctx, customer_id: str) -> list:
    """A customer's payments (id, amount, status), oldest first.

    Args:
        customer_id: The customer's id.
    """
    return ctx.rows("SELECT id, amount, status FROM payments WHERE customer_id = ? ORDER BY id", (customer_id,))


@tool
def dump(ctx, size: int) -> str:
    """A long report of the given size.

    Args:
        size: How many characters.
    """
    return "r" * size


@tool(access="write")
def buy_item(ctx, customer_id: str, item_id: str, quantity: int) -> dict:
    """Buy an item for a customer.

    Args:
        customer_id: Who buys.
        item_id: What.
        quantity: How many.
    """
    if not ctx.rows("SELECT id FROM customers WHERE id = ?", (customer_id,)):
        raise ToolError(f"no customer {customer_id}")
    if not ctx.rows("SELECT id FROM items WHERE id = ?", (item_id,)):
        raise ToolError(f"no item {item_id}")
    ctx.db.execute(
        "INSERT INTO orders (id, customer_id, item_id, quantity, status) VALUES (?, ?, ?, ?, 'open')",
        (ctx.new_id("R"), customer_id, item_id, quantity),
    )
    return {"ok": True}


@tool(access="write")
def cancel_order(ctx, order_id: str) -> dict:
    """Cancel an open order.

    Args:
        order_id: The order's id.
    """
    if not ctx.rows("SELECT id FROM orders WHERE id = ? AND status = 'open'", (order_id,)):
        raise ToolError(f"no open order {order_id}")
    ctx.db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
    return {"ok": True}


@tool(submit=True)
def submit_answer(ctx, answer: str) -> str:
    """Submit the final answer; this ends the conversation.

    Args:
        answer: The answer.
    """
    ctx.submit(answer)
    return "submitted"
'''

SHOP_VERIFY = """
def check_answer(ctx, answer, calls, expected):
    return (1.0, "right") if str(answer).strip() == expected else (0.0, "wrong")


def check_order(ctx, answer, calls, customer_id, item_id, quantity):
    rows = ctx.rows("SELECT * FROM orders WHERE customer_id = ? AND item_id = ? AND status = 'open'",
                    (customer_id, item_id))
    return float(len(rows) == 1 and rows[0]["quantity"] == quantity)


def check_cancelled(ctx, answer, calls, order_id, others_open):
    cancelled = ctx.rows("SELECT id FROM orders WHERE id = ? AND status = 'cancelled'", (order_id,))
    still = ctx.rows("SELECT COUNT(*) AS n FROM orders WHERE status = 'open'")[0]["n"]
    return float(len(cancelled) == 1 and still == others_open)
"""

ITEMS = [
    ("I001", "Blue Harbor", "toy", 12.5, 4),
    ("I002", "Quiet Summit", "book", 30.0, 2),
    ("I003", "Golden Falcon", "toy", 7.25, 9),
    ("I004", "Swift River", "game", 44.0, 1),
    ("I005", "Green Meadow", "toy", 19.0, 3),
    ("I006", "Amber Canyon", "book", 8.75, 6),
]

PAYMENTS = [
    ("P1", "A001", 40.0, "settled"),
    ("P2", "A001", 15.5, "refunded"),
    ("P3", "A001", 22.25, "settled"),
    ("P4", "A001", 9.0, "pending"),
    ("P5", "A002", 12.0, "settled"),
]


def write_shop(store: Path) -> Path:
    env = store / "shop"
    (env / "state").mkdir(parents=True)
    (env / "tools.py").write_text(textwrap.dedent(SHOP_TOOLS))
    (env / "verify.py").write_text(SHOP_VERIFY)
    db = sqlite3.connect(env / "state" / "db.sqlite")
    db.execute("CREATE TABLE items (id TEXT, name TEXT, category TEXT, price REAL, stock INTEGER)")
    db.execute("CREATE TABLE customers (id TEXT, name TEXT, email TEXT)")
    db.execute("CREATE TABLE orders (id TEXT, customer_id TEXT, item_id TEXT, quantity INTEGER, status TEXT)")
    db.execute("CREATE TABLE payments (id TEXT, customer_id TEXT, amount REAL, status TEXT)")
    db.executemany("INSERT INTO payments VALUES (?, ?, ?, ?)", PAYMENTS)
    db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", ITEMS)
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?)",
        [("A001", "Ana Lima", "ana@example.com"), ("A002", "Bo Chen", "bo@example.com")],
    )
    db.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, 'open')",
        [("R0041", "A001", "I002", 1), ("R0042", "A002", "I004", 2)],
    )
    db.commit()
    db.close()
    spec = EnvSpec(
        id="shop",
        category="general",
        domain="shop",
        description="A small shop.",
        tools=tools_from_module(load_tools_module(env / "tools.py")),
        provenance=Provenance(producer="test", family="general/shop"),
    )
    write_env_spec(env, spec)
    return env


def cand(prompt: str, verifier: str, params: dict, solution: list[ToolCall], guess: str = "0") -> Candidate:
    return Candidate(
        template="test/shop/0",
        difficulty=1,
        prompt=[prompt],
        verifier=verifier,
        params=params,
        solution=solution,
        answer=None if verifier == "check_answer" else "Done.",
        guess=guess,
    )


def answer(value: str, *calls: ToolCall) -> list[ToolCall]:
    return [*calls, ToolCall(name="submit_answer", arguments={"answer": value})]


LIST = ToolCall(name="list_items", arguments={})
FIND_ANA = ToolCall(name="find_customer", arguments={"email": "ana@example.com"})
EASY = {
    # the product of the prompt's two numbers
    "prompt_only": cand(
        "I buy 12 boxes at 7 each: what do I pay?", "check_answer", {"expected": "84"}, answer("84")
    ),
    # the prompt's last number, copied
    "copy_number": cand(
        "Your locker code is printed on the slip as 4471. Repeat the locker code to me.",
        "check_answer",
        {"expected": "4471"},
        answer("4471"),
    ),
    # one lookup by the id the prompt names
    "one_call": cand(
        "How many of item I005 are in stock?",
        "check_answer",
        {"expected": "3"},
        answer("3", ToolCall(name="get_item", arguments={"item_id": "I005"})),
    ),
    # the cheapest row of a listing, among the category the prompt names
    "list_pick": cand(
        "Which toy is the cheapest? Give its name.",
        "check_answer",
        {"expected": "Golden Falcon"},
        answer("Golden Falcon", LIST),
    ),
    # the one write tool with the prompt's id
    "write_all": cand(
        "Please cancel my order R0041.",
        "check_cancelled",
        {"order_id": "R0041", "others_open": 1},
        [ToolCall(name="cancel_order", arguments={"order_id": "R0041"})],
    ),
    # two dependent reads: the customer by email, then the customer's payments by the id it returned; summed
    "chain": cand(
        "I'm ana@example.com. What do all my payments add up to?",
        "check_answer",
        {"expected": "86.75"},
        answer("86.75", FIND_ANA, ToolCall(name="list_payments", arguments={"customer_id": "A001"})),
    ),
}
CHAIN_MORE = {
    # the same chain, then the customer's one order cancelled with the id the second read returned
    "chain_write": cand(
        "I'm bo@example.com: please cancel my open order.",
        "check_cancelled",
        {"order_id": "R0042", "others_open": 1},
        [
            ToolCall(name="find_customer", arguments={"email": "bo@example.com"}),
            ToolCall(name="list_orders", arguments={"customer_id": "A002"}),
            ToolCall(name="cancel_order", arguments={"order_id": "R0042"}),
        ],
    ),
    # the chain, then a count of the rows a prompt word ("pending") names
    "chain_filtered": cand(
        "I'm ana@example.com. How many of my payments are still pending?",
        "check_answer",
        {"expected": "1"},
        answer("1", FIND_ANA, ToolCall(name="list_payments", arguments={"customer_id": "A001"})),
    ),
}
HARD = {
    # two dearest toys summed: a listing, then arithmetic over chosen rows
    "sum_two_dearest": cand(
        "What do the two most expensive toys cost together?",
        "check_answer",
        {"expected": "31.50"},
        answer("31.50", LIST),
    ),
    # a write whose item is the cheapest book, for a customer found by email
    "buy_cheapest_book": cand(
        "I'm bo@example.com: buy me three of whichever book is cheapest.",
        "check_order",
        {"customer_id": "A002", "item_id": "I006", "quantity": 3},
        [
            ToolCall(name="find_customer", arguments={"email": "bo@example.com"}),
            LIST,
            ToolCall(name="buy_item", arguments={"customer_id": "A002", "item_id": "I006", "quantity": 3}),
        ],
    ),
    # the same chain, but what the shop keeps is a policy no prompt word names: settled payments only (neither
    # the refunded nor the pending one), which no aggregate of all rows, or of rows a prompt word names, equals
    "payments_kept": cand(
        "I'm ana@example.com. Of what I have paid, how much does the shop keep after refunds and holds?",
        "check_answer",
        {"expected": "62.25"},
        answer("62.25", FIND_ANA, ToolCall(name="list_payments", arguments={"customer_id": "A001"})),
    ),
    # the customer's other order, by email
    "cancel_other": cand(
        "I'm ana@example.com. Cancel the open order that is not mine.",
        "check_cancelled",
        {"order_id": "R0042", "others_open": 1},
        [ToolCall(name="cancel_order", arguments={"order_id": "R0042"})],
    ),
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    env = write_shop(tmp_path_factory.mktemp("shop"))
    ops = LocalEnvServer(env)
    yield env, ops
    ops.close()


def tools_of(env: Path) -> list[dict]:
    import json

    return json.loads((env / "env.json").read_text())["tools"]


def test_references_pass(shop):
    env, ops = shop
    for name, c in {**EASY, **HARD, **CHAIN_MORE}.items():
        task = {"id": name, "verifier": c.verifier, "params": c.params}
        assert replay(ops, task, c.solution, c.answer)["reward"] == 1.0, name


def test_each_shortcut_solves_the_task_built_for_it(shop):
    env, ops = shop
    solved = shortcut_solvers(ops, list(EASY.items()), tools_of(env))
    for name in NAMES:
        assert name in solved[name], (name, solved[name])


def test_no_shortcut_solves_a_task_that_needs_reasoning(shop):
    env, ops = shop
    solved = shortcut_solvers(ops, list(HARD.items()), tools_of(env))
    assert solved == {name: [] for name in HARD}


def test_chain_solves_two_dependent_reads_that_one_round_misses(shop):
    env, ops = shop
    solved = shortcut_solvers(ops, [("chain", EASY["chain"]), *CHAIN_MORE.items()], tools_of(env))
    assert solved == {name: ["chain"] for name in ["chain", *CHAIN_MORE]}


def test_chain_follows_ids_by_name(shop):
    env, ops = shop
    box = Toolbox.of(tools_of(env))
    chain = SHORTCUTS[NAMES.index("chain")]
    prompt = EASY["chain"].prompt[0]
    probes = chain.probe_calls(prompt, box)
    assert probes[0] == FIND_ANA
    seen = observed(ops, probes)
    follows = chain.follow_calls(prompt, box, seen)
    # the customer's id goes to every `customer_id` slot, never to `item_id` or `email`; get_item takes the
    # ids of the rows of the listing the first round also made
    by_customer = {(x.name, x.arguments["customer_id"]) for x in follows if "customer_id" in x.arguments}
    assert by_customer == {("list_payments", "A001"), ("list_orders", "A001")}
    items = [x.arguments["item_id"] for x in follows if x.name == "get_item"]
    assert items and set(items) <= {row[0] for row in ITEMS}
    assert len(follows) == len({(x.name, str(x.arguments)) for x in follows})
    # no customer found, no customer's records read
    anon = "What do all my payments add up to?"
    assert all(
        x.name == "get_item"
        for x in chain.follow_calls(anon, box, observed(ops, chain.probe_calls(anon, box)))
    )


def observed(ops, calls: list[ToolCall]) -> dict:
    """What each call returns alone from a fresh state, keyed as the shortcuts key it."""
    from toolgym.synth.shortcuts import call_key, parse

    out = {}
    for x in calls:
        got = replay(ops, {"id": "p", "verifier": "", "params": {}}, [x], observe=True)["observed"][0]
        out[call_key(x)] = parse(got["content"]) if got["ok"] else None
    return out


def test_chain_second_round_is_bounded():
    reads = [
        {"function": {"name": "find_customer", "parameters": {"properties": {"email": {"type": "string"}}}}},
        *(
            {
                "function": {
                    "name": f"list_things_{k}",
                    "parameters": {
                        "properties": {"customer_id": {"type": "string"}},
                        "required": ["customer_id"],
                    },
                }
            }
            for k in range(12)
        ),
    ]
    box = Toolbox.of(reads)
    chain = SHORTCUTS[NAMES.index("chain")]
    prompt = "I'm ana@example.com."
    (probe,) = [p for p in chain.probe_calls(prompt, box) if p.name == "find_customer"]
    from toolgym.synth.shortcuts import MAX_FOLLOWS, call_key

    seen = {call_key(probe): [{"id": f"A{k:03}"} for k in range(5)]}
    follows = chain.follow_calls(prompt, box, seen)
    assert len(follows) == MAX_FOLLOWS
    assert follows == chain.follow_calls(prompt, box, dict(reversed(seen.items())))
    rows = {call_key(x): [{"id": f"T{k}", "amount": k, "status": "open"} for k in range(20)] for x in follows}
    scripts = chain.scripts(prompt, box, {**seen, **rows})
    assert 0 < len(scripts) <= 8 and scripts == chain.scripts(prompt, box, {**seen, **rows})


def test_bounded_and_deterministic(shop):
    env, ops = shop
    box = Toolbox.of(tools_of(env))
    for c in [*EASY.values(), *HARD.values(), *CHAIN_MORE.values()]:
        for s in SHORTCUTS:
            probes = s.probe_calls(c.prompt[0], box)
            assert len(probes) <= 4
            seen = observed(ops, probes)
            follows = s.follow_calls(c.prompt[0], box, seen)
            assert len(follows) <= 6 and follows == s.follow_calls(c.prompt[0], box, seen)
            reads = probes + follows
            assert all(not box.is_write(p.name) and p.name != "submit_answer" for p in reads)
            seen |= observed(ops, follows)
            first = s.scripts(c.prompt[0], box, seen)
            assert len(first) <= 8
            assert first == s.scripts(c.prompt[0], box, seen)


def test_answers_go_through_the_submit_tool(shop):
    env, _ = shop
    box = Toolbox.of(tools_of(env))
    (calls, text), *_ = SHORTCUTS[0].scripts("Is it 3 or 4?", box, {})
    assert calls[-1].name == "submit_answer" and calls[-1].arguments == {"answer": text}


def test_clues():
    c = clues(
        'I\'m ana.l57@example.com: book 2 x "Silver Canyon 92" and cancel R0041, A-12; total $1,204.50.'
    )
    assert c.emails == ["ana.l57@example.com"]
    assert c.quoted == ["Silver Canyon 92"]
    assert c.ids == ["R0041", "A-12"]
    assert c.numbers == ["2", "92", "1204.50"]
    assert c.free_numbers == ["2", "1204.50"]


def test_clues_same_in_every_process():
    """Sentence-initial names keep the prompt's order, whatever the process's string hashing (the probes and so
    the admitted tasks depend on it)."""
    import os
    import subprocess
    import sys

    prompt = "One of my trains has been cancelled, I'm told. Please rebook me. Thanks, Ana."
    code = f"from toolgym.synth.shortcuts import clues; print(clues({prompt!r}).names)"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(6)
    }
    assert seen == {str(clues(prompt).names) + "\n"}
    assert clues(prompt).names == ["I'm", "Ana", "One", "Please", "Thanks"]


def test_observe_returns_results_only_when_asked(shop):
    env, ops = shop
    task = {"id": "t", "verifier": "", "params": {}}
    plain = replay(ops, task, [LIST])
    assert "observed" not in plain
    seen = replay(ops, task, [LIST, ToolCall(name="get_item", arguments={"item_id": "nope"})], observe=True)
    listing, missing = seen["observed"]
    assert listing["ok"] and '"Golden Falcon"' in listing["content"]
    assert not missing["ok"] and "no item nope" in missing["content"]
    big = replay(ops, task, [ToolCall(name="dump", arguments={"size": 19999})], observe=True)
    assert len(big["observed"][0]["content"]) == 19999 <= OBSERVE_MAX_CHARS

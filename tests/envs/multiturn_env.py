"""A multi-turn environment in the shape of a stateful tool benchmark (BFCL multi-turn): two Python classes in a
lib/ package whose public methods are the tools, an initial configuration per task, several user turns with
per-turn tools and ground truth, one turn the tools cannot serve, and the built-in ground-truth verifier."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from toolgym.envs import EnvSpec, Provenance, TaskSpec, tools_from_module
from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import write_env_spec, write_tasks

BANK = '''
"""A tiny bank and a notebook: classes written with no thought of toolgym."""

import json
import os

with open(os.path.join(os.path.dirname(__file__), "fees.json")) as f:
    FEES = json.load(f)  # a data file beside the module, read at import


class Bank:
    def __init__(self):
        self.accounts = {}
        self.history = []
        self._lookups = 0  # private: not part of the state a checker compares

    def _load_scenario(self, config):
        self.accounts = dict(config.get("accounts", {}))

    def balance(self, account: str) -> dict:
        """Look up the balance of an account.

        Args:
            account: The account's id.
        """
        self._lookups += 1
        if account not in self.accounts:
            raise ValueError(f"there is no account {account}")
        return {"account": account, "balance": self.accounts[account]}

    def transfer(self, source: str, target: str, amount: int) -> str:
        """Move money from one account to another (a fee applies).

        Args:
            source: The account the money leaves.
            target: The account the money goes to.
            amount: How much to move.
        """
        amount = int(amount)  # the ground truth of some benchmarks passes "30" where the doc says integer
        fee = FEES["transfer"]
        if self.accounts.get(source, 0) < amount + fee:
            raise ValueError(f"{source} cannot cover {amount} plus the fee of {fee}")
        self.accounts[source] -= amount + fee
        self.accounts[target] = self.accounts.get(target, 0) + amount
        self.history.append([source, target, amount])
        return f"moved {amount} from {source} to {target}"


class Notebook:
    def __init__(self):
        self.notes = []

    def add_note(self, text: str) -> int:
        """Write a note down.

        Args:
            text: The note.
        """
        self.notes.append(text)
        return len(self.notes)

    def list_notes(self) -> list[str]:
        """Every note so far."""
        return list(self.notes)
'''

TOOLS = """
from bank import Bank, Notebook
from toolgym_env import tools_from_class

BANK = tools_from_class(Bank, setup="_load_scenario", read=["balance"])
NOTES = tools_from_class(Notebook, read=["list_notes"])
"""

CONFIG = {"Bank": {"accounts": {"A": 100, "B": 50}}}


def turns() -> list[dict]:
    return [
        {
            "prompt": "Move 30 from account A to account B.",
            "tools": ["balance", "transfer"],
            "solution": [{"name": "transfer", "arguments": {"source": "A", "target": "B", "amount": 30}}],
            "answer": "Done.",
        },
        {
            "prompt": [
                {"role": "system", "content": "The user may ask you to keep notes."},
                {"role": "user", "content": "What is B's balance now? Write it in a note."},
            ],
            "solution": [
                {"name": "balance", "arguments": {"account": "B"}},
                {"name": "add_note", "arguments": {"text": "B has 80"}},
            ],
            "answer": "B has 80; noted.",
        },
        {"prompt": "Also order me a pizza.", "solution": [], "answer": "I cannot order food."},
        {
            "prompt": "Move 10 back from B to A.",
            "max_steps": 3,
            "solution": [{"name": "transfer", "arguments": {"source": "B", "target": "A", "amount": 10}}],
            "answer": "Moved.",
        },
    ]


def build(store: Path, env_id: str = "bank-multiturn", lenient: bool = False) -> Path:
    """Write the environment (and its one task) into `store`; `lenient` ships foreign schemas instead."""
    env_dir = store / env_id
    (env_dir / "lib" / "bank").mkdir(parents=True)
    (env_dir / "lib" / "bank" / "__init__.py").write_text(textwrap.dedent(BANK).lstrip())
    (env_dir / "lib" / "bank" / "fees.json").write_text(json.dumps({"transfer": 0}))
    (env_dir / "tools.py").write_text(textwrap.dedent(TOOLS).lstrip())
    tools = tools_from_module(load_tools_module(env_dir / "tools.py"))  # lib/ is importable while it loads
    extra = {}
    if lenient:  # a benchmark's own docs: other words, a trailing space, a string-typed amount, no arg check
        for t in tools:
            t.function.description += " "
            t.metadata = {"source": "the benchmark's doc"}
            if t.function.name == "transfer":
                t.function.parameters["properties"]["amount"] = {"type": "integer", "description": "Amount."}
                t.check_arguments = False
        extra = {"schema_check": "lenient", "metadata": {"benchmark": "toy-multiturn", "version": "1"}}
    spec = EnvSpec(
        id=env_id,
        category="general",
        domain="banking",
        description="You help a bank customer. Use the tools.",
        tools=tools,
        provenance=Provenance(producer="import", family="toy-multiturn"),
        format_version=2,
        **extra,
    )
    write_env_spec(env_dir, spec)
    write_tasks(env_dir, [task(env_id)])
    return env_dir


def task(env_id: str = "bank-multiturn", **changes) -> TaskSpec:
    data = {
        "id": f"{env_id}-0",
        "env_id": env_id,
        "category": "general",
        "verifier": "toolgym:ground_truth",
        "turns": turns(),
        "config": CONFIG,
        "provenance": Provenance(producer="import", family="toy-multiturn"),
        **changes,
    }
    return TaskSpec.model_validate(data)


NATIVE_TOOLS = '''
"""The same bank and notebook as @tool functions over the episode's SQLite database (the native twin)."""

from toolgym_env import ToolError, tool


@tool
def balance(ctx, account: str) -> dict:
    """Look up the balance of an account.

    Args:
        account: The account's id.
    """
    rows = ctx.rows("SELECT balance FROM accounts WHERE id = ?", (account,))
    if not rows:
        raise ToolError(f"there is no account {account}")
    return {"account": account, "balance": rows[0]["balance"]}


@tool(access="write")
def transfer(ctx, source: str, target: str, amount: int) -> str:
    """Move money from one account to another (a fee applies).

    Args:
        source: The account the money leaves.
        target: The account the money goes to.
        amount: How much to move.
    """
    have = ctx.rows("SELECT balance FROM accounts WHERE id = ?", (source,))
    if not have or have[0]["balance"] < amount:
        raise ToolError(f"{source} cannot cover {amount} plus the fee of 0")
    ctx.db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, source))
    ctx.db.execute(
        "INSERT INTO accounts (id, balance) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET balance = balance + ?",
        (target, amount, amount),
    )
    ctx.db.execute("INSERT INTO history (source, target, amount) VALUES (?, ?, ?)", (source, target, amount))
    return f"moved {amount} from {source} to {target}"


@tool(access="write")
def add_note(ctx, text: str) -> int:
    """Write a note down.

    Args:
        text: The note.
    """
    ctx.db.execute("INSERT INTO notes (text) VALUES (?)", (text,))
    return ctx.rows("SELECT count(*) AS n FROM notes")[0]["n"]


@tool
def list_notes(ctx) -> list[str]:
    """Every note so far."""
    return [r["text"] for r in ctx.rows("SELECT text FROM notes ORDER BY rowid")]
'''


def build_native(store: Path, env_id: str = "bank-native") -> Path:
    """The native twin: the same tools as @tool functions over SQLite, the same task and verifier."""
    import sqlite3

    env_dir = store / env_id
    (env_dir / "state").mkdir(parents=True)
    (env_dir / "tools.py").write_text(textwrap.dedent(NATIVE_TOOLS).lstrip())
    db = sqlite3.connect(env_dir / "state" / "db.sqlite")
    db.executescript(
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER);"
        "CREATE TABLE history (source TEXT, target TEXT, amount INTEGER);"
        "CREATE TABLE notes (text TEXT);"
    )
    db.executemany("INSERT INTO accounts VALUES (?, ?)", sorted(CONFIG["Bank"]["accounts"].items()))
    db.commit()
    db.close()
    spec = EnvSpec(
        id=env_id,
        category="general",
        domain="banking",
        description="You help a bank customer. Use the tools.",
        tools=tools_from_module(load_tools_module(env_dir / "tools.py")),
        provenance=Provenance(producer="import", family="toy-multiturn"),
    )
    write_env_spec(env_dir, spec)
    write_tasks(env_dir, [task(env_id, config=None)])
    return env_dir

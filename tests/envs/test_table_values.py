"""table_values reuses a table's value for the file an episode opened when its watched connection vouches it
did not write that table: the values must always equal a fresh computation (after any mix of writes, and after
writes it cannot follow), unwritten tables must not be computed again, and nothing an episode did may reach the
values another episode gets."""

from __future__ import annotations

import random
import shutil
import sqlite3

import pytest
from toolgym.envs.inside import toolgym_env
from toolgym.envs.inside.toolgym_env import Context, table_values

from .seed_db import seed_db

CALLS: list[str] = []
"""Tables `_rows` was computed for (a spy that is still a plain function: a closure would not be cached)."""


def _rows(db, table: str) -> tuple:
    CALLS.append(table)
    cur = db.cursor()
    cur.row_factory = None
    return tuple(sorted(map(repr, cur.execute('SELECT * FROM "' + table + '"'))))


def _count(db, table: str) -> int:
    return db.execute('SELECT count(*) FROM "' + table + '"').fetchone()[0]


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    # every test copies the same seed bytes: without this, one test's stored values would serve the next
    monkeypatch.setattr(toolgym_env, "_TABLE_VALUES", {})
    CALLS.clear()


def _fresh(path, fn) -> dict:
    """fn over every table of the file, read by a plain connection."""
    db = sqlite3.connect(path)
    out = {t: fn(db, t) for t in toolgym_env._tables(db)}
    db.close()
    return out


@pytest.fixture
def env(tmp_path):
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()

    def episode(task_id: str) -> Context:
        shutil.copy(pristine, state / "db.sqlite")
        return Context(str(state), task_id)

    ctx = episode("t0")  # writes nothing: stores the values of the pristine file
    assert table_values(ctx.db, _rows) == _fresh(state / "db.sqlite", _rows)
    ctx.close()
    CALLS.clear()
    return episode, state / "db.sqlite"


WRITES = [
    "UPDATE items SET stock = stock - 1 WHERE id = 'I003'",
    "UPDATE items SET stock = stock WHERE id = 'I004'",  # a write that changes nothing
    "INSERT INTO orders VALUES ('{new}', 'P002', 'I005', 2)",
    "DELETE FROM orders WHERE id = 'R0003'",
    "UPDATE people SET credit = credit + 10 WHERE id = 'P007'",
    "INSERT OR REPLACE INTO people VALUES ('P001', 'renamed', 0)",
    "INSERT INTO people VALUES ('P001', 'x', 1) ON CONFLICT(id) DO UPDATE SET name = 'upserted'",
]


def test_values_equal_a_fresh_computation_after_random_writes(env):
    episode, path = env
    rng = random.Random(11)
    for i in range(40):
        ctx = episode(f"t{i}")
        for sql in rng.sample(WRITES, rng.randint(0, 3)):
            ctx.db.execute(sql.replace("{new}", ctx.new_id("R")))
        for fn in (_rows, _count):
            assert table_values(ctx.db, fn) == _fresh(path, fn)
        # a later write in the same episode is seen
        ctx.db.execute("UPDATE items SET stock = -5 WHERE id = 'I009'")
        assert table_values(ctx.db, _rows) == _fresh(path, _rows)
        ctx.close()


def test_unwritten_tables_are_not_computed_again(env):
    episode, path = env
    ctx = episode("t1")
    assert list(table_values(ctx.db, _rows)) == ["items", "orders", "people"]  # name order
    assert CALLS == []  # nothing written: every value is the pristine file's
    ctx.db.execute("UPDATE items SET stock = 0 WHERE id = 'I001'")
    got = table_values(ctx.db, _rows)
    assert CALLS == ["items"]
    assert got == _fresh(path, _rows)
    ctx.close()


@pytest.mark.parametrize(
    "act",
    [
        "second_connection",
        "create_table",
        "drop_table",
        "alter_table",
        "pragma",
        "trigger",
        "replaced_authorizer",
        "no_authorizer",
        "deserialize",
        "attach_same_file",
    ],
)
def test_writes_it_cannot_follow_compute_everything_fresh(env, act):
    episode, path = env
    ctx = episode("t1")
    before = table_values(ctx.db, _rows)
    db = ctx.db
    db.execute("UPDATE items SET stock = 99 WHERE id = 'I001'")  # something the watcher does follow
    if act == "second_connection":
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("UPDATE people SET name = 'sneaky' WHERE id = 'P003'")
        other.close()
    elif act == "create_table":
        db.execute("CREATE TABLE extra (x)")
        db.execute("INSERT INTO extra VALUES (1)")
    elif act == "drop_table":
        db.execute("DROP TABLE orders")
    elif act == "alter_table":
        db.execute("ALTER TABLE people ADD COLUMN note TEXT DEFAULT 'n'")
    elif act == "pragma":
        db.execute("PRAGMA user_version = 3")
        db.execute("UPDATE people SET name = 'after pragma' WHERE id = 'P004'")
    elif act == "trigger":
        db.execute("CREATE TRIGGER t AFTER UPDATE ON items BEGIN UPDATE people SET credit = -1; END")
        db.execute("UPDATE items SET stock = 1 WHERE id = 'I002'")
    elif act in ("replaced_authorizer", "no_authorizer"):
        db.set_authorizer((lambda *a: sqlite3.SQLITE_OK) if act == "replaced_authorizer" else None)
        db.execute("UPDATE people SET name = 'unwatched' WHERE id = 'P001'")
    elif act == "deserialize":
        src = sqlite3.connect(":memory:")
        src.execute("CREATE TABLE people (id TEXT)")
        src.execute("INSERT INTO people VALUES ('only')")
        db.deserialize(src.serialize())
    elif act == "attach_same_file":
        db.execute("ATTACH DATABASE ? AS twin", (str(path),))
        db.execute("UPDATE twin.people SET name = 'via twin' WHERE id = 'P005'")
    CALLS.clear()
    got = table_values(db, _rows)
    assert sorted(CALLS) == sorted(got)  # every table computed again
    if act == "deserialize":  # the connection holds the new database in memory, not the file
        assert got == {"people": ("('only',)",)}
    else:
        assert got == _fresh(path, _rows)
    assert got != before
    if act not in ("create_table", "drop_table"):
        assert got["people"] != before["people"]  # the change the watcher missed is in the values
    ctx.close()
    ctx = episode("t2")  # and the next episode, on a new copy, gets the pristine values again
    assert table_values(ctx.db, _rows) == before
    ctx.close()


def test_a_writing_episode_stores_nothing(tmp_path):
    """Values come only from connections that changed nothing: a first episode that wrote (and one whose
    writes the watcher missed) leaves no value behind for the episodes after it."""
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()
    pristine_values = _fresh(pristine, _rows)
    shutil.copy(pristine, state / "db.sqlite")
    ctx = Context(str(state), "t0")
    ctx.db.execute("UPDATE people SET name = 'first' WHERE id = 'P001'")
    assert table_values(ctx.db, _rows) == _fresh(state / "db.sqlite", _rows)
    assert toolgym_env._TABLE_VALUES == {}
    ctx.close()
    shutil.copy(pristine, state / "db.sqlite")
    ctx = Context(str(state), "t1")
    other = sqlite3.connect(state / "db.sqlite", isolation_level=None)
    ctx.db.execute("SELECT 1")  # opened (and its file hashed) before the other connection writes
    other.execute("UPDATE people SET name = 'other' WHERE id = 'P002'")
    other.close()
    assert table_values(ctx.db, _rows) == _fresh(state / "db.sqlite", _rows)
    assert toolgym_env._TABLE_VALUES == {}
    ctx.close()
    shutil.copy(pristine, state / "db.sqlite")
    ctx = Context(str(state), "t2")
    assert table_values(ctx.db, _rows) == pristine_values
    ctx.close()


def test_only_plain_functions_and_immutable_values_are_kept(env):
    episode, path = env
    seen = {"n": 0}

    def closure(db, table):  # depends on more than the table: never reused
        seen["n"] += 1
        return seen["n"]

    def as_list(db, table):  # a list a caller could change: never shared
        CALLS.append(table)
        return [table]

    for i in range(2):
        ctx = episode(f"t{i}")
        assert table_values(ctx.db, closure) == {"items": 3 * i + 1, "orders": 3 * i + 2, "people": 3 * i + 3}
        assert table_values(ctx.db, as_list) == {t: [t] for t in ("items", "orders", "people")}
        ctx.close()
    assert CALLS == ["items", "orders", "people"] * 2


def test_a_plain_connection_is_computed_fresh(env):
    episode, path = env
    db = sqlite3.connect(path)
    assert table_values(db, _rows) == _fresh(path, _rows)
    assert sorted(CALLS) == ["items", "items", "orders", "orders", "people", "people"]
    db.close()

"""state_digest re-reads only the tables an episode's statements wrote: it must give exactly the digest of a
full read after any mix of writes, and fall back to a full read whenever it cannot follow them (a second
connection, a schema change, a pragma, triggers, a deserialize)."""

from __future__ import annotations

import random
import shutil
import sqlite3

import pytest
from toolgym.envs.inside import toolgym_env
from toolgym.envs.inside.toolgym_env import Context, state_digest

from .seed_db import seed_db


def _full(path) -> str:
    db = sqlite3.connect(path)
    tables = toolgym_env._tables(db)
    out = toolgym_env._combine(tables, toolgym_env._pieces(db, tables))
    db.close()
    return out


def _episode(state_dir, pristine, task_id: str) -> Context:
    shutil.copy(pristine, state_dir / "db.sqlite")
    return Context(str(state_dir), task_id)


WRITES = [
    "UPDATE items SET stock = stock - 1 WHERE id = 'I003'",
    "UPDATE items SET stock = stock WHERE id = 'I004'",  # a write that changes nothing
    "INSERT INTO orders VALUES ('{new}', 'P002', 'I005', 2)",
    "DELETE FROM orders WHERE id = 'R0003'",
    "UPDATE people SET credit = credit + 10 WHERE id = 'P007'",
    "INSERT OR REPLACE INTO people VALUES ('P001', 'renamed', 0)",
    "INSERT INTO people VALUES ('P001', 'x', 1) ON CONFLICT(id) DO UPDATE SET name = 'upserted'",
]


def test_watched_digest_equals_a_full_read(tmp_path):
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(7)
    # the first episode writes nothing: its digest records the pieces of the pristine file
    ctx = _episode(state, pristine, "t0")
    assert state_digest(ctx.db) == _full(state / "db.sqlite")
    ctx.close()
    for i in range(60):
        ctx = _episode(state, pristine, f"t{i}")
        for sql in rng.sample(WRITES, rng.randint(1, 4)):
            ctx.db.execute(sql.replace("{new}", ctx.new_id("R")))
        got = state_digest(ctx.db)
        assert got == _full(state / "db.sqlite")
        assert isinstance(ctx.db, toolgym_env._Watched) and ctx.db.written  # the incremental path ran
        ctx.db.execute(WRITES[0])  # a later write in the same episode is seen (no stale memo)
        assert state_digest(ctx.db) == _full(state / "db.sqlite") != got
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
        "deserialize",
        "attach_same_file",
    ],
)
def test_writes_it_cannot_follow_read_everything(tmp_path, act):
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()
    ctx = _episode(state, pristine, "t0")
    before = state_digest(ctx.db)  # records the pristine pieces
    ctx.close()
    ctx = _episode(state, pristine, "t1")
    db = ctx.db
    db.execute("UPDATE items SET stock = 99 WHERE id = 'I001'")  # something the watcher does follow
    if act == "second_connection":
        other = sqlite3.connect(state / "db.sqlite", isolation_level=None)
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
    elif act == "deserialize":
        src = sqlite3.connect(":memory:")
        src.execute("CREATE TABLE people (id TEXT)")
        db.deserialize(src.serialize())
    elif act == "attach_same_file":
        db.execute("ATTACH DATABASE ? AS twin", (str(state / "db.sqlite"),))
        db.execute("UPDATE twin.people SET name = 'via twin' WHERE id = 'P005'")
    got = state_digest(db)
    db_path = state / "db.sqlite"
    if act == "deserialize":  # the connection holds the new database in memory, not the file
        tables = toolgym_env._tables(db)
        assert got == toolgym_env._combine(tables, toolgym_env._pieces(db, tables))
    else:
        assert got == _full(db_path)
    assert got != before
    ctx.close()


def test_triggers_written_tables_are_followed(tmp_path):
    """A trigger in the seed schema: its body's writes are reported as the statement is prepared."""
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    db = sqlite3.connect(pristine)
    db.execute("CREATE TRIGGER t AFTER INSERT ON orders BEGIN UPDATE items SET stock = stock - 1; END")
    db.commit()
    db.close()
    state = tmp_path / "state"
    state.mkdir()
    ctx = _episode(state, pristine, "t0")
    state_digest(ctx.db)
    ctx.close()
    ctx = _episode(state, pristine, "t1")
    ctx.db.execute("INSERT INTO orders VALUES ('R9999', 'P001', 'I001', 1)")
    assert "items" in ctx.db.written
    assert state_digest(ctx.db) == _full(state / "db.sqlite")
    ctx.close()


def test_only_written_tables_are_read_again(tmp_path, monkeypatch):
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()
    ctx = _episode(state, pristine, "t0")
    state_digest(ctx.db)
    ctx.close()
    read = []
    pieces = toolgym_env._pieces
    monkeypatch.setattr(
        toolgym_env, "_pieces", lambda db, tables: read.append(list(tables)) or pieces(db, tables)
    )
    ctx = _episode(state, pristine, "t1")
    ctx.db.execute("UPDATE items SET stock = 0 WHERE id = 'I001'")
    got = state_digest(ctx.db)
    assert read == [["items"]]
    assert got == _full(state / "db.sqlite")
    ctx.close()


def test_a_replaced_authorizer_makes_everything_count_as_written(tmp_path):
    pristine = tmp_path / "pristine.sqlite"
    seed_db(pristine)
    state = tmp_path / "state"
    state.mkdir()
    ctx = _episode(state, pristine, "t0")
    state_digest(ctx.db)
    ctx.close()
    ctx = _episode(state, pristine, "t1")
    ctx.db.set_authorizer(None)
    ctx.db.execute("UPDATE people SET name = 'unwatched' WHERE id = 'P001'")
    assert ctx.db.written is None
    assert state_digest(ctx.db) == _full(state / "db.sqlite")
    ctx.close()

"""A small three-table database for the watched-connection tests (state digests, table values)."""

from __future__ import annotations

import sqlite3


def seed_db(path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, credit REAL);
        CREATE TABLE items (id TEXT PRIMARY KEY, title TEXT, stock INTEGER);
        CREATE TABLE orders (id TEXT PRIMARY KEY, person TEXT, item TEXT, qty INTEGER);
        """
    )
    db.executemany(
        "INSERT INTO people VALUES (?, ?, ?)", [(f"P{i:03d}", f"name {i}", i * 1.5) for i in range(40)]
    )
    db.executemany(
        "INSERT INTO items VALUES (?, ?, ?)", [(f"I{i:03d}", f"item {i}", i % 7) for i in range(60)]
    )
    db.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)", [(f"R{i:04d}", "P001", "I002", i) for i in range(30)]
    )
    db.commit()
    db.close()

"""Verifiers of the order desk: the final database must equal the one the reference solution leaves (compared
table by table, order-insensitive), so only the requested writes, done right, score."""

from __future__ import annotations

import hashlib
import json


def db_digest(db) -> str:
    """sha256 over every table's rows, sorted: equal databases give equal digests whatever the row order."""
    h = hashlib.sha256()
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for table in tables:
        rows = sorted(json.dumps(list(r), default=str) for r in db.execute(f"SELECT * FROM {table}"))
        h.update(table.encode() + b"\0" + "\n".join(rows).encode() + b"\0")
    return h.hexdigest()


def check_final_state(ctx, answer, calls, expected: str, must_call: list | None = None):
    """Reward 1 when the final database equals the expected one (and the named tools were used)."""
    for name in must_call or []:
        if not any(c["name"] == name and c.get("ok") for c in calls):
            return 0.0, f"{name} was never called successfully"
    if db_digest(ctx.db) != expected:
        return 0.0, "the final database differs from the expected one"
    return 1.0, "the database is in the expected state"

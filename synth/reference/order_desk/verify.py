"""Verifiers of the order desk: the final database must equal the one the reference solution leaves, compared by
the shared `toolgym_env.state_digest` (every table's rows, order-insensitive, with the ids an episode creates
masked), so only the requested writes, done right, score, in whatever order and with whatever reads between."""

from __future__ import annotations

from toolgym_env import state_digest


def db_digest(db) -> str:
    """The final database as the state check sees it (new ids masked); the builder learns expected states by it."""
    return state_digest(db)


def check_final_state(ctx, answer, calls, expected: str):
    """Reward 1 when the final database equals the expected one: every write the request needs, and no other."""
    if db_digest(ctx.db) != expected:
        return 0.0, "the final database differs from the expected one"
    return 1.0, "the database is in the expected state"

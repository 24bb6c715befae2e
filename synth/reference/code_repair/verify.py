"""Verifiers of the code environments: the task's hidden calls and the visible tests' calls are made in the
agent's code, in a process of its own, and only the returned values come back, as plain data compared here with
what the correct code returns (editing or deleting the repository's tests does not help; nothing the agent's
code prints, patches or exits with can pass a test)."""

from __future__ import annotations

from toolgym_env import same_behaviour


def check_fix(ctx, answer, calls, hidden_cases: list, visible_cases: list):
    """Reward 1 when the hidden calls return what they should and the visible tests' calls still do."""
    ok, why = same_behaviour(ctx.state_dir, hidden=hidden_cases, visible=visible_cases)
    if not ok:
        return 0.0, why
    return 1.0, "hidden and visible tests pass"

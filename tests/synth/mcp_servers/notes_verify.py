"""Verifiers of the imported notes MCP environment (written by hand for the tests): the notes at the episode's end,
as the server's own list_notes gives them (the import's state tool), and a counted answer."""

from toolgym_env import same_answer


def _notes(ctx):
    state = ctx.turns[-1]["state"].get("mcp") if ctx.turns else None
    return state.get("notes") if isinstance(state, dict) else state


def notes_are(ctx, answer, calls, expected):
    """The notes at the end are exactly `expected` (ids, titles, bodies, tags), in order."""
    got = _notes(ctx)
    if got == expected:
        return 1.0, "the notes are as asked"
    titles = [n.get("title") for n in got] if isinstance(got, list) else got
    return 0.0, f"the notes are {titles}, not {[n['title'] for n in expected]} as asked"


def answer_is(ctx, answer, calls, expected):
    """The final answer gives `expected` (a number or a name)."""
    return (
        (1.0, "right answer")
        if same_answer(answer, expected)
        else (0.0, f"the answer does not give {expected}")
    )

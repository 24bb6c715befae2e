"""The notes server's native twin: the same five tools as `@tool` functions over an SQLite state (seeded with the
same two notes, ids n1, n2, ... never reused), the same tasks and the same verdicts. The MCP benchmark runs both
side by side: what an MCP server process per episode costs over toolgym's own tools."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvSpec, Provenance, TaskSpec, write_env_spec, write_tasks

from . import NOTES_TASKS

TOOLS_PY = '''"""Notes: add, list, read, tag and delete (the native twin of the notes MCP server)."""

import json

from toolgym_env import ToolError, tool


def _note(row) -> dict:
    return {"id": row["id"], "title": row["title"], "body": row["body"], "tags": json.loads(row["tags"])}


def _find(ctx, note_id: str):
    row = ctx.db.execute("SELECT * FROM notes WHERE id = ?", (note_id,)).fetchone()
    if row is None:
        known = ", ".join(r["id"] for r in ctx.db.execute("SELECT id FROM notes ORDER BY seq")) or "none"
        raise ToolError(f"there is no note {note_id!r}; the notes are: {known}")
    return row


@tool(access="write")
def add_note(ctx, title: str, body: str, tags: list[str] | None = None) -> dict:
    """Add a note and return it (with its new id).

    Args:
        title: The note's title.
        body: The note's text.
        tags: Its tags.
    """
    if not title.strip():
        raise ToolError("a note needs a title")
    seq = ctx.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'notes'").fetchone()[0] + 1
    tags_json = json.dumps(sorted(set(tags or [])))
    ctx.db.execute(
        "INSERT INTO notes (seq, id, title, body, tags) VALUES (?, ?, ?, ?, ?)",
        (seq, f"n{seq}", title, body, tags_json),
    )
    return _note(_find(ctx, f"n{seq}"))


@tool
def list_notes(ctx) -> dict:
    """List every note, oldest first."""
    return {"notes": [_note(r) for r in ctx.db.execute("SELECT * FROM notes ORDER BY seq")]}


@tool
def get_note(ctx, note_id: str) -> dict:
    """Read one note by its id.

    Args:
        note_id: The note's id.
    """
    return _note(_find(ctx, note_id))


@tool(access="write")
def tag_note(ctx, note_id: str, tag: str) -> dict:
    """Add a tag to a note.

    Args:
        note_id: The note's id.
        tag: The tag to add.
    """
    row = _find(ctx, note_id)
    tags = json.dumps(sorted({*json.loads(row["tags"]), tag}))
    ctx.db.execute("UPDATE notes SET tags = ? WHERE id = ?", (tags, note_id))
    return _note(_find(ctx, note_id))


@tool(access="write")
def delete_note(ctx, note_id: str) -> str:
    """Delete a note by its id.

    Args:
        note_id: The note's id.
    """
    _find(ctx, note_id)
    ctx.db.execute("DELETE FROM notes WHERE id = ?", (note_id,))
    return f"deleted {note_id}"
'''

VERIFY_PY = '''"""Verifiers of the native notes twin: the notes in the database at the end, and a counted answer."""

import json

from toolgym_env import same_answer


def notes_are(ctx, answer, calls, expected):
    got = [
        {"id": r["id"], "title": r["title"], "body": r["body"], "tags": json.loads(r["tags"])}
        for r in ctx.db.execute("SELECT * FROM notes ORDER BY seq")
    ]
    if got == expected:
        return 1.0, "the notes are as asked"
    return 0.0, f"the notes are {[n['title'] for n in got]}, not {[n['title'] for n in expected]} as asked"


def answer_is(ctx, answer, calls, expected):
    return (1.0, "right answer") if same_answer(answer, expected) else (0.0, f"the answer does not give {expected}")
'''

SEED = (
    ("Dentist", "Tuesday 10:00, bring the insurance card", ["health"]),
    ("Old ideas", "nothing useful", []),
)


def build_native_notes(out: Path, env_id: str = "native-notes") -> Path:
    """Write the native twin into the store `out`; its folder."""
    env_dir = Path(out) / env_id
    (env_dir / "state").mkdir(parents=True, exist_ok=True)
    (env_dir / "tools.py").write_text(TOOLS_PY)
    (env_dir / "verify.py").write_text(VERIFY_PY)
    db_path = env_dir / "state" / "db.sqlite"
    db_path.unlink(missing_ok=True)
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE notes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, title TEXT, body TEXT, tags TEXT)"
    )
    for title, body, tags in SEED:
        db.execute("INSERT INTO notes (title, body, tags) VALUES (?, ?, ?)", (title, body, json.dumps(tags)))
    db.execute("UPDATE notes SET id = 'n' || seq")
    db.commit()
    db.close()
    tasks = [
        TaskSpec.model_validate({**json.loads(line), "env_id": env_id})
        for line in NOTES_TASKS.read_text().splitlines()
        if line.strip()
    ]
    write_tasks(env_dir, tasks)
    spec = EnvSpec(
        id=env_id,
        category="general",
        domain="notes",
        description="A notebook: add, list, read, tag and delete notes.",
        tools=tools_from_module(load_tools_module(env_dir / "tools.py")),
        provenance=Provenance(producer="reference", family="notes_native"),
    )
    write_env_spec(env_dir, spec)
    return env_dir

"""The notes MCP server, written with the MCP Python SDK's `MCPServer`: each tool is a typed function whose
signature is its input schema; a `ToolError` is an `isError` result the model reads."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

SEED = (
    ("Dentist", "Tuesday 10:00, bring the insurance card", ["health"]),
    ("Old ideas", "nothing useful", []),
)
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


class Note(BaseModel):
    id: str
    title: str
    body: str
    tags: list[str]


class NoteList(BaseModel):
    notes: list[Note]


def create_server() -> MCPServer:
    """A server with the seed notes; everything it holds lives in this process."""
    notes: dict[str, Note] = {}
    counter = [0]

    def new(title: str, body: str, tags: list[str]) -> Note:
        counter[0] += 1
        note = Note(id=f"n{counter[0]}", title=title, body=body, tags=sorted(set(tags)))
        notes[note.id] = note
        return note

    def find(note_id: str) -> Note:
        if note_id not in notes:
            known = ", ".join(notes) or "none"
            raise ToolError(f"there is no note {note_id!r}; the notes are: {known}")
        return notes[note_id]

    for title, body, tags in SEED:
        new(title, body, tags)
    server = MCPServer("notes", instructions="A notebook: add, list, read, tag and delete notes.")

    @server.tool(description="Add a note and return it (with its new id).")
    def add_note(title: str, body: str, tags: list[str] | None = None) -> Note:
        if not title.strip():
            raise ToolError("a note needs a title")
        return new(title, body, tags or [])

    @server.tool(description="List every note, oldest first.", annotations=READ_ONLY)
    def list_notes() -> NoteList:
        return NoteList(notes=list(notes.values()))

    @server.tool(description="Read one note by its id.", annotations=READ_ONLY)
    def get_note(note_id: str) -> Note:
        return find(note_id)

    @server.tool(description="Add a tag to a note.")
    def tag_note(note_id: str, tag: str) -> Note:
        note = find(note_id)
        note.tags = sorted({*note.tags, tag})
        return note

    @server.tool(description="Delete a note by its id.")
    def delete_note(note_id: str) -> str:
        find(note_id)
        del notes[note_id]
        return f"deleted {note_id}"

    return server


SERVER = create_server()
"""Built at import, as servers written with the SDK usually are: a process forked after the import (toolgym's
zygote preloads this module) starts with the server built and its seed notes in place, each a copy of its own."""


def main() -> None:
    SERVER.run()

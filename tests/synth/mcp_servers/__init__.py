"""MCP servers for the import-mcp tests and benchmark: `notes_server` (a stateful notes server written with the MCP
Python SDK), its hand-written tasks and verify.py, and a native twin of it (`notes_native`, @tool functions over
SQLite) for the benchmark."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES_TASKS = HERE / "notes_tasks.jsonl"
NOTES_VERIFY = HERE / "notes_verify.py"
SERVERS = HERE / "servers"
"""--lib of the notes server: the folder that holds its package."""
NOTES_REQUIREMENTS = ["mcp==2.3.0"]
TIME_REQUIREMENTS = ["mcp==2.3.0", "mcp-server-time==2026.10.19"]


def import_notes(
    out: Path,
    env_id: str = "mcp-notes",
    requirements=NOTES_REQUIREMENTS,
    preload: bool = True,
    module: str = "notes_server",
) -> Path:
    """The notes server imported into the store `out`, with its tasks and verify.py. `module`: `notes_server`
    (the server built at import) or `notes_server.fresh` (built when the process runs)."""
    from toolgym.synth.importers.mcp import import_mcp

    return import_mcp(
        f"python3 -m {module}",
        env_id,
        out,
        lib=SERVERS,
        requirements=list(requirements),
        state_tool="list_notes",
        verify=NOTES_VERIFY,
        tasks=NOTES_TASKS,
        preload=preload,
    )

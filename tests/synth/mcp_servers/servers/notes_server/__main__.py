"""`python -m notes_server`: the notes MCP server on stdio."""

from notes_server.server import main

main()

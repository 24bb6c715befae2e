"""`python -m notes_server.fresh`: the same server, built when the process runs rather than at import (the
benchmark's comparison: what building the SDK server costs per episode)."""

from notes_server.server import create_server

if __name__ == "__main__":
    create_server().run()

"""The code reference environments: a small repository with one injected bug each; see build.py."""

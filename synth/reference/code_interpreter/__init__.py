"""The code-interpreter reference environment: a stateful Python session and data files; see build.py."""

"""The search reference environment: a local corpus of generated long-tail entities; see build.py."""

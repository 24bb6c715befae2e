"""The trip-planning reference environment (general category): see build.py."""

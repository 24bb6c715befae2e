"""The order-desk reference environment (general category, stateful writes): see build.py."""

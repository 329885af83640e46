"""Integration tests run against real servers (fixtures in tests/support/servers.py)."""

"""Fixtures for the shared stores' tests against a real Redis."""

from __future__ import annotations

import pytest
import redis


@pytest.fixture
def client(redis_server) -> redis.Redis:
    """A client of the session's Redis (a module with data to keep apart overrides it with a database of its own)."""
    return redis.Redis.from_url(redis_server.url)

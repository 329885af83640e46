"""Integration tests run against real servers (fixtures in tests/support/servers.py).

`backends` (#23: until then seven modules defined their own, with three different clean-ups) is every backend a
service builds on the session's Redis and SeaweedFS (shared/backends.py), with what a test does with them
(tests/support/service.py). Its Redis database is one of its own, emptied before each test: a sweep, a batch or
an outbox sees only what this test put there (no schedule, audit, gallery, queue or webhook of another test or
module), and nothing of the other fixtures' databases is touched (database 0: the tests that build their own
settings; 5: the gateway's, whose tests share it with their backends; 7, 8: two shared stores' tests). Objects in
SeaweedFS are left: every key is new per test, and a module whose janitor lists whole buckets asks for buckets
of its own (`@pytest.mark.backends(sources_bucket=..., results_bucket=...)`).
"""

from __future__ import annotations

import pytest
import redis

from scripts.devstack import RedisServer, SeaweedServer
from scripts.support.service_settings import service_settings
from shared.settings import Settings
from tests.support.service import Backends

BACKENDS_REDIS_DB = 1


@pytest.fixture
def backends_settings(request: pytest.FixtureRequest, redis_server: RedisServer, s3_server: SeaweedServer) -> Settings:
    """`service_settings` on BACKENDS_REDIS_DB, emptied for this test, with the settings a module or a test asks
    for with `@pytest.mark.backends(**overrides)` (a test's own marker over its module's)."""
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{BACKENDS_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    overrides: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("backends"))):  # the farthest first, the closest last
        overrides.update(marker.kwargs)
    return service_settings(redis_url, s3_server, **overrides)


@pytest.fixture
def backends(backends_settings: Settings) -> Backends:
    return Backends.connect(backends_settings)

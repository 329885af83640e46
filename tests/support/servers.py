"""Session-scoped pytest fixtures that run a real Redis and a real SeaweedFS (S3) on free loopback ports.

Register with `pytest_plugins = ["tests.support.servers"]` in tests/conftest.py. Servers start lazily (only
when a test asks for them), once per session, and are SIGKILLed at the end (their data lives under pytest's
tmp dir, and SeaweedFS in this configuration does not stop on SIGTERM). If pytest itself is killed they die
with it.

    def test_upload(s3_server):
        s3 = s3_server.client()
        s3.put_object(Bucket="...", Key="k", Body=b"v")

Tests that kill a server must bring it back for the next test (`redis_server.restart()`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.devstack import RedisServer, SeaweedServer, start_redis, start_seaweedfs


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server without persistence: `.url`, `.port`, `.kill()`, `.restart()` (same port, empty)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS with its S3 gateway, SigV4 enforced: `.endpoint`, `.credentials`, `.master_address`,
    `.filer_url`, `.client()`, `.kill()`, `.restart()` (same ports and data, ~2.5 s). No buckets yet: create
    them with `scripts.devstack.ensure_buckets` or `.client().create_bucket(...)`."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.kill()

"""Gateway apps wired to the session's real Redis and SeaweedFS (fixtures in tests/support/servers.py).

The gateway uses its own Redis database (flushed before each test) and its own buckets, so it neither sees nor
disturbs what other tests keep in the shared servers.
"""

from __future__ import annotations

import io
import json
import logging
from base64 import b64decode
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import structlog
from flask import Flask
from flask.testing import FlaskClient

from scripts.devstack import RedisServer, SeaweedServer, ensure_buckets, free_port
from services.gateway.app import create_app
from shared.logging import configure_logging
from shared.settings import Settings

pytestmark = pytest.mark.integration

GATEWAY_REDIS_DB = 5
SOURCES_BUCKET = "gateway-test-sources"
RESULTS_BUCKET = "gateway-test-results"
QUEUE = "portraits-gateway-test"


@pytest.fixture(scope="session")
def gateway_buckets(s3_server: SeaweedServer) -> tuple[str, str]:
    ensure_buckets(s3_server.endpoint, s3_server.credentials, [SOURCES_BUCKET, RESULTS_BUCKET])
    return SOURCES_BUCKET, RESULTS_BUCKET


@pytest.fixture
def gateway_settings(redis_server: RedisServer, s3_server: SeaweedServer,
                     gateway_buckets: tuple[str, str]) -> Settings:
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{GATEWAY_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    return Settings(
        redis_url=redis_url,
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key_id=s3_server.credentials.access_key,
        s3_secret_access_key=s3_server.credentials.secret_key,
        sources_bucket=gateway_buckets[0],
        results_bucket=gateway_buckets[1],
        queue_name=QUEUE,
        upload_rate_limit="",
        s3_max_attempts=1,
    )


@pytest.fixture
def make_app(gateway_settings: Settings) -> Callable[..., Flask]:
    """Build an app from the test settings with some fields overridden."""

    def build(**overrides: Any) -> Flask:
        app = create_app(gateway_settings, **overrides)
        app.testing = True
        return app

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def rdb(gateway_settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(gateway_settings.redis_url)


@pytest.fixture
def closed_url() -> Callable[[str], str]:
    """A URL on a loopback port nobody listens on (nothing is started there)."""
    return lambda scheme: f"{scheme}://127.0.0.1:{free_port()}"


@pytest.fixture
def queued_tasks(rdb: redis.Redis) -> Callable[[], list[str]]:
    """Job ids of the Celery messages waiting in the broker list (kombu's Redis message format)."""

    def read() -> list[str]:
        ids = []
        for raw in rdb.lrange(QUEUE, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] == "portraits.render"
            args, _kwargs, _embed = json.loads(b64decode(message["body"]))
            ids.append(args[0])
        return ids

    return read


@pytest.fixture
def stored_sources(s3_server: SeaweedServer) -> Callable[[], set[str]]:
    """Keys under sources/ in the gateway's sources bucket (shared by the module: compare before/after)."""

    def read() -> set[str]:
        pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=SOURCES_BUCKET,
                                                                             Prefix="sources/")
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    return read


@pytest.fixture
def json_logs(gateway_settings: Settings) -> Iterator[Callable[[], list[dict]]]:
    """Logging configured as in production (wsgi.py), restored afterwards; returns a reader of the JSON lines."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_config = root.handlers[:], root.level, structlog.get_config()
    configure_logging(gateway_settings, "gateway")
    structlog.configure(cache_logger_on_first_use=False)  # don't leave loggers bound to this config
    written = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(written)  # its own buffer: pytest swaps sys.stderr between fixture setup and the test

    def read() -> list[dict]:
        return [json.loads(line) for line in written.getvalue().splitlines() if line.startswith("{")]

    try:
        yield read
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)
        structlog.contextvars.clear_contextvars()

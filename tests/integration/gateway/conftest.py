"""Gateway apps wired to the session's real Redis and SeaweedFS (fixtures in tests/support/servers.py).

The gateway uses its own Redis database (flushed before each test) and its own buckets, so it neither sees nor
disturbs what other tests keep in the shared servers.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import sys
from base64 import b64decode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from flask import Flask
from flask.testing import FlaskClient

from scripts.devstack import ManagedProcess, RedisServer, SeaweedServer, ensure_buckets, free_port
from services.gateway.app import create_app
from shared.audit import ObjectKind
from shared.deletion import DeletionSchedule
from shared.jobs import JobStore, now
from shared.logging import configure_logging
from shared.settings import PROJECT_ROOT, Settings
from shared.source_keys import SourceKeys
from shared.storage import job_id_of

pytestmark = pytest.mark.integration

GATEWAY_REDIS_DB = 5
SOURCES_BUCKET = "gateway-test-sources"
RESULTS_BUCKET = "gateway-test-results"
QUEUE = "portraits-gateway-test"
GUNICORN_CONF = PROJECT_ROOT / "services" / "gateway" / "gunicorn_conf.py"


@pytest.fixture(scope="session")
def gateway_buckets(s3_server: SeaweedServer) -> tuple[str, str]:
    ensure_buckets(s3_server.endpoint, s3_server.credentials, [SOURCES_BUCKET, RESULTS_BUCKET])
    return SOURCES_BUCKET, RESULTS_BUCKET


@pytest.fixture
def gateway_settings(redis_server: RedisServer, s3_server: SeaweedServer, gateway_buckets: tuple[str, str]) -> Settings:
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
def backends_settings(gateway_settings: Settings) -> Settings:
    """A gateway test's `backends` (tests/integration/conftest.py) are the app's: its Redis database, emptied by
    `gateway_settings`, its buckets and its queue, so a test does to an upload what a worker or the janitor would.
    `@pytest.mark.backends` does not apply here."""
    return gateway_settings


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
        pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=SOURCES_BUCKET, Prefix="sources/")
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


@pytest.fixture
def assert_abandoned(rdb: redis.Redis, queued_tasks: Callable[[], list[str]]) -> Callable[..., str]:
    """Checks what a failed upload leaves (issue 9): its source's key shredded and no longer expected, no job
    record, and its source on the deletion schedule — due now if it was stored (the janitor's next sweep erases,
    verifies and audits it), at its original deadline if the write was given up (S3 may still carry it out
    later). Either way nothing is left for the janitor's reconcile pass. `sent`: the task went out beside the
    S3 put (#11), and finds no record. Returns the job id."""
    schedule = DeletionSchedule.PREFIX + ObjectKind.SOURCE.value

    def check(*, stored: bool = True, sent: bool = False) -> str:
        entries = {job_id_of(key.decode()): deadline for key, deadline in rdb.zrange(schedule, 0, -1, withscores=True)}
        abandoned = [job_id for job_id in entries if not rdb.exists(JobStore.KEY_PREFIX + job_id)]
        assert len(abandoned) == 1, entries
        [job_id] = abandoned
        assert (entries[job_id] <= now()) is stored, (entries[job_id], now())
        assert rdb.exists(SourceKeys.KEY_PREFIX + job_id, SourceKeys.EXPECTED_PREFIX + job_id) == 0
        assert rdb.zscore(JobStore.QUEUE_KEY, job_id) is None
        assert (job_id in queued_tasks()) is sent
        return job_id

    return check


@pytest.fixture
def scheduled_sources(rdb: redis.Redis) -> Callable[[], set[str]]:
    """Source keys on the deletion schedule."""
    return lambda: {key.decode() for key in rdb.zrange(DeletionSchedule.PREFIX + ObjectKind.SOURCE.value, 0, -1)}


# ------------------------------------------------------------------------------------ gunicorn, as deployed


@dataclass(frozen=True)
class Served:
    port: int
    process: ManagedProcess

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """This process's environment without PORTRAITS_*, plus `settings` (only fields set explicitly) and
    `overrides` as PORTRAITS_ variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PORTRAITS_")}
    values = {name: getattr(settings, name) for name in settings.model_fields_set} | overrides
    for name, value in values.items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"PORTRAITS_{name.upper()}"] = str(value)
    return env


@pytest.fixture
def serve(gateway_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start the gateway under gunicorn with its config file; keyword arguments override Settings fields."""
    started: list[ManagedProcess] = []

    def start(**overrides: Any) -> Served:
        port = free_port()
        env = settings_env(gateway_settings, gateway_bind=f"127.0.0.1:{port}", **overrides)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / f"prometheus-{port}")
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "services.gateway.wsgi:app"]
        process = ManagedProcess("gunicorn", command, tmp_path / f"gunicorn-{port}.log", cwd=PROJECT_ROOT, env=env)
        started.append(process.start())
        server = Served(port, process)
        process.wait_ready(lambda: server.request("GET", "/healthz", timeout=5)[0] == 200, timeout=30)
        return server

    try:
        yield start
    finally:
        for process in started:
            process.stop(grace=10)


@contextmanager
def _stopped(process: ManagedProcess) -> Iterator[None]:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


@pytest.fixture
def hung() -> Callable[[ManagedProcess], Any]:
    """`with hung(server.process):` SIGSTOPs the server — it hangs: the kernel still accepts connections and
    nothing answers — and SIGCONTs it after."""
    return _stopped

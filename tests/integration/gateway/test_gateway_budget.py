"""The time budget (issue 9): with a dependency hung, not down — SIGSTOPped, so the kernel still accepts its
connections and nothing answers — requests answer 503 JSON with Retry-After in seconds, and /healthz keeps
answering meanwhile. Measured before: with S3 stopped an upload got gunicorn's HTML 500 after 30 s, its undo
was skipped (an orphan source) and /healthz stalled 18-30 s; with Redis stopped every request took 5 s.

Each test hangs a server started for it alone, under a gateway running in gunicorn as deployed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import urllib3

from scripts.devstack import ManagedProcess, RedisServer, SeaweedServer, ensure_buckets, start_redis, start_seaweedfs
from scripts.support import samples
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import source_key

if TYPE_CHECKING:  # conftest modules are not imported by tests at run time
    from tests.integration.gateway.conftest import Served

Hang = Callable[[ManagedProcess], Any]

pytestmark = pytest.mark.integration

UPLOAD_BUDGET_S = 5.0  # by default about 3 s (Redis) or 4 s (S3): the rest is room for a busy machine
READ_BUDGET_S = 3.0  # about 1 s
HEALTHZ_S = 1.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[SeaweedServer]:
    server = start_seaweedfs(tmp_path / "seaweedfs")
    try:
        yield server
    finally:
        server.kill()


def photo_upload() -> tuple[bytes, dict[str, str]]:
    body, content_type = urllib3.encode_multipart_formdata(
        {"image": ("grace.jpg", samples.grace_hopper_path().read_bytes(), "image/jpeg")}
    )
    return body, {"Content-Type": content_type}


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def assert_unavailable(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, raw = answer
    assert status == 503, raw
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["error"]["code"] == "unavailable"
    assert int(headers["Retry-After"]) > 0


def healthz_while(served: Served, busy: threading.Thread) -> list[float]:
    """/healthz latencies, sampled while `busy` runs."""
    latencies = []
    while busy.is_alive():
        (status, _, _), seconds = timed(lambda: served.request("GET", "/healthz", timeout=10))
        assert status == 200
        latencies.append(seconds)
        time.sleep(0.1)
    return latencies


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        out["answer"], out["seconds"] = timed(call)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_hung_redis_answers_503_within_the_budget(
    serve: Callable[..., Served], own_redis: RedisServer, hung: Hang
) -> None:
    served = serve(redis_url=own_redis.url, upload_rate_limit="100/minute")  # the limiter talks to Redis too
    body, headers = photo_upload()
    status, _, raw = served.request("POST", "/v1/portraits", body, headers)  # connections are pooled by now
    assert status == 202, raw
    status_url = json.loads(raw)["status_url"]

    with hung(own_redis.process):
        upload, out = in_background(lambda: served.request("POST", "/v1/portraits", body, headers))
        healthz = healthz_while(served, upload)
        read, read_seconds = timed(lambda: served.request("GET", status_url))
        ready, ready_seconds = timed(lambda: served.request("GET", "/readyz"))

    assert_unavailable(out["answer"])
    assert out["seconds"] < UPLOAD_BUDGET_S
    assert_unavailable(read)
    assert read_seconds < READ_BUDGET_S
    assert_unavailable(ready)
    assert ready_seconds < READ_BUDGET_S
    assert healthz and max(healthz) < HEALTHZ_S
    print(
        f"hung redis: upload {out['seconds']:.2f} s, status read {read_seconds:.2f} s, readyz "
        f"{ready_seconds:.2f} s, healthz max {max(healthz) * 1000:.0f} ms"
    )


def test_hung_storage_answers_503_and_leaves_no_orphan(
    serve: Callable[..., Served],
    own_s3: SeaweedServer,
    hung: Hang,
    gateway_settings: Settings,
    rdb: redis.Redis,
    assert_abandoned: Callable[..., str],
    scheduled_sources: Callable[[], set[str]],
) -> None:
    buckets = [gateway_settings.sources_bucket, gateway_settings.results_bucket]
    ensure_buckets(own_s3.endpoint, own_s3.credentials, buckets)
    served = serve(
        s3_endpoint_url=own_s3.endpoint,
        s3_access_key_id=own_s3.credentials.access_key,
        s3_secret_access_key=own_s3.credentials.secret_key,
    )
    body, headers = photo_upload()
    status, _, raw = served.request("POST", "/v1/portraits", body, headers)
    assert status == 202, raw
    status_url = json.loads(raw)["status_url"]

    with hung(own_s3.process):
        upload, out = in_background(lambda: served.request("POST", "/v1/portraits", body, headers))
        healthz = healthz_while(served, upload)
        read, read_seconds = timed(lambda: served.request("GET", status_url))  # Redis only: unaffected

    assert_unavailable(out["answer"])
    assert out["seconds"] < UPLOAD_BUDGET_S
    assert read[0] == 200 and read_seconds < READ_BUDGET_S
    assert healthz and max(healthz) < HEALTHZ_S
    job_id = assert_abandoned(stored=False, sent=True)  # shredded, no record, deleted at its deadline
    assert not rdb.exists(SourceKeys.KEY_PREFIX + job_id)
    # Resumed, S3 may still complete the write we gave up on: whatever it stored is on the schedule.
    time.sleep(0.5)
    pages = own_s3.client().get_paginator("list_objects_v2").paginate(Bucket=buckets[0], Prefix="sources/")
    stored = {item["Key"] for page in pages for item in page.get("Contents", [])}
    assert stored <= scheduled_sources()
    assert source_key(job_id) in scheduled_sources()
    print(f"hung storage: upload {out['seconds']:.2f} s, healthz max {max(healthz) * 1000:.0f} ms")

"""The gateway's write guarantee (#24): with `redis_wait_replicas=1`, a 202 means the replica holds the job; an
upload the replica did not confirm in time is undone and refused, 503 with Retry-After, and loses nothing. Real
processes: a primary, its replica (stopped with SIGSTOP to stand for one that fell behind), SeaweedFS."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from scripts.devstack import LOOPBACK, RedisServer, SeaweedServer, start_redis
from scripts.support import samples
from services.gateway import metrics
from services.gateway.app import create_app
from shared.audit import ObjectKind
from shared.deletion import DeletionSchedule
from shared.jobs import JobStore
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import source_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = start_redis(tmp_path_factory.mktemp("primary"))
    replica = start_redis(tmp_path_factory.mktemp("replica"))
    redis.Redis(LOOPBACK, replica.port).replicaof(LOOPBACK, primary.port)
    client = redis.Redis(LOOPBACK, primary.port)
    deadline = time.monotonic() + 10
    while int(client.wait(1, 100)) < 1:
        assert time.monotonic() < deadline, "the replica never caught up"
    try:
        yield primary, replica
    finally:
        primary.kill()
        replica.kill()


@pytest.fixture
def settings(gateway_settings: Settings, pair: tuple[RedisServer, RedisServer]) -> Settings:
    redis.Redis(LOOPBACK, pair[0].port).flushdb()
    return gateway_settings.model_copy(
        update={"redis_url": pair[0].url, "redis_wait_replicas": 1, "redis_wait_timeout_ms": 200}
    )


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def upload(client: FlaskClient) -> tuple[int, dict[str, object], dict[str, str]]:
    photo = samples.grace_hopper_path().read_bytes()
    response = client.post(
        "/v1/portraits",
        data={"image": (io.BytesIO(photo), "selfie.jpg", "image/jpeg")},
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_json(), dict(response.headers)


def refused() -> float:
    return metrics.UNREPLICATED_UPLOADS._value.get()


def test_a_202_means_the_replica_has_the_job_its_key_and_its_deletion(
    client: FlaskClient, settings: Settings, pair: tuple[RedisServer, RedisServer]
) -> None:
    before = refused()
    status, body, _ = upload(client)

    assert status == 202, body
    job_id = str(body["id"])
    replica = redis.Redis(LOOPBACK, pair[1].port)  # read on the replica itself, with nothing more waited for
    assert replica.exists(JobStore.keys_for(job_id).record)
    assert replica.exists(SourceKeys.key_of(job_id))
    assert DeletionSchedule(replica).contains(ObjectKind.SOURCE, source_key(job_id))
    assert refused() == before


def test_an_upload_the_replica_did_not_confirm_is_undone_and_refused_honestly(
    client: FlaskClient, settings: Settings, pair: tuple[RedisServer, RedisServer], s3_server: SeaweedServer
) -> None:
    primary = redis.Redis(LOOPBACK, pair[0].port)
    before = refused()
    replica_pid = pair[1].process.pid
    assert replica_pid is not None
    os.kill(replica_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, body, headers = upload(client)
        elapsed = time.monotonic() - started
    finally:
        os.kill(replica_pid, signal.SIGCONT)

    assert status == 503, body
    assert body["error"]["code"] == "unavailable" and int(headers["Retry-After"]) > 0  # type: ignore[index]
    assert elapsed < 5  # the wait is bounded by redis_wait_timeout_ms (0.2 s), not by the replica
    assert refused() == before + 1
    # Undone: no job to poll, no readable source key, and the stored source is due for deletion now.
    assert not primary.keys(JobStore.KEY_PREFIX + "*")
    assert not primary.keys(SourceKeys.KEY_PREFIX + "*")
    (due,) = DeletionSchedule(primary).claim_due(ObjectKind.SOURCE, time.time() + 1, limit=10, lease_seconds=5)
    assert due.key.startswith("sources/")

"""A worker SIGKILLed after the upload and before processing: the janitor still deletes the source and its
key within SOURCE_MAX_AGE + one sweep, the audit says janitor, and the job ends failed — never stuck."""

from __future__ import annotations

import threading
import time

import pytest

from scripts.worker_process import WorkerProcess
from services.gateway.app import create_app
from services.janitor.main import run as run_janitor
from shared.audit import Deleter, ObjectKind
from shared.crypto import KeyGone
from shared.jobs import JobState
from shared.storage import source_key
from tests.support.service import Backends, service_settings

MAX_AGE = 10
SWEEP = 1.0


@pytest.fixture(scope="module")
def settings(redis_server, s3_server):
    return service_settings(
        redis_server.url,
        s3_server,
        queue_name="privacy",
        sources_bucket="priv-sources",
        results_bucket="priv-results",
        source_max_age_seconds=MAX_AGE,
        janitor_interval_seconds=SWEEP,
    )


@pytest.fixture
def janitor(settings):
    stop = threading.Event()
    thread = threading.Thread(target=run_janitor, args=(settings, stop), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)


def test_killed_worker_cannot_strand_a_source(settings, janitor, tmp_path, astronaut_path):
    victim = WorkerProcess(settings, tmp_path / "victim").start()
    victim.process.kill()  # SIGKILL: no warm shutdown, nothing acknowledged

    client = create_app(settings).test_client()
    with astronaut_path.open("rb") as photo:
        accepted = client.post("/v1/portraits", data={"image": (photo, "selfie.png")}).get_json()
    uploaded = time.time()
    backends = Backends.connect(settings)
    key = source_key(accepted["id"])
    assert backends.storage.exists(settings.sources_bucket, key)

    deadline = uploaded + MAX_AGE + SWEEP + 5  # + slack for a loaded 2-core CI machine
    while backends.storage.exists(settings.sources_bucket, key) and time.time() < deadline:
        time.sleep(0.2)
    gone_after = time.time() - uploaded
    assert not backends.storage.exists(settings.sources_bucket, key), "source outlived its maximum age"
    assert MAX_AGE - 1 <= gone_after <= MAX_AGE + SWEEP + 5
    with pytest.raises(KeyGone):
        backends.keys.load(accepted["id"])
    [entry] = [e for e in backends.audit.entries() if e.job_id == accepted["id"]]
    assert entry.kind is ObjectKind.SOURCE and entry.deleted_by is Deleter.JANITOR and entry.verified
    job = backends.jobs.get(accepted["id"])
    assert job.state is JobState.FAILED and job.error_code == "source_expired"

    # The task is still queued; a new worker takes it and leaves the finished job alone.
    survivor = WorkerProcess(settings, tmp_path / "survivor").start()
    try:
        deadline = time.time() + 60
        while backends.redis.llen(settings.queue_name) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert 'portraits_worker_jobs_total{outcome="skipped"} 1.0' in survivor.metrics()
        assert backends.jobs.get(accepted["id"]).state is JobState.FAILED
    finally:
        survivor.stop()

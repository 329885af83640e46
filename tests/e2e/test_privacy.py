"""A worker SIGKILLed after the upload was accepted, while its job is in flight (taken, leased, not yet
painted): the janitor still deletes the source and its key within SOURCE_MAX_AGE + one sweep, the audit says
janitor, and the job ends failed — never stuck."""

from __future__ import annotations

import threading
import time

import pytest

from scripts.support.service_settings import service_settings
from scripts.worker_process import WorkerProcess
from services.gateway.app import create_app
from services.janitor.main import run as run_janitor
from shared.audit import Deleter, ObjectKind
from shared.jobs import JobState
from shared.source_keys import KeyGone
from shared.storage import source_key
from tests.support.service import Backends

MAX_AGE = 10
SWEEP = 1.0
# The dead worker's lease lapses LEASE s after its last renewal and the janitor sends the job again; the next
# copy would go out 3 leases later (RESCUE_WAIT_LEASES). At 4 s the first send lands well before the source's
# maximum age and the second well after the job failed, so exactly one copy waits for the survivor (#12). The
# default 10 s would race the first send against the expiry.
LEASE = 4.0
POLL = 0.005  # a render at this size takes ~0.25 s: the kill must land between the lease and the painting


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
        job_lease_seconds=LEASE,
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
    backends = Backends.connect(settings)

    client = create_app(settings).test_client()
    with astronaut_path.open("rb") as photo:
        accepted = client.post("/v1/portraits", data={"image": (photo, "selfie.png")}).get_json()
    uploaded = time.time()
    key = source_key(accepted["id"])
    assert backends.storage.exists(settings.sources_bucket, key)

    # The kill comes after the upload was accepted (#12: it used to come before the upload, so no worker ever
    # saw the job): once the victim has taken the job, leased and marked it processing, before it can paint.
    deadline = time.time() + 30
    while backends.jobs.get(accepted["id"]).state is JobState.QUEUED and time.time() < deadline:
        time.sleep(POLL)
    victim.process.kill()  # SIGKILL of the whole process group: no warm shutdown, nothing acknowledged
    assert backends.jobs.get(accepted["id"]).state is JobState.PROCESSING, "the victim was not killed mid-job"

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

    # The janitor's rescue sent the task again (the victim's own copy waits out the broker's visibility
    # timeout); a new worker takes it and leaves the finished job alone.
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

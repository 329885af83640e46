"""The janitor against real Redis and SeaweedFS: deadlines enforced, orphans found, replicas safe, outages
survived, keys shredded."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
import redis

from scripts.devstack import free_port
from services.janitor import metrics
from services.janitor.sweeper import Janitor
from services.worker.outcomes import DONE
from shared.audit import AuditLog, Deleter, ObjectKind
from shared.crypto import SealBroken, new_key, seal, unseal
from shared.deletion import DeletionSchedule, Eraser, Tracked
from shared.ids import new_job_id
from shared.jobs import JobState
from shared.leases import JobLeases
from shared.source_keys import KeyGone, SourceKeys
from shared.storage import ObjectStore, source_key
from tests.support.leases import hold_lease
from tests.support.service import Backends

# Buckets of the janitor's own: its reconciliation lists whole buckets and would erase other modules' objects.
pytestmark = pytest.mark.backends(
    sources_bucket="jan-sources", results_bucket="jan-results", source_max_age_seconds=10, result_ttl_seconds=60
)


def janitor(
    backends: Backends, at: float, storage: ObjectStore | None = None, sent: list[str] | None = None
) -> Janitor:
    """A janitor whose clock reads `at` (a replica of its own: own Redis client, own S3 client); the jobs it
    rescues are appended to `sent` instead of being queued."""
    client = redis.Redis.from_url(backends.settings.redis_url)
    storage = storage or ObjectStore(backends.settings)
    eraser = Eraser(storage, SourceKeys(client, 10), DeletionSchedule(client), AuditLog(client, 1000))
    outbox = sent if sent is not None else []
    settings = backends.settings.model_copy(update={"job_lease_seconds": LEASE})
    return Janitor(settings, client, backends.jobs, eraser, JobLeases(client, LEASE), outbox.append, clock=lambda: at)


LEASE = 2.0  # short enough for every rescue below to happen inside the sources' 10 s maximum age


def audit_for(backends: Backends, job_ids: set[str]):
    return [entry for entry in backends.audit.entries() if entry.job_id in job_ids]


def test_source_past_its_age_is_deleted_shredded_and_fails_its_job(backends, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    assert janitor(backends, at=time.time() + 5).sweep().deleted == 0  # not due yet
    assert backends.source_exists(job_id)
    assert janitor(backends, at=time.time() + 11).sweep().deleted == 1
    assert not backends.source_exists(job_id)
    with pytest.raises(KeyGone):
        backends.keys.load(job_id)
    job = backends.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "source_expired"
    [entry] = audit_for(backends, {job_id})
    assert entry.kind is ObjectKind.SOURCE and entry.deleted_by is Deleter.JANITOR and entry.verified


def test_result_past_its_ttl_is_gone_and_its_url_dead(backends, engine, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(engine).run(job_id) == DONE
    job = backends.jobs.get(job_id)
    url = backends.storage.presigned_get(backends.settings.results_bucket, job.result_key, 300)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
    assert janitor(backends, at=job.result_expires_at + 1).sweep().deleted == 1
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=5)
    assert gone.value.code in (403, 404)
    assert backends.jobs.get(job_id).state is JobState.EXPIRED
    kinds = {(e.kind, e.deleted_by) for e in audit_for(backends, {job_id})}
    assert kinds == {(ObjectKind.SOURCE, Deleter.WORKER), (ObjectKind.RESULT, Deleter.JANITOR)}


def test_reconciliation_finds_an_orphan(backends):
    job_id = new_job_id()
    backends.storage.put(backends.settings.sources_bucket, source_key(job_id), b"sealed bytes", "x/y")
    assert janitor(backends, at=time.time()).reconcile() >= 1  # young: only scheduled
    assert backends.eraser.schedule.contains(ObjectKind.SOURCE, source_key(job_id))
    assert backends.source_exists(job_id)
    janitor(backends, at=time.time() + 11).sweep()
    assert not backends.source_exists(job_id)
    assert [e.deleted_by for e in audit_for(backends, {job_id})] == [Deleter.JANITOR]


def test_old_orphan_is_erased_at_once(backends):
    job_id = new_job_id()
    backends.storage.put(backends.settings.sources_bucket, source_key(job_id), b"sealed bytes", "x/y")
    janitor(backends, at=time.time() + 11).reconcile()
    assert not backends.source_exists(job_id)
    assert [e.reason for e in audit_for(backends, {job_id})] == ["orphan"]


def test_two_janitors_audit_each_object_once(backends):
    past = time.time() - 20
    job_ids = set()
    for _ in range(30):
        job_id = new_job_id()
        job_ids.add(job_id)
        backends.eraser.track(ObjectKind.SOURCE, source_key(job_id), job_id, past, 10)
        backends.storage.put(backends.settings.sources_bucket, source_key(job_id), b"x", "x/y")
    replicas = [janitor(backends, at=time.time()) for _ in range(2)]
    threads = [threading.Thread(target=replica.sweep) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    entries = audit_for(backends, job_ids)
    assert len(entries) == 30 and {e.job_id for e in entries} == job_ids
    assert not any(backends.source_exists(job_id) for job_id in job_ids)


def test_unreachable_s3_loses_nothing_and_the_next_sweep_deletes(backends):
    job_id = new_job_id()
    backends.eraser.track(ObjectKind.SOURCE, source_key(job_id), job_id, time.time() - 20, 10)
    backends.storage.put(backends.settings.sources_bucket, source_key(job_id), b"x", "x/y")
    dead = ObjectStore(
        backends.settings.model_copy(
            update={
                "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
                "s3_max_attempts": 1,
                "s3_connect_timeout": 0.3,
            }
        )
    )
    failures_before = metrics.FAILURES.labels(kind="source")._value.get()
    report = janitor(backends, at=time.time(), storage=dead).sweep()
    assert report.failed == 1 and report.deleted == 0
    assert metrics.FAILURES.labels(kind="source")._value.get() == failures_before + 1
    assert backends.eraser.schedule.get(ObjectKind.SOURCE, source_key(job_id)).attempts == 1
    assert backends.source_exists(job_id) and not audit_for(backends, {job_id})
    assert janitor(backends, at=time.time() + 120).sweep().deleted == 1
    assert not backends.source_exists(job_id)


def test_a_source_read_back_after_its_key_expired_cannot_be_decrypted(backends):
    keys = SourceKeys(backends.redis, ttl_seconds=1)
    job_id = new_job_id()
    key = new_key()
    keys.store(job_id, key)
    blob = seal(key, b"the selfie", job_id)
    time.sleep(1.5)
    with pytest.raises(KeyGone):
        keys.load(job_id)
    with pytest.raises(SealBroken):  # and no other key opens it
        unseal(new_key(), blob, job_id)


def test_claims_are_leased(backends):
    schedule = backends.eraser.schedule
    schedule.add(Tracked(ObjectKind.RESULT, "results/a.jpg", "a", 0.0), deadline=1.0)
    assert [t.key for t in schedule.claim_due(ObjectKind.RESULT, now=10.0, limit=10, lease_seconds=30)] == [
        "results/a.jpg"
    ]
    assert schedule.claim_due(ObjectKind.RESULT, now=20.0, limit=10, lease_seconds=30) == []  # leased
    assert len(schedule.claim_due(ObjectKind.RESULT, now=41.0, limit=10, lease_seconds=30)) == 1


def test_failing_deletions_still_show_the_true_age(backends):
    """Leases and retries push deadlines back; the oldest-source age and the overdue count must not move."""
    job_id = new_job_id()
    created = time.time() - 200
    backends.eraser.track(ObjectKind.SOURCE, source_key(job_id), job_id, created, 10)
    dead = ObjectStore(
        backends.settings.model_copy(
            update={
                "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
                "s3_max_attempts": 1,
                "s3_connect_timeout": 0.3,
            }
        )
    )
    now = time.time()
    janitor(backends, at=now, storage=dead).sweep()  # fails: deadline pushed back by the retry
    assert metrics.OLDEST_SOURCE_AGE._value.get() >= 199
    assert metrics.OVERDUE.labels(kind="source")._value.get() == 1
    assert backends.eraser.schedule.overdue(ObjectKind.SOURCE, now, 10) == 1


# --- rescue (#9) -------------------------------------------------------------------------------------------


def test_job_whose_lease_lapsed_is_sent_again_once_per_rescue_wait(backends, astronaut_path):
    leases = JobLeases(backends.redis, LEASE)
    job_id = backends.submit(astronaut_path.read_bytes())
    backends.jobs.transition(job_id, JobState.PROCESSING, attempts=1)
    start = time.time()
    hold_lease(backends.redis, job_id, "worker-host:1", start + LEASE)
    sent: list[str] = []
    janitor(backends, at=start + 1, sent=sent).sweep()
    assert sent == []  # the lease still runs
    janitor(backends, at=start + 2.5, sent=sent).sweep()
    assert sent == [job_id] and leases.holder(job_id) == "rescue"
    janitor(backends, at=start + 5, sent=sent).sweep()
    assert sent == [job_id]  # handed to `rescue` for three lease periods: no second copy yet
    janitor(backends, at=start + 9, sent=sent).sweep()
    assert sent == [job_id, job_id]  # nobody took it: sent once more


def test_lapsed_lease_of_a_finished_job_is_forgotten(backends, astronaut_path):
    leases = JobLeases(backends.redis, LEASE)
    job_id = backends.submit(astronaut_path.read_bytes())
    backends.jobs.transition(job_id, JobState.FAILED, error_code="no_face")
    hold_lease(backends.redis, job_id, "worker-host:1", time.time() + LEASE)
    sent: list[str] = []
    janitor(backends, at=time.time() + 3, sent=sent).sweep()
    assert sent == [] and leases.count() == 0

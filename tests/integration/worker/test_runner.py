"""JobRunner against real Redis, SeaweedFS and the real engine: every way a job can end."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest
import redis

from scripts.support import samples
from scripts.support.service_settings import service_settings
from services.worker.outcomes import DONE, SKIPPED, Outcome, TransientError
from services.worker.runner import JobRunner
from services.worker.stage_reporter import on_reporter_thread
from shared.audit import ObjectKind
from shared.deletion import Eraser
from shared.errors import JobErrorCode
from shared.job_start import JobStarter
from shared.jobs import Job, JobState, JobStore, now
from shared.leases import JobLeases
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore, StorageUnavailable, source_key
from tests.support.leases import hold_lease
from tests.support.service import Backends


@pytest.fixture
def runner(backends, engine) -> JobRunner:
    return backends.runner(engine)


class FlakyStore(ObjectStore):
    """S3 that fails the next `failures` reads, the way a restarting server does."""

    def __init__(self, settings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures

    def get(self, bucket: str, key: str) -> bytes:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("simulated outage")
        return super().get(bucket, key)


def test_done_job_has_result_and_no_source(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink")
    assert runner.run(job_id) == DONE
    job = backends.jobs.get(job_id)
    assert job.state is JobState.DONE and job.family == "ink" and job.reason and job.timings
    assert job.identity_distance is not None and 0 < job.identity_distance < 0.6  # the likeness check's (#21)
    assert job.result_key and backends.storage.exists(backends.storage.results_bucket, job.result_key)
    assert job.result_expires_at > job.finished_at
    assert not backends.source_exists(job_id)
    with pytest.raises(LookupError):
        backends.keys.load(job_id)
    # A redelivered task for a finished job does nothing.
    assert runner.run(job_id) == SKIPPED
    assert backends.jobs.get(job_id) == job


@pytest.mark.backends(redis_wait_replicas=1, redis_wait_timeout_ms=50)
def test_a_done_no_replica_confirmed_keeps_the_photo_to_its_deadline(backends, runner, astronaut_path):
    # The session's Redis has no replica, so `done` is never confirmed (#24): a failover could still undo it, and
    # the rescued job would need its photo. It stays, on the schedule, for the janitor at its maximum age.
    job_id = backends.submit(astronaut_path.read_bytes())
    assert runner.run(job_id) == DONE
    assert backends.jobs.get(job_id).state is JobState.DONE
    assert backends.source_exists(job_id)
    tracked = backends.schedule.get(ObjectKind.SOURCE, source_key(job_id))
    assert tracked is not None and tracked.job_id == job_id


def test_no_face_fails_at_once_and_deletes_the_source(backends, runner):
    job_id = backends.submit(samples.coffee_path().read_bytes())
    assert runner.run(job_id) == Outcome.failed(JobErrorCode.NO_FACE)
    job = backends.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "no_face" and job.error_message
    assert not backends.source_exists(job_id)


def test_expired_key_fails_with_source_expired(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    backends.keys.delete(job_id)
    assert runner.run(job_id) == Outcome.failed(JobErrorCode.SOURCE_EXPIRED)
    assert not backends.source_exists(job_id)


def test_transient_storage_error_then_success(backends, engine, astronaut_path):
    flaky = FlakyStore(backends.settings, failures=1)
    runner = backends.runner(engine, storage=flaky)
    job_id = backends.submit(astronaut_path.read_bytes())
    with pytest.raises(TransientError):
        runner.run(job_id)
    assert backends.jobs.get(job_id).state is JobState.PROCESSING  # not failed: it will be retried
    assert backends.source_exists(job_id)
    assert runner.run(job_id) == DONE
    assert backends.jobs.get(job_id).attempts == 2


def test_the_claim_brings_the_source_key(backends, engine, astronaut_path):
    """#11: the key of a source already stored comes back with the job's start (one Lua call), so the path reads
    no key of its own; a worker that arrives before the key waits for it instead (tested below)."""
    loads = []

    class CountingKeys(SourceKeys):
        def load(self, job_id):
            loads.append(job_id)
            return super().load(job_id)

    settings = backends.settings
    runner = JobRunner(
        settings,
        backends.jobs,
        backends.storage,
        CountingKeys(backends.redis, settings.source_max_age_seconds),
        backends.eraser,
        engine,
        JobLeases(backends.redis, settings.job_lease_seconds),
    )
    job_id = backends.submit(astronaut_path.read_bytes())
    assert runner.run(job_id) == DONE
    assert loads == []


def test_source_is_fetched_while_the_job_is_claimed(backends, engine, astronaut_path):
    """#11: the S3 read does not wait for the claim's Redis round trip. The job is started only once the read
    has begun: a runner that fetched after claiming would leave `fetch_began` unset for the whole wait."""
    fetch_began = threading.Event()
    seen_at_claim = []

    class WatchedStore(ObjectStore):
        def get(self, bucket: str, key: str) -> bytes:
            fetch_began.set()
            return super().get(bucket, key)

    class WaitingStarter(JobStarter):
        def start(self, job_id, owner, now, **options):
            seen_at_claim.append(fetch_began.wait(timeout=10))
            return super().start(job_id, owner, now, **options)

    settings = backends.settings
    runner = JobRunner(
        settings,
        backends.jobs,
        WatchedStore(settings),
        backends.keys,
        backends.eraser,
        engine,
        JobLeases(backends.redis, settings.job_lease_seconds),
        starter=WaitingStarter(backends.redis, settings.job_ttl_seconds, settings.job_lease_seconds),
    )
    job_id = backends.submit(astronaut_path.read_bytes())
    assert runner.run(job_id) == DONE
    assert seen_at_claim == [True]
    assert not backends.source_exists(job_id)


def test_an_early_fetch_that_failed_is_dropped_with_a_refused_claim(backends, runner, astronaut_path):
    """The source is read before the lease is asked for: when the claim is refused, what the read found (here:
    no key) must neither fail the job nor leak out of the runner."""
    job_id = backends.submit(astronaut_path.read_bytes())
    _processing_under(backends, job_id, "another-host:4242", time.time() + 30)
    backends.keys.delete(job_id)
    assert runner.run(job_id) == SKIPPED
    assert backends.jobs.get(job_id).state is JobState.PROCESSING


def test_a_job_sent_before_its_source_is_stored_waits_for_it(backends, runner, astronaut_path):
    """#11: the gateway sends the job while its S3 put runs and publishes the key after; the worker waits."""
    storing = backends.begin_submit(astronaut_path.read_bytes(), style="ink")
    stored = threading.Timer(0.3, storing.finish)
    stored.start()
    try:
        assert runner.run(storing.job_id) == DONE
    finally:
        stored.join()
    assert backends.jobs.get(storing.job_id).state is JobState.DONE
    assert not backends.source_exists(storing.job_id)


def _when_processing(backends, job_id: str, action) -> threading.Thread:
    """Run `action` once the job is `processing` (its worker then waits for the source)."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = backends.jobs.get(job_id)
            if job is not None and job.state is JobState.PROCESSING:
                break
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def _scheduled_source(backends, job_id: str) -> bool:
    return backends.schedule.contains(ObjectKind.SOURCE, source_key(job_id))


def test_an_upload_abandoned_while_its_worker_waits_leaves_the_source_to_its_schedule(backends, runner, astronaut_path):
    """The put failed after the job was sent: the gateway's undo ends the wait. The worker must not erase: the
    put it gave up on may still land (issue 9), and only the schedule, left in place, deletes it then."""
    storing = backends.begin_submit(astronaut_path.read_bytes())
    undo = _when_processing(backends, storing.job_id, storing.abandon)
    try:
        assert runner.run(storing.job_id) == Outcome.failed(JobErrorCode.SOURCE_EXPIRED)
    finally:
        undo.join()
    assert _scheduled_source(backends, storing.job_id)
    assert all(entry.job_id != storing.job_id for entry in backends.audit.entries())
    # The write the gateway gave up on lands after all: still on the schedule, and unreadable (no key).
    storing.backends.storage.put(
        backends.storage.sources_bucket, source_key(storing.job_id), b"late ciphertext", "application/octet-stream"
    )
    assert _scheduled_source(backends, storing.job_id)
    with pytest.raises(LookupError):
        backends.keys.load(storing.job_id)


def test_an_upload_abandoned_before_its_worker_looks_leaves_the_source_to_its_schedule(
    backends, runner, astronaut_path
):
    """#23 (`make chaos`, S3 frozen): the worker's first look came after the gateway's undo. It erased the source
    then, and the put given up on landed after the erasure: an orphan nothing had scheduled."""
    storing = backends.begin_submit(astronaut_path.read_bytes())
    storing.abandon()
    backends.jobs.create(Job(id=storing.job_id, state=JobState.QUEUED, created_at=now()))  # still claimable
    assert runner.run(storing.job_id) == Outcome.failed(JobErrorCode.SOURCE_EXPIRED)
    assert _scheduled_source(backends, storing.job_id)
    assert all(entry.job_id != storing.job_id for entry in backends.audit.entries())


def test_a_source_never_stored_by_a_dead_gateway_fails_the_job_once_its_mark_lapses(backends, runner, astronaut_path):
    """The gateway died between sending the job and publishing its key: no undo comes, the expected mark's own
    expiry ends the wait, and the job fails (its client never had an answer) with the source left scheduled."""
    storing = backends.begin_submit(astronaut_path.read_bytes(), expected_seconds=0.5)
    began = time.monotonic()
    assert runner.run(storing.job_id) == Outcome.failed(JobErrorCode.SOURCE_EXPIRED)
    assert 0.4 <= time.monotonic() - began < 5
    job = backends.jobs.get(storing.job_id)
    assert job.state is JobState.FAILED and job.error_code == "source_expired"
    assert _scheduled_source(backends, storing.job_id)


def test_job_erased_during_render_leaves_no_result(backends, engine, astronaut_path):
    class ErasingEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            portrait = engine.render(data, style=style, strength=strength, progress=progress)
            backends.jobs.delete(job_id)  # the owner pressed delete while we painted
            return portrait

    job_id = backends.submit(astronaut_path.read_bytes())
    runner = backends.runner(ErasingEngine())
    assert runner.run(job_id) == SKIPPED
    assert not backends.storage.exists(backends.storage.results_bucket, f"results/{job_id}.jpg")
    assert not backends.source_exists(job_id)


def test_a_start_a_failover_undid_keeps_the_photo_for_the_next_delivery(backends, engine, astronaut_path):
    class FailingOverEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            portrait = engine.render(data, style=style, strength=strength, progress=progress)
            # The promoted replica had the job still queued: this render's start was lost with the old primary.
            backends.redis.hset(JobStore.keys_for(job_id).record, "state", json.dumps("queued"))
            return portrait

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(FailingOverEngine()).run(job_id) == SKIPPED
    assert backends.source_exists(job_id)  # not erased as for a deleted job (#24): the next delivery needs it
    assert not backends.storage.exists(backends.storage.results_bucket, f"results/{job_id}.jpg")
    assert backends.runner(engine).run(job_id) == DONE
    assert backends.jobs.get(job_id).state is JobState.DONE


def test_the_results_deletion_is_scheduled_while_its_render_finishes(backends, engine, astronaut_path):
    """#11: scheduled from the progress thread as the last stage begins, not between the render and the put; the
    job's advertised expiry is the schedule's."""
    rendered_at = []

    class TimedEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            portrait = engine.render(data, style=style, strength=strength, progress=progress)
            rendered_at.append(time.time())
            return portrait

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(TimedEngine()).run(job_id) == DONE
    job = backends.jobs.get(job_id)
    tracked = backends.schedule.get(ObjectKind.RESULT, job.result_key)
    assert tracked is not None and tracked.created_at < rendered_at[0]
    assert job.result_expires_at == pytest.approx(tracked.created_at + backends.settings.result_ttl_seconds)


def test_a_result_not_scheduled_ahead_is_scheduled_before_its_put(backends, engine, astronaut_path, monkeypatch):
    refused = []
    track = Eraser.track

    def refusing_ahead(self, kind, key, *args, **kwargs):
        if kind is ObjectKind.RESULT and on_reporter_thread():
            refused.append(key)
            raise redis.ConnectionError("simulated")
        return track(self, kind, key, *args, **kwargs)

    monkeypatch.setattr(Eraser, "track", refusing_ahead)
    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(engine).run(job_id) == DONE
    job = backends.jobs.get(job_id)
    assert refused == [job.result_key]
    tracked = backends.schedule.get(ObjectKind.RESULT, job.result_key)
    assert tracked is not None
    assert job.result_expires_at == pytest.approx(tracked.created_at + backends.settings.result_ttl_seconds)


def test_log_lines_during_a_job_carry_its_id(backends, engine, astronaut_path):
    import structlog

    seen = {}

    class ContextCapturingEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            seen.update(structlog.contextvars.get_contextvars())
            return engine.render(data, style=style, strength=strength, progress=progress)

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(ContextCapturingEngine()).run(job_id) == DONE
    assert seen.get("job_id") == job_id
    assert "job_id" not in structlog.contextvars.get_contextvars()  # unbound afterwards


# --- leases (#9): a job whose worker vanished is painted again; a live one is never painted twice ----------


def _processing_under(backends, job_id: str, holder: str, deadline: float, restarts: int = 0) -> None:
    """The state a job is left in when the render process `holder` took it and then vanished."""
    backends.jobs.transition(job_id, JobState.PROCESSING, attempts=1, restarts=restarts, stage="generate")
    hold_lease(backends.redis, job_id, holder, deadline)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_lease_is_held_while_painting_and_released_after(backends, engine, astronaut_path):
    holders = []

    class WatchingEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            holders.append(leases.holder(job_id))
            return engine.render(data, style=style, strength=strength, progress=progress)

    leases = JobLeases(backends.redis, backends.settings.job_lease_seconds)
    job_id = backends.submit(astronaut_path.read_bytes())
    runner = backends.runner(WatchingEngine())
    assert runner.run(job_id) == DONE
    assert holders == [runner.owner]
    assert leases.holder(job_id) is None and backends.redis.zscore(leases.DEADLINES, job_id) is None


def test_rescued_job_is_painted_and_counts_a_restart(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    _processing_under(backends, job_id, "rescue", time.time() + 30)
    assert runner.run(job_id) == DONE
    assert backends.jobs.get(job_id).restarts == 1


def test_live_lease_elsewhere_drops_the_duplicate_delivery(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    _processing_under(backends, job_id, "another-host:4242", time.time() + 30)
    assert runner.run(job_id) == SKIPPED
    job = backends.jobs.get(job_id)
    assert job.state is JobState.PROCESSING and job.attempts == 1 and backends.source_exists(job_id)


def test_lease_of_a_killed_render_process_on_this_host_is_taken_at_once(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    _processing_under(backends, job_id, f"{socket.gethostname()}:{_dead_pid()}", time.time() + 30)
    assert runner.run(job_id) == DONE  # no waiting for the lease to lapse
    assert backends.jobs.get(job_id).restarts == 1


def test_a_photo_that_keeps_killing_workers_fails_worker_lost(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    _processing_under(backends, job_id, "rescue", time.time() + 30, restarts=backends.settings.job_max_restarts)
    assert runner.run(job_id) == Outcome.failed(JobErrorCode.WORKER_LOST)
    assert backends.jobs.get(job_id).error_code == "worker_lost"
    assert not backends.source_exists(job_id)


def test_render_rescued_elsewhere_meanwhile_is_discarded(redis_server, s3_server, engine, astronaut_path):
    backends = Backends.connect(service_settings(redis_server.url, s3_server, job_lease_seconds=1))
    leases = JobLeases(backends.redis, 1)

    class StalledEngine:  # looks dead long enough for the janitor to hand the job to someone else
        def render(self, data, style="auto", strength=None, progress=None):
            backends.redis.hset(leases.OWNERS, job_id, "other-host:1")
            time.sleep(0.8)  # more than two renewal beats
            return engine.render(data, style=style, strength=strength, progress=progress)

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(StalledEngine()).run(job_id) == SKIPPED
    assert backends.jobs.get(job_id).state is JobState.PROCESSING  # the rescuer will finish it
    assert not backends.storage.exists(backends.storage.results_bucket, f"results/{job_id}.jpg")
    # Nor is its deletion scheduled: that is the rescuer's, at the rescuer's time (#11).
    assert not backends.schedule.contains(ObjectKind.RESULT, f"results/{job_id}.jpg")
    assert backends.source_exists(job_id)


def test_duplicate_finishing_second_keeps_the_first_result(backends, engine, astronaut_path):
    class OvertakenEngine:  # another delivery finishes the job while this one paints
        def render(self, data, style="auto", strength=None, progress=None):
            portrait = engine.render(data, style=style, strength=strength, progress=progress)
            backends.jobs.transition(job_id, JobState.DONE, result_key=f"results/{job_id}.jpg")
            return portrait

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(OvertakenEngine()).run(job_id) == SKIPPED
    assert backends.jobs.get(job_id).state is JobState.DONE
    assert backends.storage.exists(backends.storage.results_bucket, f"results/{job_id}.jpg")

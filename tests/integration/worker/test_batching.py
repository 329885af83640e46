"""Dynamic batching across requests (#11): a render process takes queued jobs along and paints them in one engine
call, against real Redis, SeaweedFS and the real engine; each job keeps its own outcome, progress and delivery."""

from __future__ import annotations

import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from scripts.support import samples
from services.worker.outcomes import DONE, SKIPPED, Outcome, TransientError
from services.worker.process import RenderProcess
from services.worker.runner import JobRunner
from shared.errors import JobErrorCode
from shared.events import key as events_key
from shared.jobs import JobState
from shared.storage import ObjectStore, StorageUnavailable
from tests.integration.worker.test_runner import FlakyStore
from tests.support.leases import hold_lease
from tests.support.render import eager_render_task
from tests.support.service import Backends


class RecordingEngine:
    """The real engine, noting how many photos each call painted."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls: list[int] = []

    def render(self, data, style="auto", strength=None, progress=None):
        self.calls.append(1)
        return self.engine.render(data, style=style, strength=strength, progress=progress)

    def render_batch(self, requests, progress=None):
        self.calls.append(len(requests))
        return self.engine.render_batch(requests, progress)


class FlakyResultStore(FlakyStore):
    """S3 that fails the next `failures` writes of results (the first portraits of a batch are already painted);
    reads always work."""

    def get(self, bucket: str, key: str) -> bytes:
        return ObjectStore.get(self, bucket, key)

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        if bucket == self.results_bucket and self.failures:
            self.failures -= 1
            raise StorageUnavailable("simulated outage")
        super().put(bucket, key, data, content_type)


# Each test's Redis database starts empty (tests/integration/conftest.py): no queued ids of other tests join a batch.
pytestmark = pytest.mark.backends(batch_max_size=4, batch_wait_ms=0)


def batch_runner(backends: Backends, engine, storage=None, **overrides: object) -> JobRunner:
    settings = backends.settings.model_copy(update=overrides)
    runner = backends.runner(engine, storage=storage)
    runner._settings = settings  # the batch settings under test; everything else as the suite's runner
    return runner


def test_one_call_paints_the_queue_and_each_job_ends_on_its_own(backends, engine, astronaut_path):
    recorder = RecordingEngine(engine)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    no_face = backends.submit(samples.coffee_path().read_bytes())
    others = [backends.submit(samples.grace_hopper_path().read_bytes(), style="ink") for _ in range(3)]

    outcomes = batch_runner(backends, recorder).run_batch(first)

    # The job itself and the three oldest queued ones, one engine call; the fifth waits for its own turn.
    assert recorder.calls == [4]
    assert outcomes == {first: DONE, no_face: Outcome.failed(JobErrorCode.NO_FACE), others[0]: DONE, others[1]: DONE}
    assert backends.jobs.get(no_face).error_code == "no_face" and not backends.source_exists(no_face)
    for job_id in (first, others[0], others[1]):
        job = backends.jobs.get(job_id)
        assert job.state is JobState.DONE and job.result_key and not backends.source_exists(job_id)
        stages = [
            fields[b"stage"]
            for _, fields in backends.redis.xrange(events_key(job_id))
            if fields.get(b"kind") == b"stage"
        ]
        assert b'"generate"' in stages  # each job of the batch reports its own progress
    assert backends.jobs.get(others[2]).state is JobState.QUEUED
    assert backends.jobs.queue_position(others[2]) == 0

    # The broker still delivers each taken job's own message: it finds the job finished and drops it.
    assert batch_runner(backends, recorder).run_batch(others[0]) == {others[0]: SKIPPED}
    assert recorder.calls == [4]


def test_a_job_leased_by_another_live_worker_is_left_to_it(backends, engine, astronaut_path):
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    taken = backends.submit(astronaut_path.read_bytes(), style="ink")
    free = backends.submit(astronaut_path.read_bytes(), style="ink")
    hold_lease(backends.redis, taken, "elsewhere:1", time.time() + backends.settings.job_lease_seconds)

    outcomes = batch_runner(backends, RecordingEngine(engine)).run_batch(first)

    assert outcomes == {first: DONE, free: DONE}
    assert backends.jobs.get(taken).state is JobState.QUEUED


def test_a_job_whose_source_is_still_being_stored_is_left_to_its_own_message(backends, engine, astronaut_path):
    """#11: the gateway records and sends a job while its source's S3 put runs. A batch must not take such a job
    along (it would wait on another upload's put, or paint nothing); its own message brings it once stored."""
    recorder = RecordingEngine(engine)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    storing = backends.begin_submit(astronaut_path.read_bytes(), style="ink")
    free = backends.submit(astronaut_path.read_bytes(), style="ink")

    outcomes = batch_runner(backends, recorder).run_batch(first)

    assert outcomes == {first: DONE, free: DONE} and recorder.calls == [2]
    assert backends.jobs.get(storing.job_id).state is JobState.QUEUED
    storing.finish()
    assert batch_runner(backends, recorder).run_batch(storing.job_id) == {storing.job_id: DONE}


def test_a_batch_waits_up_to_batch_wait_for_jobs_still_arriving(backends, engine, astronaut_path):
    recorder = RecordingEngine(engine)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    late: list[str] = []
    arrival = threading.Timer(0.2, lambda: late.append(backends.submit(astronaut_path.read_bytes(), style="ink")))
    arrival.start()
    try:
        outcomes = batch_runner(backends, recorder, batch_wait_ms=1500).run_batch(first)
    finally:
        arrival.join()
    assert recorder.calls == [2]
    assert outcomes == {first: DONE, late[0]: DONE}


def test_without_wait_a_lone_job_is_painted_at_once(backends, engine, astronaut_path):
    recorder = RecordingEngine(engine)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    assert batch_runner(backends, recorder).run_batch(first) == {first: DONE}
    assert recorder.calls == [1]


def test_a_batch_cut_short_by_an_outage_is_carried_into_the_retry(backends, engine, astronaut_path):
    flaky = FlakyResultStore(backends.settings, failures=0)
    runner = batch_runner(backends, RecordingEngine(engine), storage=flaky)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    second = backends.submit(astronaut_path.read_bytes(), style="ink")
    flaky.failures = 1  # the first result write of the batch fails

    with pytest.raises(TransientError):
        runner.run_batch(first)
    assert set(runner.unfinished()) == {first, second}
    assert backends.jobs.get(second).state is JobState.PROCESSING  # still leased to this process

    # The retry (the task's own job) paints the rest of the batch too, without counting a restart.
    assert runner.run_batch(first) == {first: DONE, second: DONE}
    assert runner.unfinished() == []
    assert backends.jobs.get(second).restarts == 0


class TimesOutEngine:
    """A render that runs into the task's soft time limit."""

    def render(self, data, style="auto", strength=None, progress=None):
        raise SoftTimeLimitExceeded()

    def render_batch(self, requests, progress=None):
        raise SoftTimeLimitExceeded()


def test_a_time_limit_fails_every_job_of_the_batch(backends, astronaut_path):
    engine = TimesOutEngine()
    runner = batch_runner(backends, engine)
    first = backends.submit(astronaut_path.read_bytes(), style="ink")
    second = backends.submit(astronaut_path.read_bytes(), style="ink")
    proc = RenderProcess(settings=backends.settings, backends=backends, engine=engine, runner=runner, capacity=None)
    with eager_render_task(proc) as render_portrait:
        render_portrait.apply(args=[first])
    for job_id in (first, second):
        job = backends.jobs.get(job_id)
        assert job.state is JobState.FAILED and job.error_code == "timeout"
        assert not backends.source_exists(job_id)
    assert runner.unfinished() == []

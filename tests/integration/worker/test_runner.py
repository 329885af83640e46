"""JobRunner against real Redis, SeaweedFS and the real engine: every way a job can end."""

from __future__ import annotations

import pytest

from services.worker.runner import JobRunner, TransientError
from shared.jobs import JobState
from shared.storage import ObjectStore, StorageUnavailable
from tests.support import samples
from tests.support.service import Backends, service_settings


@pytest.fixture(scope="module")
def backends(redis_server, s3_server) -> Backends:
    return Backends.connect(service_settings(redis_server.url, s3_server))


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
    assert runner.run(job_id) == "done"
    job = backends.jobs.get(job_id)
    assert job.state is JobState.DONE and job.family == "ink" and job.reason and job.timings
    assert job.result_key and backends.storage.exists(backends.storage.results_bucket, job.result_key)
    assert job.result_expires_at > job.finished_at
    assert not backends.source_exists(job_id)
    with pytest.raises(LookupError):
        backends.keys.load(job_id)
    # A redelivered task for a finished job does nothing.
    assert runner.run(job_id) == "skipped"
    assert backends.jobs.get(job_id) == job


def test_no_face_fails_at_once_and_deletes_the_source(backends, runner):
    job_id = backends.submit(samples.coffee_path().read_bytes())
    assert runner.run(job_id) == "failed:no_face"
    job = backends.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "no_face" and job.error_message
    assert not backends.source_exists(job_id)


def test_expired_key_fails_with_source_expired(backends, runner, astronaut_path):
    job_id = backends.submit(astronaut_path.read_bytes())
    backends.keys.delete(job_id)
    assert runner.run(job_id) == "failed:source_expired"
    assert not backends.source_exists(job_id)


def test_transient_storage_error_then_success(backends, engine, astronaut_path):
    flaky = FlakyStore(backends.settings, failures=1)
    runner = backends.runner(engine, storage=flaky)
    job_id = backends.submit(astronaut_path.read_bytes())
    with pytest.raises(TransientError):
        runner.run(job_id)
    assert backends.jobs.get(job_id).state is JobState.PROCESSING  # not failed: it will be retried
    assert backends.source_exists(job_id)
    assert runner.run(job_id) == "done"
    assert backends.jobs.get(job_id).attempts == 2


def test_job_erased_during_render_leaves_no_result(backends, engine, astronaut_path):
    class ErasingEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            portrait = engine.render(data, style=style, strength=strength, progress=progress)
            backends.jobs.delete(job_id)  # the owner pressed delete while we painted
            return portrait

    job_id = backends.submit(astronaut_path.read_bytes())
    runner = backends.runner(ErasingEngine())
    assert runner.run(job_id) == "skipped"
    assert not backends.storage.exists(backends.storage.results_bucket, f"results/{job_id}.jpg")
    assert not backends.source_exists(job_id)


def test_log_lines_during_a_job_carry_its_id(backends, engine, astronaut_path):
    import structlog

    seen = {}

    class ContextCapturingEngine:
        def render(self, data, style="auto", strength=None, progress=None):
            seen.update(structlog.contextvars.get_contextvars())
            return engine.render(data, style=style, strength=strength, progress=progress)

    job_id = backends.submit(astronaut_path.read_bytes())
    assert backends.runner(ContextCapturingEngine()).run(job_id) == "done"
    assert seen.get("job_id") == job_id
    assert "job_id" not in structlog.contextvars.get_contextvars()  # unbound afterwards

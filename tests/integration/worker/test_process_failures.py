"""Process-level failure modes, one tiny fixture each (tests/fixtures/render_failures/, #12): a real prefork
Celery worker on the session's real Redis and SeaweedFS, with a renderer that fails to load, one that runs past
the soft time limit, and one that kills its own process; each test asserts what the user sees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scripts.support.service_settings import service_settings
from scripts.worker_process import WorkerProcess
from shared.errors import JobErrorCode
from shared.jobs import Job, JobState
from shared.queue import enqueue_render, make_celery
from shared.settings import Settings
from tests.support.service import Backends

pytestmark = pytest.mark.integration

PHOTO = b"any bytes: the fixtures' renderers do not read them"


def fixture_worker(settings: Settings, workdir: Path, module: str) -> WorkerProcess:
    """scripts/worker_process.py's launcher, pointed at a failure fixture's app module instead of production's
    (`celery -A <module>`): which renderer a worker loads is its app module, never a setting (process.py)."""
    return WorkerProcess(settings, workdir, app=f"tests.fixtures.render_failures.{module}")


def submit(backends: Backends) -> str:
    job_id = backends.submit(PHOTO)
    enqueue_render(make_celery(backends.settings), backends.settings, job_id)
    return job_id


def wait_for_end(backends: Backends, job_id: str, timeout: float = 60.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backends.jobs.get(job_id)
        if job is not None and job.state in (JobState.DONE, JobState.FAILED):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.state if job else 'gone'} after {timeout} s")


def settings_for(redis_server, s3_server, queue: str, **overrides: object) -> Settings:
    return service_settings(
        redis_server.url,
        s3_server,
        queue_name=queue,
        sources_bucket=f"{queue}-sources",
        results_bucket=f"{queue}-results",
        **overrides,
    )


def test_a_renderer_that_fails_to_load_fails_the_job_with_its_code(redis_server, s3_server, tmp_path):
    # The job fails at once with a code that says "try again later" (not left queued until its source expires),
    # and the process reports `failed`, which the liveness probe turns into a restart.
    settings = settings_for(redis_server, s3_server, "fails-to-load")
    backends = Backends.connect(settings)
    worker = fixture_worker(settings, tmp_path, "fails_to_load")
    worker.process.start()
    try:
        worker.process.wait_ready(lambda: worker.processes_in("failed") >= 1, 60, interval=0.25)
        job_id = submit(backends)
        job = wait_for_end(backends, job_id)
        assert job.state is JobState.FAILED and job.error_code == JobErrorCode.MODELS_UNAVAILABLE
        # The load error's own text names our files: the person gets the table's words (#25).
        assert job.error_message == JobErrorCode.MODELS_UNAVAILABLE.message
        assert "failure fixture" not in job.error_message
        assert not backends.source_exists(job_id)
        assert worker.processes_in("failed") >= 1 and worker.processes_in("ready") == 0  # still says so
        assert worker.process.running  # not a crash loop: the orchestrator decides
    finally:
        worker.stop()


def test_a_render_past_the_soft_limit_fails_its_job_and_the_process_goes_on(redis_server, s3_server, tmp_path):
    settings = settings_for(redis_server, s3_server, "overruns", task_soft_time_limit=5, task_hard_time_limit=10)
    backends = Backends.connect(settings)
    worker = fixture_worker(settings, tmp_path, "overruns").start(timeout=60)
    try:
        pids = worker.child_pids()
        slow = submit(backends)
        job = wait_for_end(backends, slow)
        assert job.state is JobState.FAILED and job.error_code == JobErrorCode.TIMEOUT
        assert not backends.source_exists(slow)
        after = submit(backends)  # the same process paints the next one
        assert wait_for_end(backends, after).state is JobState.DONE
        assert worker.child_pids() == pids  # the soft limit stopped the render, not the process
    finally:
        worker.stop()


def test_a_render_that_kills_its_process_is_redelivered_and_finished(redis_server, s3_server, tmp_path):
    settings = settings_for(redis_server, s3_server, "kills-itself")
    backends = Backends.connect(settings)
    worker = fixture_worker(settings, tmp_path, "kills_itself").start(timeout=60)
    try:
        pids = worker.child_pids()
        job_id = submit(backends)
        job = wait_for_end(backends, job_id)
        # acks late + reject on worker loss: the message went back to the queue, a new process painted it.
        assert job.state is JobState.DONE and job.restarts == 1, job
        assert (tmp_path / "killed-once").exists()
        assert worker.child_pids() != pids  # Celery replaced the dead process
        assert wait_for_end(backends, submit(backends)).state is JobState.DONE  # and goes on serving
    finally:
        worker.stop()

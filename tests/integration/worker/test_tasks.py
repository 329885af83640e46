"""The Celery task around the runner: transient errors become retries with backoff, then success or a clear
failure once the retries run out."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from scripts.support.service_settings import service_settings
from services.worker import process, tasks
from services.worker.process import HandOffClock
from shared.capacity import CapacityBoard
from shared.jobs import JobState
from tests.integration.worker.test_runner import FlakyStore
from tests.support.render import eager_render_task
from tests.support.service import Backends


@pytest.fixture
def eager_task(redis_server, s3_server, engine):
    """The real task, run in-process (Celery's eager mode runs retries synchronously), on a render process over
    a store that fails its first `failures` reads."""
    # A soft limit of 16 s leaves 1 s of in-process retries (0 s and 0.5 s) before each broker retry.
    backends = Backends.connect(
        service_settings(redis_server.url, s3_server, task_soft_time_limit=16, task_max_retries=2)
    )

    with ExitStack() as stack:

        def install(failures: int, board: bool = False) -> tuple[Backends, tasks.RenderTask]:
            """`board`: the process reports to a capacity board of its own (emptied first)."""
            capacity = None
            if board:
                backends.redis.delete(CapacityBoard.KEY)
                capacity = CapacityBoard(backends.redis, owner="test-render-process:1")
            flaky = FlakyStore(backends.settings, failures=failures)
            proc = backends.render_process(engine, storage=flaky, capacity=capacity)
            return backends, stack.enter_context(eager_render_task(proc))

        yield install


def test_transient_error_retries_then_succeeds(eager_task, astronaut_path):
    backends, render_portrait = eager_task(failures=2)
    job_id = backends.submit(astronaut_path.read_bytes())
    render_portrait.apply(args=[job_id])
    job = backends.jobs.get(job_id)
    assert job.state is JobState.DONE and job.attempts == 3


def test_retries_run_out_into_a_clear_failure(eager_task, astronaut_path):
    backends, render_portrait = eager_task(failures=100)
    job_id = backends.submit(astronaut_path.read_bytes())
    render_portrait.apply(args=[job_id])
    job = backends.jobs.get(job_id)
    assert job.state is JobState.FAILED and job.error_code == "unavailable"
    # Two runs in each of the three deliveries (the first and two broker retries).
    assert job.attempts == 2 * (backends.settings.task_max_retries + 1)
    assert not backends.source_exists(job_id)


def test_each_task_reports_its_time_per_job_for_load_shedding(eager_task, astronaut_path):
    # #11: the gateways shed uploads from these reports; a duplicate delivery settles no job and reports nothing.
    backends, render_portrait = eager_task(failures=0, board=True)
    board = process.current().capacity
    job_id = backends.submit(astronaut_path.read_bytes())
    render_portrait.apply(args=[job_id])
    assert backends.jobs.get(job_id).state is JobState.DONE
    first = board.seconds_per_job
    assert first is not None and 0 < first < backends.settings.task_soft_time_limit
    assert board.capacity().renderers == 1
    render_portrait.apply(args=[job_id])  # redelivered: skipped
    assert board.seconds_per_job == first
    backends.redis.delete(CapacityBoard.KEY)


def test_backoff_doubles_and_caps():
    assert [tasks.retry_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_back_to_back_tasks_count_their_hand_off_and_idle_gaps_do_not():
    # #11: the capacity estimate must see what a task costs the process's throughput, hand-off included.
    clock = HandOffClock()
    assert clock.busy_seconds(10.0, 10.5) == 0.5  # the first task: its own time
    assert clock.busy_seconds(10.6, 11.0) == pytest.approx(0.5)  # followed on 0.1 s later: 10.5 → 11.0
    assert clock.busy_seconds(20.0, 20.4) == pytest.approx(0.4)  # after 9 s idle: its own time only

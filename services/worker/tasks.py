"""The render task: a thin Celery shell around `JobRunner` that turns transient errors into retries.

Retries happen in this process first (issue 9): a Celery retry is a new message, which cannot be queued while
Redis is down — exactly when it is needed. So a render that meets an outage waits and tries again here, holding
its job's lease, for as long as its soft time limit allows; only then does it go back to the broker. If even
that fails, the lease lapses and the janitor sends the job again once Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from services.worker import metrics, process
from services.worker.lifecycle import WorkerState
from services.worker.outcomes import Outcome, TransientError
from services.worker.process import EngineFactory, RenderProcess
from shared.errors import JobErrorCode
from shared.logging import get_logger
from shared.queue import RENDER_TASK, queue_depth
from shared.settings import Settings

log = get_logger("portraits.worker")

# Seconds of the soft time limit kept for the render itself after the last in-process retry.
RENDER_RESERVE_SECONDS = 15.0

RenderTask = Task[[str], None]


def register(app: Celery, settings: Settings, engine_factory: EngineFactory) -> RenderTask:
    """Register the render task on `app`. Its render process is the one installed after the fork (wiring.py),
    or, where `worker_process_init` never fires (the solo pool), one started on the first task."""

    @app.task(name=RENDER_TASK, bind=True, acks_late=True)
    def render_portrait(self: Task[Any, Any], job_id: str) -> None:
        proc = process.current() or process.install_new(RenderProcess.start(settings, engine_factory))
        render(self, proc, job_id)

    return render_portrait


def render(task: Task[Any, Any], proc: RenderProcess, job_id: str) -> None:
    """One delivery of the render task in this process: the job, and the batch it takes along (#11)."""
    job_runner = proc.runner
    started = time.monotonic()
    metrics.set_state(WorkerState.BUSY)
    try:
        outcomes = _run_with_retries(task, proc, job_id)
    except SoftTimeLimitExceeded:
        # Every job of the batch that had not finished, this task's own included.
        held = dict.fromkeys([job_id, *job_runner.unfinished()])
        outcomes = {held_id: job_runner.fail(held_id, JobErrorCode.TIMEOUT.failure) for held_id in held}
        job_runner.forget_unfinished()
    finally:
        metrics.set_state(WorkerState.READY if proc.loaded else WorkerState.FAILED)
    # Sampled after the job, not before: a Redis round trip in front of every job's claim (#11).
    _sample_queue_depth(proc)
    for outcome in outcomes.values():
        metrics.JOBS.labels(outcome=outcome.label).inc()
    _report_capacity(proc, proc.clock.busy_seconds(started, time.monotonic()), outcomes.values())


def retry_delay(retries: int) -> int:
    """Backoff between retries through the broker: 1 s doubling up to 30 s."""
    return int(min(30, 2**retries))


def local_retry_delay(retries: int) -> float:
    """Backoff between retries in this process: 0.5 s doubling up to 4 s, so a render resumes within a few
    seconds of Redis or S3 coming back."""
    return float(min(4.0, 0.5 * 2**retries))


def _run_with_retries(task: Task[Any, Any], proc: RenderProcess, job_id: str) -> dict[str, Outcome]:
    """Each job's outcome: this task's job and the others its batch took along (#11)."""
    settings, job_runner = proc.settings, proc.runner
    started = time.monotonic()
    local_retries = 0
    while True:
        try:
            return job_runner.run_batch(job_id)
        except TransientError as exc:
            reason = type(exc.__cause__).__name__
            metrics.RETRIES.labels(reason=reason).inc()
            delay = local_retry_delay(local_retries)
            spent = time.monotonic() - started
            if spent + delay <= settings.task_soft_time_limit - RENDER_RESERVE_SECONDS:
                local_retries += 1
                log.warning(
                    "job retry: transient error, retrying in this process",
                    job_id=job_id,
                    retry=local_retries,
                    in_seconds=delay,
                    reason=reason,
                    error=str(exc),
                )
                job_runner.extend_lease(job_id, delay)
                time.sleep(delay)
                continue
            if task.request.retries >= settings.task_max_retries:
                return {job_id: job_runner.fail(job_id, JobErrorCode.UNAVAILABLE.failure)}
            countdown = retry_delay(task.request.retries)
            log.warning(
                "job retry: transient error, retrying through the broker",
                job_id=job_id,
                retries=task.request.retries,
                in_seconds=countdown,
                reason=reason,
                error=str(exc),
            )
            job_runner.extend_lease(job_id, countdown)
            raise task.retry(countdown=countdown, max_retries=settings.task_max_retries) from exc


def _sample_queue_depth(proc: RenderProcess) -> None:
    try:
        metrics.QUEUE_DEPTH.set(queue_depth(proc.backends.redis, proc.settings))
    except redis.RedisError:
        pass  # a metric sample is not worth failing the job over; the render's own retries handle Redis


def _report_capacity(proc: RenderProcess, seconds: float, outcomes: Iterable[Outcome]) -> None:
    """Tell the gateways how long this task held the process and how many jobs it settled, so they can shed
    uploads that could not be painted in time (#11). The board swallows Redis errors: a report is not worth
    failing a job over."""
    if proc.capacity is not None:
        proc.capacity.report_service(seconds, sum(outcome.settled for outcome in outcomes))

"""The render task: a thin Celery shell around `JobRunner` that turns transient errors into retries.

Retries happen in this process first (issue 9): a Celery retry is a new message, which cannot be queued while
Redis is down — exactly when it is needed. So a render that meets an outage waits and tries again here, holding
its job's lease, for as long as its soft time limit allows; only then does it go back to the broker. If even
that fails, the lease lapses and the janitor sends the job again once Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from services.worker import metrics
from services.worker.app import app, redis_client, settings
from services.worker.lifecycle import WorkerState
from services.worker.plan import resolve_plan
from services.worker.runner import TIMED_OUT, UNAVAILABLE, JobRunner, TransientError
from shared.audit import AuditLog
from shared.capacity import CapacityBoard
from shared.crypto import SourceKeys
from shared.deletion import DeletionSchedule, Eraser
from shared.jobs import JobStore
from shared.leases import JobLeases
from shared.logging import get_logger
from shared.queue import RENDER_TASK, queue_depth
from shared.settings import Settings
from shared.storage import ObjectStore
from shared.webhooks import WebhookOutbox

log = get_logger("portraits.worker")

# Seconds of the soft time limit kept for the render itself after the last in-process retry.
RENDER_RESERVE_SECONDS = 15.0

_runner: JobRunner | None = None
_redis = None  # this process's Redis client, shared by the runner and the queue-depth sample
_capacity: CapacityBoard | None = None  # this process's entry on the gateways' capacity board (#11)
_last_task_end: float | None = None  # monotonic; for `busy_seconds`
# A task that starts this soon after the previous one ended found work waiting: the gap is hand-off, not idleness.
BACK_TO_BACK_SECONDS = 0.25


def start_process(settings: Settings) -> None:
    """Build this process's runner: verified models loaded and warmed up, clients connected."""
    from services.worker.engine.config import EngineConfig
    from services.worker.engine.pipeline import PortraitEngine  # torch: only in worker processes

    global _runner, _redis, _capacity
    threads = resolve_plan(settings).torch_threads
    if threads is not None and not settings.torch_threads:
        settings = settings.model_copy(update={"torch_threads": threads})  # the engine sets it (#11: plan.py)
    _redis = client = redis_client()
    _capacity = CapacityBoard(client)
    storage = ObjectStore(settings)
    keys = SourceKeys(client, ttl_seconds=settings.source_max_age_seconds)
    eraser = Eraser(storage, keys, DeletionSchedule(client), AuditLog(client, settings.audit_max_entries))
    _runner = JobRunner(
        settings,
        JobStore(client, ttl_seconds=settings.job_ttl_seconds),
        storage,
        keys,
        eraser,
        PortraitEngine(EngineConfig.from_settings(settings)),
        JobLeases(client, settings.job_lease_seconds),
        webhooks=WebhookOutbox(client),
    )


def runner() -> JobRunner:
    if _runner is None:  # e.g. the solo pool, where worker_process_init never fires
        start_process(settings)
    assert _runner is not None
    return _runner


def retry_delay(retries: int) -> int:
    """Backoff between retries through the broker: 1 s doubling up to 30 s."""
    return min(30, 2**retries)


def local_retry_delay(retries: int) -> float:
    """Backoff between retries in this process: 0.5 s doubling up to 4 s, so a render resumes within a few
    seconds of Redis or S3 coming back."""
    return min(4.0, 0.5 * 2**retries)


@app.task(name=RENDER_TASK, bind=True, acks_late=True)
def render_portrait(self: Task, job_id: str) -> None:
    job_runner = runner()
    started = time.monotonic()
    metrics.set_state(WorkerState.BUSY)
    try:
        _sample_queue_depth()
        outcomes = _run_with_retries(self, job_runner, job_id)
    except SoftTimeLimitExceeded:
        # Every job of the batch that had not finished, this task's own included.
        held = dict.fromkeys([job_id, *job_runner.unfinished()])
        outcomes = {held_id: job_runner.fail(held_id, TIMED_OUT) for held_id in held}
        job_runner.forget_unfinished()
    finally:
        metrics.set_state(WorkerState.READY)
    for outcome in outcomes.values():
        metrics.JOBS.labels(outcome=outcome).inc()
    _report_capacity(busy_seconds(started, time.monotonic()), outcomes.values())


def _run_with_retries(task: Task, job_runner: JobRunner, job_id: str) -> dict[str, str]:
    """Each job's outcome: this task's job and the others its batch took along (#11)."""
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
                return {job_id: job_runner.fail(job_id, UNAVAILABLE)}
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


def _sample_queue_depth() -> None:
    try:
        metrics.QUEUE_DEPTH.set(queue_depth(_redis, settings))
    except redis.RedisError:
        pass  # a metric sample is not worth failing the job over; the render's own retries handle Redis


def busy_seconds(started: float, ended: float) -> float:
    """What this task cost the process's throughput: its own time, plus the hand-off from the previous task when
    it followed straight on (Celery's delivery, the metrics, the previous report). Counting only the task's own
    time made the gateways' estimate 10 % optimistic: 205 of a 300-upload burst were accepted and 15 of them
    failed `source_expired` (#11). A longer gap is idleness, not cost."""
    global _last_task_end
    previous, _last_task_end = _last_task_end, ended
    if previous is not None and 0 <= started - previous <= BACK_TO_BACK_SECONDS:
        return ended - previous
    return ended - started


def _report_capacity(seconds: float, outcomes: Iterable[str]) -> None:
    """Tell the gateways how long this task held the process and how many jobs it settled, so they can shed
    uploads that could not be painted in time (#11). The board swallows Redis errors: a report is not worth
    failing a job over."""
    if _capacity is not None:  # None where a test installed its own runner without start_process
        _capacity.report_service(seconds, sum(outcome != "skipped" for outcome in outcomes))

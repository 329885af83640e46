"""The render task: a thin Celery shell around `JobRunner` that turns transient errors into retries."""

from __future__ import annotations

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from services.worker import metrics
from services.worker.app import app, redis_client, settings
from services.worker.lifecycle import WorkerState
from services.worker.runner import TIMED_OUT, UNAVAILABLE, JobRunner, TransientError
from shared.audit import AuditLog
from shared.crypto import SourceKeys
from shared.deletion import DeletionSchedule, Eraser
from shared.jobs import JobStore
from shared.logging import get_logger
from shared.queue import RENDER_TASK, queue_depth
from shared.settings import Settings
from shared.storage import ObjectStore

log = get_logger("portraits.worker")

_runner: JobRunner | None = None
_redis = None  # this process's Redis client, shared by the runner and the queue-depth sample


def start_process(settings: Settings) -> None:
    """Build this process's runner: verified models loaded and warmed up, clients connected."""
    from services.worker.engine.pipeline import PortraitEngine  # torch: only in worker processes

    global _runner, _redis
    _redis = client = redis_client()
    storage = ObjectStore(settings)
    keys = SourceKeys(client, ttl_seconds=settings.source_max_age_seconds)
    eraser = Eraser(storage, keys, DeletionSchedule(client), AuditLog(client, settings.audit_max_entries))
    _runner = JobRunner(settings, JobStore(client, ttl_seconds=settings.job_ttl_seconds), storage, keys, eraser,
                        PortraitEngine(settings))


def runner() -> JobRunner:
    if _runner is None:  # e.g. the solo pool, where worker_process_init never fires
        start_process(settings)
    assert _runner is not None
    return _runner


def retry_delay(retries: int) -> int:
    """Exponential backoff, 1 s doubling up to 30 s."""
    return min(30, 2**retries)


@app.task(name=RENDER_TASK, bind=True, acks_late=True)
def render_portrait(self: Task, job_id: str) -> None:
    job_runner = runner()
    metrics.set_state(WorkerState.BUSY)
    try:
        metrics.QUEUE_DEPTH.set(queue_depth(_redis, settings))
        outcome = job_runner.run(job_id)
    except TransientError as exc:
        metrics.RETRIES.labels(reason=type(exc.__cause__).__name__).inc()
        log.warning("transient error; retrying", job_id=job_id, retries=self.request.retries, error=str(exc))
        if self.request.retries >= settings.task_max_retries:
            outcome = job_runner.fail(job_id, UNAVAILABLE)
        else:
            raise self.retry(countdown=retry_delay(self.request.retries), max_retries=settings.task_max_retries)
    except SoftTimeLimitExceeded:
        outcome = job_runner.fail(job_id, TIMED_OUT)
    finally:
        metrics.set_state(WorkerState.READY)
    metrics.JOBS.labels(outcome=outcome).inc()

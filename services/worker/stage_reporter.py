"""A render's progress, written from a thread of its own so the render never waits on a Redis round trip per stage
and job (#11); a one-job render's result deletion is scheduled on that thread too, as its last stage begins."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from shared.audit import ObjectKind
from shared.deletion import Eraser
from shared.jobs import JobStore, now
from shared.leases import Held
from shared.logging import get_logger
from shared.output_format import OutputFormat
from shared.stages import Stage
from shared.storage import result_key

log = get_logger("portraits.worker")

_this_thread = threading.local()


def on_reporter_thread() -> bool:
    """Whether the caller runs on a stage reporter's thread (lets a test's fault injection single out its calls)."""
    return getattr(_this_thread, "is_reporter", False)


def _mark_reporter_thread() -> None:
    _this_thread.is_reporter = True


@dataclass(frozen=True)
class ScheduledResult:
    """A result whose deletion was scheduled before it was written: under this key, from this time on."""

    key: str
    at: float


class StageReporter:
    """One per runner. Its single thread keeps each render's stages in the order they began."""

    def __init__(self, jobs: JobStore, eraser: Eraser, result_format: OutputFormat, result_ttl_seconds: int) -> None:
        self._jobs = jobs
        self._eraser = eraser
        self._result_format = result_format
        self._result_ttl_seconds = result_ttl_seconds
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="progress", initializer=_mark_reporter_thread
        )

    @contextmanager
    def reporting(self, job_ids: Sequence[str], *, schedule_result_of: Held | None = None) -> Iterator[RenderProgress]:
        """The progress callback of one engine call over `job_ids`. On leaving, every report it sent is done, the
        render failed or not, so nothing is still being written once the runner fails, retries or delivers.
        `schedule_result_of`: the lease of a one-job render, whose result's deletion is scheduled as its last
        stage begins unless the lease was lost by then."""
        progress = RenderProgress(self, list(job_ids), schedule_result_of)
        try:
            yield progress
        except BaseException:
            progress.wait(quietly=True)  # the render's error is the one to raise
            raise
        progress.wait()

    def _submit_stage(self, job_ids: list[str], stage: str) -> Future[None]:
        return self._thread.submit(self._report_stage, job_ids, stage)

    def _submit_schedule(self, job_id: str) -> Future[ScheduledResult | None]:
        return self._thread.submit(self._schedule_result, job_id)

    def _report_stage(self, job_ids: list[str], stage: str) -> None:
        try:
            for job_id in job_ids:
                self._jobs.set_stage(job_id, stage)
        except redis.RedisError as exc:  # progress is best effort; the job's own writes retry
            log.warning("stage not reported", stage=stage, error_type=type(exc).__name__)

    def _schedule_result(self, job_id: str) -> ScheduledResult | None:
        """Schedule the deletion of the result this job is about to store. Should the render still fail, the
        schedule keeps a deletion of an object never written, as a failed put always leaves one: a no-op then."""
        # Named by the configured format: the portrait, and so its content type, does not exist yet.
        key = result_key(job_id, self._result_format.extension)
        at = now()
        try:
            self._eraser.track(ObjectKind.RESULT, key, job_id, at, self._result_ttl_seconds)
        except redis.RedisError as exc:  # delivery schedules it itself, where its errors are the job's
            log.warning("result deletion not scheduled ahead", error_type=type(exc).__name__)
            return None
        return ScheduledResult(key, at)


class RenderProgress:
    """The engine's `progress` callback for one call; what its reports scheduled is read once they are done."""

    def __init__(self, reporter: StageReporter, job_ids: list[str], schedule_result_of: Held | None) -> None:
        self._reporter = reporter
        self._job_ids = job_ids
        self._schedule_result_of = schedule_result_of
        # Written by whichever thread the engine calls back on, read by the runner's: hence the lock.
        self._lock = threading.Lock()
        self._last_stage: Future[None] | None = None
        self._schedule: Future[ScheduledResult | None] | None = None

    def __call__(self, stage: str) -> None:
        report = self._reporter._submit_stage(self._job_ids, stage)
        schedule = None
        held = self._schedule_result_of
        if stage == Stage.FINISH and held is not None and not held.lost.is_set():
            # Beside the last stage rather than between the render and the put (#11: 0.6-0.75 ms there).
            schedule = self._reporter._submit_schedule(held.job_id)
        with self._lock:
            self._last_stage = report
            if schedule is not None:
                self._schedule = schedule

    def wait(self, *, quietly: bool = False) -> None:
        """Until every report sent is done (one thread, in order: the last stage's, then the schedule's)."""
        with self._lock:
            pending = [future for future in (self._last_stage, self._schedule) if future is not None]
        for future in pending:
            if quietly:
                future.exception()
            else:
                future.result()

    def scheduled(self) -> dict[str, ScheduledResult]:
        """The results whose deletion was scheduled ahead, by job id; waits for the schedule if it is still due."""
        with self._lock:
            schedule, held = self._schedule, self._schedule_result_of
        scheduled = schedule.result() if schedule is not None else None
        return {held.job_id: scheduled} if held is not None and scheduled is not None else {}

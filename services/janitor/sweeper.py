"""The janitor: enforces that no source outlives `source_max_age` and no result outlives `result_ttl`,
whatever happened to the workers.

- `sweep()` (every few seconds) first releases the gallery copies of the day just ended, if any
  (gallery_release.py, #25), then claims what is due from the deletion schedule and erases it through the
  shared `Eraser`; a source whose job is still live fails that job with `source_expired`, an expired result
  expires its job. Failures stay on the schedule and are retried with backoff.
- `rescue()` (with every sweep, issue 9) sends again the jobs whose render process stopped renewing its lease
  (shared/leases.py): a worker killed mid-render is noticed within a lease period plus one sweep, well inside
  the source's maximum age, instead of after the broker's 300 s visibility timeout.
- then, with every sweep, the queued jobs whose message is in neither the broker's queue nor a worker's hands
  (lost with a Redis failover, #24) are sent again (lost_messages.py).
- `reconcile()` (every minute or so, one replica at a time under a Redis lock) lists the buckets to find
  objects the schedule never saw — a crash between a write and its scheduling — and schedules or erases them.

Several replicas can run at once: claims are leased atomically and only the remover of a schedule entry
audits it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from kombu.exceptions import OperationalError as BrokerUnavailable

from services.janitor import metrics
from services.janitor.gallery_release import GalleryRelease
from services.janitor.lost_messages import LostMessages
from shared.audit import Deleter, ObjectKind
from shared.deletion import Eraser, Tracked
from shared.errors import JobErrorCode
from shared.gallery import DAY_SECONDS, GalleryIndex, day_start, is_staging_key
from shared.jobs import JobNotFound, JobState, JobStore, TransitionRefused
from shared.leases import JobLeases
from shared.logging import get_logger
from shared.settings import Settings
from shared.storage import StorageError, StorageUnavailable, job_id_of
from shared.webhooks import WebhookOutbox, notify_finished

log = get_logger("portraits.janitor")

# The worker's code and message for a photo gone before it was painted (shared/errors.py): one wording whoever
# notices; this module's own message said "reached its maximum age" instead (#12).
SOURCE_EXPIRED = JobErrorCode.SOURCE_EXPIRED.failure
RECONCILE_LOCK = "portraits:janitor:reconcile-lock"
BUCKET_PREFIXES = {ObjectKind.SOURCE: "sources/", ObjectKind.RESULT: "results/", ObjectKind.GALLERY: "gallery/"}
# A rescued job that no worker has taken this many lease periods later is sent once more (a copy lost with a
# restarting Redis, a worker that died again). Extra copies are harmless: the job's lease and state let only one
# finish it.
RESCUE_WAIT_LEASES = 3


@dataclass
class SweepReport:
    deleted: int = 0
    failed: int = 0


class Janitor:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        jobs: JobStore,
        eraser: Eraser,
        leases: JobLeases,
        enqueue: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        webhooks: WebhookOutbox | None = None,
        gallery_release: GalleryRelease | None = None,
        lost_messages: LostMessages | None = None,
    ) -> None:
        self._settings = settings
        self._lost_messages = lost_messages
        self._release = gallery_release
        self._webhooks = webhooks
        self._leases = leases
        self._enqueue = enqueue
        self._redis = client
        self._jobs = jobs
        self._eraser = eraser
        self._schedule = eraser.schedule
        self._clock = clock
        self._max_age = {
            ObjectKind.SOURCE: settings.source_max_age_seconds,
            ObjectKind.RESULT: settings.result_ttl_seconds,
            ObjectKind.GALLERY: settings.gallery_ttl_seconds,
        }
        self._gallery = GalleryIndex(client)

    # --- the sweep ---

    def sweep(self) -> SweepReport:
        started = time.perf_counter()
        report = SweepReport()
        now = self._clock()
        self._release_gallery(now)
        for kind in ObjectKind:
            due = self._schedule.claim_due(
                kind, now, self._settings.janitor_batch_size, self._settings.janitor_lease_seconds
            )
            for tracked in due:
                if self._erase_due(tracked):
                    report.deleted += 1
                else:
                    report.failed += 1
        self.rescue()
        self._resend_lost()
        self._publish_gauges(self._clock())
        metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)
        if not report.failed:
            metrics.LAST_SWEEP.set(time.time())
        if report.deleted or report.failed:
            log.info(
                "sweep", deleted=report.deleted, failed=report.failed, seconds=round(time.perf_counter() - started, 3)
            )
        return report

    def _resend_lost(self) -> None:
        """Jobs whose message a failover lost (#24). A broker that fails here must not end the sweep: the gauges
        and the reconciliation after it (a lost deletion entry's only catch) would never run while it fails."""
        if self._lost_messages is None:
            return
        try:
            self._lost_messages.resend(self._clock())
        except (redis.RedisError, BrokerUnavailable) as exc:
            log.warning("lost messages not looked for; next sweep", error_type=type(exc).__name__)

    def _release_gallery(self, now: float) -> None:
        """Before the deletions, which a storage error here must not hold up: a failed release is redone by the
        next sweep."""
        if self._release is None:
            return
        try:
            self._release.release(now)
        except StorageError as exc:
            log.warning("gallery release failed; retrying next sweep", error_type=type(exc).__name__)

    def _erase_due(self, tracked: Tracked) -> bool:
        try:
            entry = self._eraser.erase(tracked.kind, tracked.key, tracked.job_id, Deleter.JANITOR, "expired")
        except StorageUnavailable as exc:
            metrics.FAILURES.labels(kind=tracked.kind.value).inc()
            retry_at = self._clock() + min(60.0, 2.0 ** (tracked.attempts + 1))
            self._schedule.retry_later(tracked, retry_at)
            log.warning(
                "deletion failed; will retry",
                job_id=tracked.job_id,
                kind=tracked.kind.value,
                attempts=tracked.attempts + 1,
                error=str(exc),
            )
            return False
        if entry is not None:
            metrics.DELETIONS.labels(kind=tracked.kind.value, reason="expired").inc()
        self._settle_job(tracked)
        return True

    def _settle_job(self, tracked: Tracked) -> None:
        """A source past its age fails a live job; an expired result expires its job; an expired gallery copy
        leaves the gallery (its schedule entry's "job id" is the gallery id: there is no job to settle, #10)."""
        if tracked.kind is ObjectKind.GALLERY:
            self._forget_gallery_entry(tracked.key, tracked.job_id)
            return
        try:
            if tracked.kind is ObjectKind.SOURCE:
                finished = self._clock()
                self._jobs.transition(
                    tracked.job_id,
                    JobState.FAILED,
                    stage=None,
                    finished_at=finished,
                    error_code=SOURCE_EXPIRED.code,
                    error_message=SOURCE_EXPIRED.message,
                )
                self._notify_failed(tracked.job_id, finished)
            else:
                self._jobs.transition(tracked.job_id, JobState.EXPIRED)
        except (TransitionRefused, JobNotFound):
            pass  # the job already finished, was erased, or its record expired

    def _forget_gallery_entry(self, key: str, gallery_id: str) -> None:
        # A staged copy gone unreleased takes its entry along only while unlisted: a listed one has its own copy.
        self._gallery.remove(gallery_id, only_ready=is_staging_key(key))

    def _notify_failed(self, job_id: str, at: float) -> None:
        """The janitor failed this job, so it queues the job's webhook (#10). Best effort: a Redis error here
        must not undo or repeat the sweep's work."""
        if self._webhooks is None:
            return
        try:
            job = self._jobs.get(job_id)
        except redis.RedisError as exc:
            log.warning("webhook not queued: Redis unavailable", job_id=job_id, error_type=type(exc).__name__)
            return
        notify_finished(self._webhooks, job, at)

    # --- rescue ---

    def rescue(self) -> list[str]:
        """Send again every `processing` job whose lease lapsed; forget leases of jobs that already ended."""
        now = self._clock()
        rescue_seconds = RESCUE_WAIT_LEASES * self._settings.job_lease_seconds
        rescued = []
        for job_id in self._leases.claim_lapsed(now, self._settings.janitor_batch_size, rescue_seconds):
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.PROCESSING:
                self._leases.drop(job_id)
                continue
            self._enqueue(job_id)
            rescued.append(job_id)
            metrics.RESCUES.inc()
            log.warning(
                "job rescued: its worker stopped renewing the lease",
                job_id=job_id,
                stage=job.stage,
                restarts=job.restarts,
                age=round(now - job.created_at, 1),
            )
        return rescued

    def _publish_gauges(self, now: float) -> None:
        oldest = self._schedule.oldest_created(ObjectKind.SOURCE)
        metrics.OLDEST_SOURCE_AGE.set(0.0 if oldest is None else max(0.0, now - oldest))
        for kind in ObjectKind:
            metrics.OVERDUE.labels(kind=kind.value).set(self._schedule.overdue(kind, now, self._max_age[kind]))

    # --- reconciliation ---

    def reconcile(self) -> int:
        """List both buckets; schedule what the schedule never saw, erase it if already too old.
        Returns the number of orphans found (0 when another replica holds the lock)."""
        lock_seconds = max(60, int(self._settings.janitor_reconcile_seconds * 2))
        if not self._redis.set(RECONCILE_LOCK, "1", nx=True, ex=lock_seconds):
            return 0
        started = time.perf_counter()
        orphans = 0
        try:
            for kind in ObjectKind:
                for key, modified in self._eraser.list_objects(kind, BUCKET_PREFIXES[kind]):
                    if self._schedule.contains(kind, key):
                        continue
                    orphans += 1
                    self._adopt(kind, key, modified)
            # Queue-position entries of jobs whose records expired without leaving the queue.
            self._jobs.prune_queue(self._clock() - self._settings.job_ttl_seconds)
        finally:
            self._redis.delete(RECONCILE_LOCK)
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        log.info("reconciled", orphans=orphans, seconds=round(time.perf_counter() - started, 3))
        return orphans

    def _adopt(self, kind: ObjectKind, key: str, created_at: float) -> None:
        metrics.ORPHANS.labels(kind=kind.value).inc()
        job_id = job_id_of(key)
        max_age = self._max_age[kind]
        if kind is ObjectKind.GALLERY:
            # As the worker and the release schedule them: from the day, never the write's second (#25).
            created_at = day_start(created_at)
            max_age += DAY_SECONDS if is_staging_key(key) else 0
        deadline = created_at + max_age
        self._schedule.add(Tracked(kind, key, job_id, created_at), deadline)
        log.warning("orphan object scheduled", kind=kind.value, job_id=job_id, overdue=deadline <= self._clock())
        if deadline <= self._clock():
            try:
                if self._eraser.erase(kind, key, job_id, Deleter.JANITOR, "orphan") is not None:
                    metrics.DELETIONS.labels(kind=kind.value, reason="orphan").inc()
                if kind is ObjectKind.GALLERY:
                    self._forget_gallery_entry(key, job_id)  # an index entry must not outlive its copy
            except StorageUnavailable:
                metrics.FAILURES.labels(kind=kind.value).inc()  # still scheduled: the sweep retries it

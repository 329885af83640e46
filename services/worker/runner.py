"""One job, start to finish, independent of Celery: claim it, render, store the result, mark the job done, delete
the source.

Errors are sorted into two kinds. Permanent ones (the photo has no face, the source expired…) fail the job at
once and delete the source. Transient ones (S3 or Redis unreachable) raise `TransientError` so the task layer
can retry with backoff; the job stays `processing` and the source stays until its maximum age.

While it paints, the runner holds the job's lease (shared/leases.py, issue 9): if this process dies, the lease
lapses and the janitor sends the job again; if the lease was rescued elsewhere meanwhile, this render is
discarded rather than written.

Its parts: the photo (source_reader.py), the render's progress and its result's early deletion schedule
(stage_reporter.py), the gallery copy (gallery_copy.py); the engine's seam and `Outcome` are in outcomes.py.

Long on purpose: claim, render, deliver and fail are one story, each step's failure handled where it happens;
the parts that stand alone are the modules above.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import redis
import structlog

from services.worker import metrics
from services.worker.engine.catalog import painter_of
from services.worker.gallery_copy import GalleryCopier
from services.worker.outcomes import DONE, SKIPPED, Outcome, PortraitRenderer, TransientError
from services.worker.source_reader import SourceReader, SourceUnusable
from services.worker.stage_reporter import ScheduledResult, StageReporter
from shared import replication
from shared.audit import Deleter, ObjectKind
from shared.deletion import Eraser
from shared.errors import JobErrorCode, JobFailure, PortraitError
from shared.gallery import GalleryIndex
from shared.job_start import JobStarter, Started
from shared.jobs import Job, JobNotFound, JobState, JobStore, TransitionRefused, now
from shared.leases import Held, JobLeases, process_owner
from shared.logging import get_logger
from shared.output_format import OutputFormat
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.stages import Stage
from shared.storage import ObjectStore, StorageUnavailable, result_key, source_key
from shared.webhooks import WebhookOutbox, notify_finished

if TYPE_CHECKING:  # torch underneath: the engine's types are only named here, its module loads in render processes
    from services.worker.engine.pipeline import Portrait

log = get_logger("portraits.worker")

# How often a render process gathering a batch looks at the queue again while it waits (#11).
GATHER_POLL_SECONDS = 0.002


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        storage: ObjectStore,
        keys: SourceKeys,
        eraser: Eraser,
        engine: PortraitRenderer,
        leases: JobLeases,
        owner: str | None = None,
        webhooks: WebhookOutbox | None = None,
        gallery: GalleryIndex | None = None,
        starter: JobStarter | None = None,
    ) -> None:
        self._settings = settings
        self._jobs = jobs
        self._storage = storage
        self._eraser = eraser
        self._engine = engine
        self._leases = leases
        self._starter = starter or JobStarter(jobs.client, settings.job_ttl_seconds, leases.lease_seconds)
        self.owner = owner or process_owner()
        self._webhooks = webhooks
        self._sources = SourceReader(storage, keys)
        self._reporter = StageReporter(jobs, eraser, settings.output_format, settings.result_ttl_seconds)
        self._gallery = GalleryCopier(
            gallery or GalleryIndex(jobs.client),
            jobs,
            storage,
            eraser,
            quality=settings.output_quality,
            ttl_seconds=settings.gallery_ttl_seconds,
        )
        self._carried: list[str] = []  # jobs of an interrupted batch, still leased to this process

    def run(self, job_id: str) -> Outcome:
        """Process one job (and whatever batch it takes along); returns its outcome. Raises
        `TransientError` for the caller to retry."""
        return self.run_batch(job_id)[job_id]

    def run_batch(self, job_id: str) -> dict[str, Outcome]:
        """Process the job, and with `batch_max_size` > 1 up to that many queued jobs in one engine call (#11);
        returns each job's outcome. Raises `TransientError` for the caller to retry: the jobs of the batch
        that had not finished stay leased to this process and are carried into the next call."""
        outcomes: dict[str, Outcome] = {}
        try:
            # Every log line while this job runs — ours, the engine's stage timings — carries its id.
            with structlog.contextvars.bound_contextvars(job_id=job_id):
                self._run(job_id, outcomes)
        except (StorageUnavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientError(str(exc)) from exc
        return outcomes

    def unfinished(self) -> list[str]:
        """Jobs this process holds that have no outcome yet (a batch cut short by a retry or a time limit)."""
        return list(self._carried)

    def forget_unfinished(self) -> None:
        """The unfinished jobs were failed by the caller (a time limit): nothing to carry any more."""
        self._carried = []

    def extend_lease(self, job_id: str, seconds: float) -> None:
        """Keep holding the job (and the rest of its batch) while a retry waits `seconds` (best effort: with
        Redis away it cannot be renewed, and a rescue after Redis returns is harmless)."""
        for held_id in dict.fromkeys([job_id, *self._carried]):
            try:
                self._leases.renew(held_id, self.owner, now(), extra_seconds=seconds)
            except redis.RedisError:
                pass

    def _run(self, job_id: str, outcomes: dict[str, Outcome]) -> None:
        # The sealed source is read while the job is claimed (#11): an S3 GET and a Lua call of a few ms each,
        # neither of which needs the other.
        early = {job_id: self._sources.fetch_ahead(job_id)}
        claims: list[_Claim] = []
        try:
            # The job itself, then the rest of a batch that a transient error interrupted (still leased to us).
            for candidate in dict.fromkeys([job_id, *self._carried]):
                claim = self._claim(candidate, outcomes)
                if claim is not None:
                    claims.append(claim)
            if claims:
                self._gather(claims, outcomes)
            self._carried = [claim.job.id for claim in claims]
            with ExitStack() as stack:
                helds = {
                    claim.job.id: stack.enter_context(self._leases.held(claim.job.id, self.owner, now))
                    for claim in claims
                }
                self._paint(claims, helds, outcomes, early)
            self._carried = []
        finally:
            for fetch in early.values():  # not used (the claim failed, or an error came first): wait it out, drop it
                with suppress(Exception):
                    fetch.result()

    def _claim(self, job_id: str, outcomes: dict[str, Outcome], *, extra: bool = False) -> _Claim | None:
        """Start the job if it is ours to paint: its lease taken and the job `processing`, in one round trip
        (shared/job_start.py). `extra`: a queued job a batch takes along, which is left alone (no outcome) unless
        it is still queued, free, and its source stored."""
        started = now()
        outcome = self._starter.start(
            job_id, self.owner, started, max_restarts=self._settings.job_max_restarts, stage=Stage.FETCH, extra=extra
        )
        if isinstance(outcome, Started):
            if outcome.restarted:
                log.warning(
                    "job restarted after its worker died",
                    job_id=job_id,
                    restarts=outcome.job.restarts,
                    previous=outcome.previous,
                )
            metrics.QUEUE_WAIT.observe(max(0.0, started - outcome.job.created_at))
            return _Claim(outcome.job, started, outcome.source_key)
        if outcome.reason == "worn_out":
            outcomes[job_id] = self.fail(job_id, JobErrorCode.WORKER_LOST.failure)
        elif not extra:
            # Expired, erased by its owner, or a redelivery of a job already finished — or another live process
            # paints it (a duplicate delivery, or another batch took it): dropped here. Should that process die,
            # its lease lapses and the job is sent again.
            log.info("job skipped", job_id=job_id, reason=outcome.reason, detail=outcome.detail or None)
            outcomes[job_id] = SKIPPED
        return None

    def _gather(self, claims: list[_Claim], outcomes: dict[str, Outcome]) -> None:
        """Fill the batch with the longest-waiting queued jobs, waiting at most `batch_wait_ms` for them (#11).
        Each taken job keeps its own broker message: when that arrives it finds the job leased or finished and
        is dropped, and should this process die the janitor rescues the job like any other."""
        room = self._settings.batch_max_size - len(claims)
        if room <= 0:
            return
        deadline = time.monotonic() + self._settings.batch_wait_ms / 1000
        tried = {claim.job.id for claim in claims}
        while True:
            for candidate in self._jobs.oldest_queued(room + len(tried)):
                if candidate in tried:
                    continue
                tried.add(candidate)
                claim = self._claim(candidate, outcomes, extra=True)
                if claim is not None:
                    claims.append(claim)
                    room -= 1
                    if room == 0:
                        return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(GATHER_POLL_SECONDS, left))

    def _paint(
        self,
        claims: list[_Claim],
        helds: dict[str, Held],
        outcomes: dict[str, Outcome],
        early: dict[str, Future[bytes]],
    ) -> None:
        """`early`: sources already being fetched, by job id (taken from it as they are used)."""
        ready: list[tuple[Job, bytes]] = []
        started = {claim.job.id: claim.started for claim in claims}
        for claim in claims:
            job_id = claim.job.id
            try:
                ready.append((claim.job, self._sources.open(job_id, claim.source_key, early.pop(job_id, None))))
            except SourceUnusable as unusable:
                self._settle(outcomes, job_id, self.fail(job_id, unusable.failure, erase=unusable.erase))
        if not ready:
            return
        rendered, scheduled = self._render(ready, helds)
        metrics.BATCH_SIZE.observe(len(ready))
        for (job, _), outcome in zip(ready, rendered):
            with structlog.contextvars.bound_contextvars(job_id=job.id):
                if isinstance(outcome, PortraitError):
                    settled = self.fail(job.id, outcome.failure, detail=outcome.message)
                else:
                    settled = self._deliver(job, outcome, started[job.id], helds[job.id], scheduled.get(job.id))
            self._settle(outcomes, job.id, settled)

    def _render(
        self, ready: list[tuple[Job, bytes]], helds: dict[str, Held]
    ) -> tuple[list[Portrait | PortraitError], dict[str, ScheduledResult]]:
        """One engine call for the whole batch: each photo's portrait or its `PortraitError`, and the results
        whose deletion was scheduled while it finished, by job id."""
        ids = [job.id for job, _ in ready]
        # One job only: one that reached `finish` has passed every check its photo can fail, which a batch's may not.
        ahead = helds[ids[0]] if len(ids) == 1 else None
        # Leaving waits out every report, so each stage is written before any job is finished (usually long done).
        with self._reporter.reporting(ids, schedule_result_of=ahead) as progress:
            if len(ready) == 1:
                job, data = ready[0]
                try:
                    outcomes: list[Portrait | PortraitError] = [
                        self._engine.render(data, style=job.style_requested, strength=job.strength, progress=progress)
                    ]
                except PortraitError as exc:
                    outcomes = [exc]
            else:
                # torch underneath: loaded on the first batch, always in a render process that already holds it.
                from services.worker.engine.pipeline import RenderRequest

                outcomes = list(
                    self._engine.render_batch(
                        [RenderRequest(data, style=job.style_requested, strength=job.strength) for job, data in ready],
                        progress=progress,
                    )
                )
        portrait = next((o for o in outcomes if not isinstance(o, PortraitError)), None)
        if portrait is not None:  # a batch's stage timings are the batch's: observed once per engine call
            for stage, seconds in portrait.timings.items():
                metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        return outcomes, progress.scheduled()

    def _settle(self, outcomes: dict[str, Outcome], job_id: str, outcome: Outcome) -> None:
        outcomes[job_id] = outcome
        if job_id in self._carried:
            self._carried.remove(job_id)

    def _deliver(
        self, job: Job, portrait: Portrait, started: float, held: Held, scheduled: ScheduledResult | None
    ) -> Outcome:
        """Store a painted portrait and finish its job. `scheduled`: its deletion, if scheduled during the render."""
        job_id = job.id
        metrics.PORTRAITS.labels(painter=painter_of(portrait.style), family=portrait.family).inc()
        if held.lost.is_set():
            # Rescued elsewhere while we painted (we looked dead: a stalled CPU or Redis): the rescuer owns it.
            log.info("job rescued elsewhere during render; result discarded", job_id=job_id)
            return SKIPPED
        if portrait.identity_distance is not None:
            metrics.IDENTITY_DISTANCE.labels(painter=painter_of(portrait.style), family=portrait.family).observe(
                portrait.identity_distance
            )

        key = result_key(job_id, OutputFormat.of_content_type(portrait.content_type).extension)
        # Scheduled before it is written, so a crash right after the write still leaves it on the schedule: as the
        # render's last stage began (stage_reporter.py), or else now. The result lives until that schedule says.
        if scheduled is not None and scheduled.key == key:
            scheduled_at = scheduled.at
        else:
            scheduled_at = now()
            self._eraser.track(ObjectKind.RESULT, key, job_id, scheduled_at, self._settings.result_ttl_seconds)
        self._storage.put(self._storage.results_bucket, key, portrait.data, portrait.content_type)
        finished = now()
        try:
            self._jobs.transition(
                job_id,
                JobState.DONE,
                stage=None,
                finished_at=finished,
                style=portrait.style,
                family=portrait.family,
                reason=portrait.reason,
                strength=portrait.strength,
                timings=portrait.timings,
                identity_distance=portrait.identity_distance,
                result_key=key,
                result_expires_at=scheduled_at + self._settings.result_ttl_seconds,
            )
        except TransitionRefused as refused:
            if refused.current is JobState.DONE:
                # A duplicate delivery finished first and wrote the same key: that result is the job's.
                log.info("job already done by another delivery", job_id=job_id)
                return SKIPPED
            if refused.current is JobState.QUEUED:
                # Queued again: a Redis failover lost this render's start (#24; the chaos run's planned failover
                # did). The job is not erased: its next delivery paints it, and needs the photo.
                log.warning("job queued again under this render (a failover undid its start)", job_id=job_id)
                self._eraser.erase(ObjectKind.RESULT, key, job_id, Deleter.WORKER, reason="start undone")
                return SKIPPED
            return self._discard(job_id, key)
        except JobNotFound:
            return self._discard(job_id, key)
        if self._done_is_replicated(job_id):
            self.erase_source(job_id, reason="done")
        if job.share:
            self._gallery.publish(job, portrait)
        if job.callback_url:
            # Queued, not sent: the janitor's delivery loop calls the receiver, so it never holds up a render (#10).
            self._notify(job_id, finished)
        metrics.JOB_SECONDS.observe(finished - started)
        log.info(
            "job done",
            job_id=job_id,
            style=portrait.style,
            seconds=round(finished - started, 3),
            attempts=job.attempts,
            identity_distance=None if portrait.identity_distance is None else round(portrait.identity_distance, 3),
            # What the style was chosen from: the reason says it in words, without these figures (#21).
            features={name: round(value, 3) for name, value in asdict(portrait.features).items()},
            stage_ms={stage: round(seconds * 1000, 1) for stage, seconds in portrait.timings.items()},
        )
        return DONE

    def _done_is_replicated(self, job_id: str) -> bool:
        """Whether `done` is safe from a failover (#24): with `redis_wait_replicas`, the replicas must confirm it
        before the photo goes. Unconfirmed, a failover could undo `done` (the chaos run's planned failover did) and
        the rescued job would find its photo erased; so the photo stays to its deadline, for the janitor to erase."""
        replicas = self._settings.redis_wait_replicas
        if not replicas:
            return True
        try:
            confirmed = replication.confirm(
                self._jobs.client,
                replicas,
                self._settings.redis_wait_timeout_ms,
                key=self._jobs.key(job_id),
                field="state",
                value=JobState.DONE.value,
            )
        except redis.RedisError:
            confirmed = 0
        if confirmed < replicas:
            log.warning("done not confirmed by the replicas: the photo stays to its deadline", job_id=job_id)
        return confirmed >= replicas

    def _discard(self, job_id: str, key: str) -> Outcome:
        # Erased (or expired) while we painted: the result must not outlive the job.
        self._eraser.erase(ObjectKind.RESULT, key, job_id, Deleter.WORKER, reason="job gone")
        self.erase_source(job_id, reason="job gone")
        log.info("job erased during render; result discarded", job_id=job_id)
        return SKIPPED

    def fail(self, job_id: str, failure: JobFailure, *, erase: bool = True, detail: str | None = None) -> Outcome:
        """Fail the job for good and delete its source (nothing more will be made from it); `erase=False`
        leaves a source that was never stored to the deletion schedule. `detail`: the error's own text, for the
        log only when the job records the code's default message."""
        finished = now()
        try:
            self._jobs.transition(
                job_id,
                JobState.FAILED,
                stage=None,
                finished_at=finished,
                error_code=failure.code,
                error_message=failure.message,
            )
        except (TransitionRefused, JobNotFound):
            pass  # already finished, erased or expired
        else:
            self._notify(job_id, finished)  # only whoever made the job fail sends its webhook (#10)
        if erase:
            self.erase_source(job_id, reason=f"failed:{failure.code}")
        log.info("job failed", job_id=job_id, code=failure.code, **({"detail": detail} if detail else {}))
        try:
            self._leases.release(job_id, self.owner)
        except redis.RedisError:
            pass  # it lapses; the rescue then finds the job failed and drops it
        return Outcome.failed(failure.code)

    def _notify(self, job_id: str, at: float) -> None:
        """Queue the job's webhook if it has a callback URL; best effort, never fails the job (#10)."""
        if self._webhooks is None:
            return
        try:
            job = self._jobs.get(job_id)  # as it ended: style and reason, or the error
        except redis.RedisError as exc:
            log.warning("webhook not queued: Redis unavailable", job_id=job_id, error_type=type(exc).__name__)
            return
        notify_finished(self._webhooks, job, at)

    def erase_source(self, job_id: str, reason: str) -> None:
        self._eraser.erase(ObjectKind.SOURCE, source_key(job_id), job_id, Deleter.WORKER, reason=reason)


@dataclass(frozen=True)
class _Claim:
    """A job this process started (its lease taken, the job `processing`), to be painted in the current batch."""

    job: Job  # as started: `attempts` and `restarts` count this start
    started: float
    source_key: bytes | None  # None: not yet published when the job started

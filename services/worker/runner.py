"""One job, start to finish, independent of Celery: fetch and open the sealed source, render, store the result,
mark the job done, delete the source.

Errors are sorted into two kinds. Permanent ones (the photo has no face, the source expired…) fail the job at
once and delete the source. Transient ones (S3 or Redis unreachable) raise `TransientError` so the task layer
can retry with backoff; the job stays `processing` and the source stays until its maximum age.

While it paints, the runner holds the job's lease (shared/leases.py, issue 9): if this process dies, the lease
lapses and the janitor sends the job again; if the lease was rescued elsewhere meanwhile, this render is
discarded rather than written.

Long on purpose: a job's whole life in this process — claim, gather a batch, paint,
deliver, fail, erase — reads in one place and shares one lease and outcome bookkeeping; its seams (the engine
Protocol, `Outcome`) live in outcomes.py, the engine and the stores elsewhere.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import redis
import structlog
from PIL import Image

from services.worker import metrics
from services.worker.engine.catalog import painter_of
from services.worker.outcomes import DONE, SKIPPED, Outcome, PortraitRenderer, TransientError
from shared.audit import Deleter, ObjectKind
from shared.crypto import KeyGone, SealBroken, SourceKeys, SourceNotStored, unseal
from shared.deletion import Eraser
from shared.errors import JobErrorCode, JobFailure, PortraitError
from shared.gallery import GalleryEntry, GalleryIndex, day_of
from shared.gallery import object_key as gallery_object_key
from shared.job_start import JobStarter, Started
from shared.jobs import Job, JobNotFound, JobState, JobStore, TransitionRefused, now
from shared.leases import Held, JobLeases, process_owner
from shared.logging import get_logger
from shared.output_format import OutputFormat
from shared.settings import Settings
from shared.stages import Stage
from shared.storage import ObjectMissing, ObjectStore, StorageUnavailable, result_key, source_key
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
        self._keys = keys
        self._eraser = eraser
        self._engine = engine
        self._leases = leases
        self._starter = starter or JobStarter(jobs.client, settings.job_ttl_seconds, leases.lease_seconds)
        self.owner = owner or process_owner()
        self._webhooks = webhooks
        self._gallery = gallery or GalleryIndex(jobs.client)
        self._carried: list[str] = []  # jobs of an interrupted batch, still leased to this process
        self._progress = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress")  # one: stages stay in order
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")  # the job's source, see _run
        # Results whose deletion the progress thread scheduled while their render finished: job id -> (key, when).
        self._scheduled: dict[str, tuple[str, float]] = {}

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
        # The job's sealed source is fetched while the job is claimed (#11): the claim was four Redis round trips
        # then (2.8 ms p50 at one client; one Lua call now, which also brings the source's key: shared/job_start.py),
        # the fetch a key read and an S3 GET (3.7 ms), and one waited for the other. Reading changes nothing: unless
        # the claim succeeds, the bytes are dropped unread.
        early = {job_id: self._fetcher.submit(self._fetch_sealed, job_id)}
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
                ready.append((claim.job, self._open_source(claim, early.pop(job_id, None))))
            except _Permanent as failure:
                self._settle(outcomes, job_id, self.fail(job_id, failure.failure, erase=failure.erase))
        if not ready:
            return
        try:
            rendered = self._render(ready, helds)
            metrics.BATCH_SIZE.observe(len(ready))
            for (job, _), outcome in zip(ready, rendered):
                with structlog.contextvars.bound_contextvars(job_id=job.id):
                    if isinstance(outcome, PortraitError):
                        settled = self.fail(job.id, outcome.failure)
                    else:
                        settled = self._deliver(job, outcome, started[job.id], helds[job.id])
                self._settle(outcomes, job.id, settled)
        finally:
            for job, _ in ready:  # failed, or cut short: a retry schedules its result again
                self._scheduled.pop(job.id, None)

    def _render(self, ready: list[tuple[Job, bytes]], helds: dict[str, Held]) -> list[Portrait | PortraitError]:
        """One engine call for the whole batch; each photo's portrait or its `PortraitError`."""
        ids = [job.id for job, _ in ready]
        reports: list[Future[None]] = []

        def progress(stage: str) -> None:
            # Sent from a thread of its own: the render never waits on a Redis round trip per stage and job (#11).
            reports[:] = [self._progress.submit(self._report_stage, ids, stage)]
            if stage == Stage.FINISH and len(ids) == 1 and not helds[ids[0]].lost.is_set():
                # The result's deletion is scheduled as the last stage begins, beside it, instead of between the
                # render and the put (#11: a round trip of 0.6-0.75 ms there in a trace of 40 jobs). One job only:
                # one that reached `finish` has passed every check its photo can fail, which a batch's may not.
                reports[:] = [self._progress.submit(self._schedule_result, ids[0])]

        if len(ready) == 1:
            job, data = ready[0]
            try:
                outcomes: list[Portrait | PortraitError] = [
                    self._engine.render(data, style=job.style_requested, strength=job.strength, progress=progress)
                ]
            except PortraitError as exc:
                outcomes = [exc]
        else:
            # torch underneath: loaded on the first batch, always in a render process that already holds the engine.
            from services.worker.engine.pipeline import RenderRequest

            outcomes = list(
                self._engine.render_batch(
                    [RenderRequest(data, style=job.style_requested, strength=job.strength) for job, data in ready],
                    progress=progress,
                )
            )
        for report in reports:  # the last stage's, and so (one thread, in order) every stage's: reported before any
            report.result()  # job is finished; usually long done, so no hand-off to that thread (#11)
        portrait = next((o for o in outcomes if not isinstance(o, PortraitError)), None)
        if portrait is not None:  # a batch's stage timings are the batch's: observed once per engine call
            for stage, seconds in portrait.timings.items():
                metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        return outcomes

    def _report_stage(self, ids: list[str], stage: str) -> None:
        try:
            for job_id in ids:
                self._jobs.set_stage(job_id, stage)
        except redis.RedisError as exc:  # progress is best effort; the job's own writes retry
            log.warning("stage not reported", stage=stage, error_type=type(exc).__name__)

    def _schedule_result(self, job_id: str) -> None:
        """Schedule the deletion of the result this job is about to store; `_deliver` then finds it done. Should
        the render still fail, the schedule keeps a deletion of an object never written, as a put that fails
        always has left one: the janitor's delete of it is a no-op."""
        # Named by the format before the portrait exists (its deletion is scheduled while the render finishes, #11).
        key = result_key(job_id, self._settings.output_format.extension)
        at = now()
        try:
            self._eraser.track(ObjectKind.RESULT, key, job_id, at, self._settings.result_ttl_seconds)
        except redis.RedisError as exc:  # `_deliver` schedules it itself, and its errors are the job's
            log.warning("result deletion not scheduled ahead", error_type=type(exc).__name__)
            return
        self._scheduled[job_id] = (key, at)

    def _settle(self, outcomes: dict[str, Outcome], job_id: str, outcome: Outcome) -> None:
        outcomes[job_id] = outcome
        if job_id in self._carried:
            self._carried.remove(job_id)

    def _deliver(self, job: Job, portrait: Portrait, started: float, held: Held) -> Outcome:
        """Store a painted portrait and finish its job."""
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
        # render's last stage began (`_schedule_result`), or else now. The result lives until that schedule says.
        scheduled_key, scheduled_at = self._scheduled.pop(job_id, (None, 0.0))
        if scheduled_key != key:
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
            return self._discard(job_id, key)
        except JobNotFound:
            return self._discard(job_id, key)
        self.erase_source(job_id, reason="done")
        if job.share:
            self._publish_to_gallery(job, portrait.data, portrait.style, portrait.family)
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

    def _publish_to_gallery(self, job: Job, data: bytes, style: str, family: str) -> None:
        """With its owner's consent, copy the finished portrait to the public gallery (#10): re-encoded without
        metadata, under the gallery id drawn at upload, scheduled for deletion before it is written; then the job
        forgets that id. Never fails the job: a copy that cannot be published is counted and logged."""
        gallery_id, token_hash = job.gallery_id, job.gallery_token_hash
        if not gallery_id or not token_hash:
            return
        key = gallery_object_key(gallery_id)
        may_exist = False
        with _unlinked():  # no log line may carry both the job id and the gallery id
            try:
                if self._gallery.is_pending(gallery_id):
                    copy = clean_jpeg(data, self._settings.output_quality)
                    published = now()
                    # The audit's and the schedule's "job id" is the gallery id: nothing there names the job.
                    self._eraser.track(
                        ObjectKind.GALLERY, key, gallery_id, published, self._settings.gallery_ttl_seconds
                    )
                    may_exist = True
                    self._storage.put(self._storage.results_bucket, key, copy, "image/jpeg")
                    entry = GalleryEntry(
                        id=gallery_id,
                        style=style,
                        family=family,
                        day=day_of(published),
                        object_key=key,
                        token_hash=token_hash,
                        published_at=published,
                    )
                    if self._gallery.publish(entry, self._settings.gallery_ttl_seconds):
                        metrics.GALLERY_PUBLISHED.inc()
                        log.info("portrait published to the gallery")
                    else:  # withdrawn (or the job erased) while we wrote it
                        self._eraser.erase(ObjectKind.GALLERY, key, gallery_id, Deleter.WORKER, reason="withdrawn")
                        log.info("gallery copy erased: withdrawn before publication")
                else:
                    log.info("gallery copy not made: withdrawn before publication")
            except Exception as exc:
                metrics.GALLERY_PUBLISH_FAILURES.inc()
                # The type only: storage errors name the object key, which holds the gallery id.
                log.warning("gallery publication failed; the job stays done", error_type=type(exc).__name__)
                if may_exist:
                    try:
                        self._eraser.erase(ObjectKind.GALLERY, key, gallery_id, Deleter.WORKER, reason="publish failed")
                    except Exception:
                        pass
        try:
            self._jobs.forget_gallery(job.id)
        except redis.RedisError:
            pass  # the record expires with the job; until then only the job's own id can read it

    def _discard(self, job_id: str, key: str) -> Outcome:
        # Erased (or expired) while we painted: the result must not outlive the job.
        self._eraser.erase(ObjectKind.RESULT, key, job_id, Deleter.WORKER, reason="job gone")
        self.erase_source(job_id, reason="job gone")
        log.info("job erased during render; result discarded", job_id=job_id)
        return SKIPPED

    def _fetch_sealed(self, job_id: str) -> bytes:
        """The job's sealed source from S3, read without waiting for its key (#11: the claim brings the key). Not
        there yet: the gateway may still be storing it, and publishes the key only after its put, so wait for the
        key (shared/crypto.py) and read again."""
        with _source_errors(job_id):
            try:
                return self._storage.get(self._storage.sources_bucket, source_key(job_id))
            except ObjectMissing:
                self._keys.load(job_id)  # returns once the source is stored; raises if it never will be
                return self._storage.get(self._storage.sources_bucket, source_key(job_id))

    def _open_source(self, claim: _Claim, fetch: Future[bytes] | None) -> bytes:
        """The job's photo: its sealed source (`fetch`, already under way, or read now) opened with the key its
        claim brought, or, when the claim came before the key was published, the key once it is."""
        job_id = claim.job.id
        sealed = fetch.result() if fetch is not None else self._fetch_sealed(job_id)
        with _source_errors(job_id):
            key = claim.source_key if claim.source_key is not None else self._keys.load(job_id)
            return unseal(key, sealed, job_id)

    def fail(self, job_id: str, failure: JobFailure, *, erase: bool = True) -> Outcome:
        """Fail the job for good and delete its source (nothing more will be made from it); `erase=False`
        leaves a source that was never stored to the deletion schedule."""
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
        log.info("job failed", job_id=job_id, code=failure.code)
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


def clean_jpeg(data: bytes, quality: int) -> bytes:
    """A fresh JPEG of the pixels alone: the image is rebuilt from raw RGB bytes, so no EXIF, ICC profile, XMP,
    comment or other ancillary data of the original can ride along (#10)."""
    with Image.open(io.BytesIO(data)) as opened:
        rgb = opened.convert("RGB")
    pixels = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


@contextmanager
def _source_errors(job_id: str) -> Iterator[None]:
    """A source that cannot be read, as the permanent failure it is."""
    try:
        yield
    except SourceNotStored as exc:
        # The upload was abandoned (or its gateway died) before the put succeeded. No erasure here: a put the
        # gateway gave up on may still land later (a frozen SeaweedFS carried one out 45 s on, issue 9), and erasing
        # now would take the source off the schedule that deletes it at its deadline.
        log.warning("source never stored; left to its deletion deadline", job_id=job_id)
        raise _Permanent(JobErrorCode.SOURCE_EXPIRED.failure, erase=False) from exc
    except (KeyGone, ObjectMissing) as exc:
        raise _Permanent(JobErrorCode.SOURCE_EXPIRED.failure) from exc
    except SealBroken as exc:
        raise _Permanent(JobErrorCode.SOURCE_UNREADABLE.failure) from exc


@contextmanager
def _unlinked() -> Iterator[None]:
    """Log lines inside do not carry the bound job id (restored after)."""
    bound = structlog.contextvars.get_contextvars().get("job_id")
    structlog.contextvars.unbind_contextvars("job_id")
    try:
        yield
    finally:
        if bound is not None:
            structlog.contextvars.bind_contextvars(job_id=bound)


@dataclass(frozen=True)
class _Claim:
    """A job this process started (its lease taken, the job `processing`), to be painted in the current batch."""

    job: Job  # as started: `attempts` and `restarts` count this start
    started: float
    source_key: bytes | None  # None: not yet published when the job started


class _Permanent(Exception):
    def __init__(self, failure: JobFailure, *, erase: bool = True) -> None:
        super().__init__(failure.code)
        self.failure = failure
        self.erase = erase  # False: the source never became readable; its scheduled deletion is left in place

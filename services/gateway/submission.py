"""An upload's way in: admit it (load shedding), record it, store its source and send its job side by side, and
publish the source's key, or undo all of it. The source-ready protocol between the gateway and the worker:

1. Admit (`admit`, before the body is read): an upload that could not be painted before its photo's maximum age
   is refused, 503 `overloaded` with Retry-After, rather than accepted to fail `source_expired` minutes later (#11).
2. Record, in one MULTI (one round trip): the source's deletion is scheduled before the source exists, so no
   crash can leave an unscheduled one behind; the source is marked *expected* for `source_expected_seconds`
   (the longest its put and the key's publication can take: budget.py); the job record is created.
3. Store and send side by side: the job goes to Celery on a helper thread while this one puts the sealed source
   to S3. The put is the longer (5.4 against 2.6 ms, #11) and releases the GIL at once, where Celery's publish is
   Python throughout, so the put stays on the request thread and the worker's hand-off hides behind it.
4. Publish the source's key (`SourceKeys.publish`), only once the put succeeded: the key is readable, the
   expected mark ends and a worker waiting for it wakes. The client gets its 202 only after that.
5. With `redis_wait_replicas` > 0 (a primary with replicas, #24), the same round trip WAITs up to
   `redis_wait_timeout_ms` for that many replicas to hold everything written so far: record, deletion entry,
   broker message and key. A 202 then means the job survives the primary's loss. An upload the replicas did not
   confirm in time is undone and refused, 503 with Retry-After (`_unreplicated`). Its key was readable meanwhile,
   so a worker may already be painting it: the undo deletes the record, the worker's `done` then finds no job
   and discards its result and the photo (services/worker/runner.py `_discard`).

The worker may claim the job before step 4. It reads the source, and if it is not there yet waits for the key
(`SourceKeys.load`, shared/source_keys.py) while the expected mark lasts: a published key means the source is
stored; no key and no mark (`KeyGone`) means shredded or expired; a mark that ran out, or an abandoned one
(`SourceNotStored`), means the source never became readable, and the worker fails the job `source_expired`
but leaves whatever landed to its deletion deadline (services/worker).

The undo (`_abandon`) touches only Redis, never the store that may be failing (issue 9), and the janitor deletes:
- the key is shredded if it was published, and the expected mark ends: whatever blob landed, or lands later from a
  put given up on, is unreadable, and a waiting worker gives up at its next look. A put given up on also leaves
  an *abandoned* mark, so a worker that only looks later does the same;
- a stored source's deletion deadline moves to now (the janitor's next sweep deletes, verifies and audits it). A
  put given up on keeps its original deadline: S3 may still carry it out when it wakes up (a frozen SeaweedFS did,
  45 s later), and a deletion due now would come first and leave that late blob an orphan;
- the job record (and its queue entry) is deleted, so the client's id answers 404.
Each step is idempotent. The first that fails ends the undo: it is Redis that failed, and every further step would
wait for the same timeout. What is left expires by itself: the key and the record with their TTLs, the source at
its original deadline, when the janitor deletes it; nothing is left unscheduled.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from functools import partial
from typing import Any

from services.gateway import metrics
from services.gateway.context import Gateway
from services.gateway.errors import ApiError
from services.gateway.uploads import CleanUpload
from services.gateway.views import bind_job
from shared.audit import ObjectKind
from shared.capacity import Shed, decide
from shared.crypto import new_key, seal
from shared.deletion import Tracked
from shared.gallery import GalleryGrant, GalleryIndex
from shared.ids import new_job_id
from shared.jobs import Job, JobState
from shared.jobs import now as clock
from shared.logging import get_logger
from shared.queue import enqueue_render
from shared.storage import source_key

log = get_logger(__name__)

SOURCE_CONTENT_TYPE = "application/octet-stream"  # sealed: opaque bytes, not an image


def admit(gw: Gateway) -> None:
    """Step 1: 503 `overloaded` for an upload that could not be painted in time. Redis errors answer 503
    `unavailable`, as for the writes that would follow."""
    settings = gw.settings
    if not settings.load_shedding:
        return
    reading = gw.capacity.read(settings.source_max_age_seconds)
    verdict = decide(reading.queued, reading.capacity, settings.shed_max_seconds)
    if verdict.estimated_wait is not None:
        metrics.UPLOAD_WAIT_ESTIMATE.observe(verdict.estimated_wait)
    if isinstance(verdict, Shed):
        metrics.UPLOADS_SHED.inc()
        log.info(
            "upload shed",
            queued=reading.queued,
            renderers=reading.capacity.renderers,
            seconds_per_job=round(reading.capacity.seconds_per_job, 3),
            estimated_wait=round(verdict.estimated_wait, 1),
            retry_after=verdict.retry_after,
        )
        raise ApiError(
            "overloaded",
            f"too many portraits are waiting to be painted: yours would wait about "
            f"{math.ceil(verdict.estimated_wait)} s, and a photo is kept at most "
            f"{settings.source_max_age_seconds} s; please try again in {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )


def submit(gw: Gateway, upload: CleanUpload, gallery: GalleryGrant | None = None) -> Job:
    """Steps 2 to 4 for an admitted upload; on any failure the undo runs and the error is raised (the error
    handlers answer 503 for dependency failures)."""
    job = Job(
        id=new_job_id(),
        state=JobState.QUEUED,
        created_at=clock(),
        style_requested=upload.style,
        strength=upload.strength,
        share=gallery is not None,
        gallery_id=gallery.id if gallery else None,
        gallery_token_hash=gallery.token_hash if gallery else None,
        callback_url=upload.callback_url,
    )
    bind_job(job.id)
    key = new_key()
    sealed = seal(key, upload.jpeg, job.id)
    stored = False
    try:
        if gallery is not None:
            # Reserved now, so the token withdraws even before the portrait exists; expires with the job record.
            GalleryIndex(gw.redis).reserve(gallery, gw.settings.job_ttl_seconds)
        with gw.redis.pipeline(transaction=True) as pipe:
            gw.eraser.track(
                ObjectKind.SOURCE,
                source_key(job.id),
                job.id,
                job.created_at,
                gw.settings.source_max_age_seconds,
                pipe=pipe,
            )
            gw.source_keys.expect(pipe, job.id, gw.budget.source_expected_seconds)
            gw.jobs.create(job, pipe=pipe)
            pipe.execute()
        sent = gw.job_sender.submit(enqueue_render, gw.celery, gw.settings, job.id)
        try:
            gw.objects.put(gw.objects.sources_bucket, source_key(job.id), sealed, SOURCE_CONTENT_TYPE)
        except Exception:
            _succeeded(sent)  # sent or not, the job is abandoned; the put's error is the one reported
            raise
        stored = True
        sent.result()
        replicas = gw.settings.redis_wait_replicas
        acknowledged = gw.source_keys.publish(job.id, key, replicas=replicas, wait_ms=gw.settings.redis_wait_timeout_ms)
        if acknowledged is not None and acknowledged < replicas:
            raise _unreplicated(acknowledged, replicas)
    except Exception:
        _abandon(gw, job, stored=stored)
        raise
    metrics.ENQUEUED.inc()
    return job


def _unreplicated(acknowledged: int, replicas: int) -> ApiError:
    """Step 5's shortfall: the job is on the primary but not on `replicas` replicas. It is undone and refused, 503
    with Retry-After (#24). Accepting it would promise a job that a failover in this moment loses: the chaos run's
    planned failover lost two accepted jobs that way (writes reaching the old primary after the replica's
    promotion, which no replica confirms). The price: while the primary has fewer replicas than asked (one lost
    and not yet back), uploads are refused; reads and downloads are not."""
    metrics.UNREPLICATED_UPLOADS.inc()
    log.warning("upload refused: its replicas did not confirm it", acknowledged=acknowledged, wanted=replicas)
    return ApiError(
        "unavailable",
        "the job store is failing over to a replica and could not keep your upload safely; please try again",
    )


def _succeeded(call: Future[None]) -> bool:
    """Wait for a call beside the request; whether it succeeded (its error is not the one reported)."""
    try:
        call.result()
    except Exception:
        return False
    return True


def _abandon(gw: Gateway, job: Job, *, stored: bool) -> None:
    """The undo of a half-done upload (see the module's docstring)."""
    # Stored: the blob is there to delete now. Not stored: the abandoned mark keeps a worker from erasing it now.
    steps: list[partial[Any]] = [partial(gw.source_keys.delete if stored else gw.source_keys.abandon, job.id)]
    if stored:
        steps.append(
            partial(
                gw.eraser.schedule.add, Tracked(ObjectKind.SOURCE, source_key(job.id), job.id, job.created_at), clock()
            )
        )
    steps.append(partial(gw.jobs.delete, job.id))
    for step in steps:
        try:
            step()
        except Exception as exc:
            log.warning("undo of a failed upload stopped", step=step.func.__qualname__, error_type=type(exc).__name__)
            return

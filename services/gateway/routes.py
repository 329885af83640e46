"""HTTP routes. Three blueprints: `uploads` (POST /v1/portraits alone, so the rate limit applies to it and
nothing else), `portraits` (the rest of the public API) and `ops` (health, readiness, metrics).

Portrait responses always carry every field; a field that does not apply is null (see openapi.py).

Long on purpose: every route of the HTTP surface in one file, in the order of a job's life, so
one reading shows all of it; the work behind them is elsewhere (uploads.py, shared/).
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from flask import Blueprint, Flask, Response, jsonify, request, url_for
from obstore.exceptions import BaseError as ObstoreError
from redis import RedisError

from services.gateway import metrics, openapi
from services.gateway.context import Gateway, gateway
from services.gateway.errors import ApiError
from services.gateway.uploads import CleanUpload, read_upload
from shared.audit import Deleter, ObjectKind
from shared.capacity import Shed, decide
from shared.crypto import new_key, seal
from shared.deletion import Tracked
from shared.errors import JobErrorCode
from shared.gallery import (
    Cursor,
    GalleryEntry,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Pending,
    is_gallery_id,
    token_hash,
    token_matches,
)
from shared.ids import is_job_id, new_job_id
from shared.jobs import Job, JobNotFound, JobState, TransitionRefused
from shared.jobs import now as clock
from shared.logging import get_logger
from shared.output_format import OutputFormat
from shared.queue import enqueue_render, queue_depth
from shared.storage import ObjectMissing, StorageUnavailable, result_key, source_key
from shared.styles import AUTO, Family, choices, styles_in
from shared.webhooks import host_of

log = get_logger(__name__)

SOURCE_CONTENT_TYPE = "application/octet-stream"  # sealed: opaque bytes, not an image
VISIBLE_STATES = frozenset({JobState.QUEUED, JobState.PROCESSING, JobState.DONE, JobState.FAILED})
_STORAGE_ERRORS = (StorageUnavailable, ObjectMissing, ObstoreError, ClientError, BotoCoreError)

uploads = Blueprint("uploads", __name__)
portraits = Blueprint("portraits", __name__)
ops = Blueprint("ops", __name__)


def register(app: Flask) -> None:
    for blueprint in (uploads, portraits, ops):
        app.register_blueprint(blueprint)
    app.teardown_request(_unbind_job)


def _bind_job(job_id: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id)


def _unbind_job(_exc: BaseException | None = None) -> None:
    structlog.contextvars.unbind_contextvars("job_id")


def _not_found() -> ApiError:
    return ApiError("not_found", "no such portrait (it may have expired or been deleted)")


# ------------------------------------------------------------------------------------------------ portraits


@uploads.post("/v1/portraits")
def create_portrait() -> tuple[Response, int, dict[str, str]]:
    gw = gateway()
    admit(gw)  # before the body is read: a shed upload costs one Redis round trip, and nothing is stored
    upload = read_upload(request, gw.settings)  # every rejection happens here, before anything is stored
    # Consent given: a gallery id and a withdraw token, shown once in this answer (#10; only its hash is kept).
    grant = GalleryGrant.new() if upload.share else None
    job = submit(gw, upload, gallery=grant)
    status_url = url_for("portraits.get_portrait", id=job.id)
    log.info(
        "portrait queued",
        received_bytes=upload.received_bytes,
        source_format=upload.source_format,
        source_kept=upload.source_kept,
        width=upload.width,
        height=upload.height,
        style_requested=upload.style,
        strength=upload.strength,
        # The callback's host only: its path and query may carry the client's own tokens (#10).
        callback_host=host_of(upload.callback_url) if upload.callback_url else None,
    )
    body: dict[str, Any] = {"id": job.id, "status": job.state.value, "status_url": status_url}
    body["gallery"] = {"id": grant.id, "withdraw_token": grant.token} if grant else None
    return jsonify(body), 202, {"Location": status_url}


def admit(gw: Gateway) -> None:
    """Load shedding (#11): refuse an upload that could not be painted before its photo's maximum age — 503
    `overloaded` with Retry-After — rather than accept a job bound to fail `source_expired` two minutes later.
    Redis errors answer 503 `unavailable`, as for the writes that would follow."""
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
    """Record the job, store its sealed source while the job is sent to a worker, then publish the source's key;
    on any failure abandon what was written.

    The S3 put (5.4 ms at one client, #11) used to come before the job was recorded and sent; now the worker's
    hand-off (the publish, Celery's delivery and the claim: ~5 ms) runs beside it, and a worker that arrives first
    waits for the key, which is published only once the put succeeded (shared/crypto.py). The answer is still
    202 only after that. The schedule, the expected mark and the record are one MULTI: one round trip, and the
    deletion is still scheduled before the write."""
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
    _bind_job(job.id)
    key = new_key()
    sealed = seal(key, upload.jpeg, job.id)
    stored = False
    try:
        if gallery is not None:
            # Reserved now, so the token withdraws even before the portrait exists; expires with the job record.
            GalleryIndex(gw.redis).reserve(gallery, gw.settings.job_ttl_seconds)
        with gw.redis.pipeline(transaction=True) as pipe:
            # Scheduled for deletion before it exists: no crash can leave an unscheduled source behind.
            gw.eraser.track(
                ObjectKind.SOURCE,
                source_key(job.id),
                job.id,
                job.created_at,
                gw.settings.source_max_age_seconds,
                pipe=pipe,
            )
            gw.source_keys.expect(pipe, job.id, gw.source_expected_seconds)
            gw.jobs.create(job, pipe=pipe)
            pipe.execute()
        # The publish on the helper thread, the put on this one: the put is the longer of the two (5.4 against
        # 2.6 ms in a trace of 40 jobs) and releases the GIL at once, where Celery's publish is Python throughout;
        # handed to the helper, the put started 0.4 ms late, behind the publish (#11).
        sent = gw.job_sender.submit(enqueue_render, gw.celery, gw.settings, job.id)
        try:
            gw.objects.put(gw.objects.sources_bucket, source_key(job.id), sealed, SOURCE_CONTENT_TYPE)
        except Exception:
            _succeeded(sent)  # sent or not, the job is abandoned; the put's error is the one reported
            raise
        stored = True
        sent.result()
        gw.source_keys.publish(job.id, key)
    except Exception:
        _abandon(gw, job, stored=stored)
        raise  # the error handlers answer 503 for dependency failures
    metrics.ENQUEUED.inc()
    return job


def _succeeded(call: Future[None]) -> bool:
    """Wait for a call beside the request; whether it succeeded (its error is not the one reported)."""
    try:
        call.result()
    except Exception:
        return False
    return True


def _abandon(gw: Gateway, job: Job, *, stored: bool) -> None:
    """Undo a half-done upload without touching the store that may be failing (issue 9: the undo used to
    delete the source from S3 in the request, so with S3 hung it was the undo that timed out, and was skipped,
    leaving orphan sources). Only Redis is touched, and the janitor deletes:

    1. shred the source's key, if it was published, and end its expected mark: whatever blob landed, or lands
       later from a write we gave up on, is unreadable, and a worker waiting for the key (the job was already
       sent, #11) gives up at its next look, leaving the source to the schedule (runner.py); a write given up
       on also leaves an "abandoned" mark, so a worker that only looks later does the same;
    2. if the source was stored, move its deletion deadline to now, so the janitor's next sweep (seconds)
       deletes, verifies and audits it. A write we gave up on (S3 hung or failing) keeps its original
       deadline instead: S3 may still carry it out when it wakes up — a frozen SeaweedFS did, 45 s later —
       and a deletion due now would come first and leave that late blob an orphan (`make chaos` found one).
       At the deadline the janitor deletes whatever landed, within the source's maximum age.
    3. delete the job record (and its queue entry), so the client's id answers 404.

    Each step is idempotent. The first one that fails ends the undo: it is Redis that failed, and every
    further step would wait for the same timeout. What is left then expires by itself: the key with its TTL,
    the record with its TTL, and the source at its original deadline, when the janitor deletes it — nothing is
    left unscheduled for its reconcile pass to find."""
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


@portraits.get("/v1/portraits/<id>")
def get_portrait(id: str) -> Response:  # the public path parameter is called `id`
    job = _load_job(id)
    view = portrait_view(gateway(), job, clock())
    if view is None:
        raise _not_found()
    return jsonify(view)


def _load_job(job_id: str) -> Job:
    if not is_job_id(job_id):
        raise _not_found()  # malformed ids never reach Redis
    _bind_job(job_id)
    job = gateway().jobs.get(job_id)
    if job is None:
        raise _not_found()
    return job


def portrait_view(gw: Gateway, job: Job, now: float) -> dict[str, Any] | None:
    """The public view of a job, or None when it is gone for the client (deleted, expired)."""
    if job.state not in VISIBLE_STATES:
        return None
    result_url = expires_at = None
    if job.state is JobState.DONE:
        result_expires_at = job.result_expires_at or (
            (job.finished_at or job.created_at) + gw.settings.result_ttl_seconds
        )
        expires_in = math.floor(min(result_expires_at - now, gw.settings.result_url_max_seconds))
        if expires_in < 1:
            return None  # the result is gone (or about to be); the janitor will mark the job expired
        if job.result_key:
            result_url = gw.objects.presigned_get(gw.objects.results_bucket, job.result_key, expires_in)
            expires_at = iso_utc(now + expires_in)
    error = None
    if job.state is JobState.FAILED:
        error = {"code": job.error_code or JobErrorCode.ENGINE_ERROR.value, "message": job.error_message or ""}
    return {
        "id": job.id,
        "status": job.state.value,
        "stage": job.stage,
        "queue_position": gw.jobs.queue_position(job.id) if job.state is JobState.QUEUED else None,
        "created_at": iso_utc(job.created_at),
        "timings": dict(job.timings),
        "style": job.style,
        "family": job.family,
        "reason": job.reason,
        "strength": job.strength,
        "result_url": result_url,
        "expires_at": expires_at,
        "error": error,
    }


def iso_utc(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@portraits.delete("/v1/portraits/<id>")
def delete_portrait(id: str) -> tuple[str, int]:
    gw = gateway()
    job = _load_job(id)
    try:
        # First, so a worker finishing now cannot move the job to `done` behind our back.
        gw.jobs.transition(job.id, JobState.DELETED)
    except TransitionRefused:
        pass  # already deleted or expired: an earlier erasure was cut short, so finish it
    except JobNotFound:
        raise _not_found() from None
    erase(gw, job)
    job_erased_by_user(job.id)
    return "", 204


def erase(gw: Gateway, job: Job) -> None:
    """Result(s), source, source key, then the record: the record goes last so a failed erasure can be
    retried with the same id. Every step is idempotent."""
    # A worker racing this DELETE may write its result after we read the record: remove every possible key.
    results = {result_key(job.id, output.extension) for output in OutputFormat}
    if job.result_key:
        results.add(job.result_key)
    for key in sorted(results):
        gw.eraser.erase(ObjectKind.RESULT, key, job.id, Deleter.USER, reason="erased")
    gw.eraser.erase(ObjectKind.SOURCE, source_key(job.id), job.id, Deleter.USER, reason="erased")
    if job.gallery_id:
        # Erased before its copy was published: the publication is cancelled (the worker erases a copy it wrote
        # meanwhile). A copy already published is independent of the job; its withdraw token removes it (#10).
        GalleryIndex(gw.redis).remove(job.gallery_id, only_pending=True)
    gw.jobs.delete(job.id)


def job_erased_by_user(job_id: str) -> None:
    """The single place a user-requested erasure is counted (each object's audit record is the Eraser's)."""
    metrics.ERASED.inc()
    log.info("job erased by user", job_id=job_id)


# ---------------------------------------------------------------------------------------------- gallery (#10)

GALLERY_DEFAULT_LIMIT = 24
GALLERY_MAX_LIMIT = 50
# Compared against when an id has no entry, so a 403 for an unknown id costs what a 403 for a known one costs.
_NO_TOKEN_HASH = token_hash("")


@portraits.get("/v1/gallery")
def list_gallery() -> Response:
    """Newest first; each image URL is presigned for at most `result_url_max_seconds` and never past the copy's
    own deadline. Items carry only the gallery id, style, family and day."""
    gw = gateway()
    limit = _gallery_limit(request.args.get("limit"))
    raw_cursor = request.args.get("cursor") or None
    try:
        cursor = Cursor.decode(raw_cursor) if raw_cursor else None
    except ValueError:
        raise ApiError("bad_request", "cursor is not one this API gave out") from None
    page = GalleryIndex(gw.redis).page(cursor, limit)
    now = clock()
    items = []
    for entry in page.entries:
        expires_in = math.floor(
            min(entry.published_at + gw.settings.gallery_ttl_seconds - now, gw.settings.result_url_max_seconds)
        )
        if expires_in < 1:
            continue  # due for deletion: the janitor's next sweep takes it
        items.append(
            {
                "id": entry.id,
                "image_url": gw.objects.presigned_get(gw.objects.results_bucket, entry.object_key, expires_in),
                "style": entry.style,
                "family": entry.family,
                "day": entry.day,
            }
        )
    return jsonify({"items": items, "next_cursor": page.next_cursor.encode() if page.next_cursor else None})


def _gallery_limit(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return GALLERY_DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= GALLERY_MAX_LIMIT:
        raise ApiError("bad_request", f"limit must be an integer from 1 to {GALLERY_MAX_LIMIT}")
    return limit


@portraits.delete("/v1/gallery/<id>")
def withdraw_from_gallery(id: str) -> tuple[str, int]:
    """Withdraw a gallery entry with its token. Only the token holder learns anything: without the right token
    every well-formed id answers the same 403, whether it is listed, pending, withdrawn or never existed; with
    it, 204 (erased now: copy, index entry) or, once it is gone (withdrawn or expired within a day), 404."""
    if not is_gallery_id(id):
        raise ApiError("not_found", "no such gallery entry")
    gw = gateway()
    index = GalleryIndex(gw.redis)
    found = index.lookup(id)
    presented = _bearer_token()
    matches = token_matches(presented or "", found.token_hash if found is not None else _NO_TOKEN_HASH)
    if presented is None or found is None or not matches:
        raise ApiError("invalid_token", "this token does not withdraw this gallery entry")
    if isinstance(found, Gone):
        raise ApiError("not_found", "this gallery entry was already withdrawn or has expired")
    if isinstance(found, Pending) and not index.remove(id, only_pending=True):
        found = index.lookup(id)  # published between the two reads: withdraw the published copy
    if isinstance(found, GalleryEntry):
        # The copy first, through the one Eraser (deleted, verified, audited under the gallery id); the index
        # entry only after, so a failed erasure (503) can be retried with the same token.
        gw.eraser.erase(ObjectKind.GALLERY, found.object_key, id, Deleter.USER, reason="withdrawn")
        index.remove(id)
    metrics.GALLERY_WITHDRAWN.inc()
    log.info("gallery entry withdrawn")  # no ids: the gallery id must never share a log line with a job id
    return "", 204


def _bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


# ---------------------------------------------------------------------------------------------- catalog, docs


@cache
def styles_document() -> dict[str, Any]:
    families = [{"name": family.value, "styles": [style.as_dict() for style in styles_in(family)]} for family in Family]
    return {
        "default": AUTO,
        "choices": choices(),
        "families": families,
    }


@portraits.get("/v1/styles")
def list_styles() -> Response:
    return jsonify(styles_document())


@portraits.get("/v1/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document())


# ------------------------------------------------------------------------------------------------------ ops


@ops.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})  # alive: touches no dependency


@ops.get("/readyz")
def readyz() -> Response:
    gw = gateway()
    down: list[str] = []
    try:
        gw.redis.ping()
    except RedisError as exc:
        down.append("redis")
        log.warning("not ready: redis", error_type=type(exc).__name__)
    try:
        gw.probe_objects.ping()
    except _STORAGE_ERRORS as exc:
        down.append("storage")
        log.warning("not ready: storage", error_type=type(exc).__name__)
    if down:
        raise ApiError("unavailable", f"not ready: {', '.join(down)} unreachable")
    return jsonify({"status": "ready"})


@ops.get("/metrics")
def prometheus_metrics() -> Response:
    gw = gateway()
    body, content_type = metrics.render(lambda: queue_depth(gw.redis, gw.settings))
    return Response(body, content_type=content_type)

"""HTTP routes: the Flask view functions, in the order of a job's life, so one reading shows the whole HTTP
surface; the work behind them is elsewhere (submission.py, views.py, erasure.py, uploads.py, shared/). Three
blueprints: `uploads` (POST /v1/portraits alone, so the rate limit applies to it and nothing else), `portraits`
(the rest of the public API) and `ops` (health, readiness, metrics).
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, url_for
from redis import RedisError

from services.gateway import metrics, openapi
from services.gateway.context import gateway
from services.gateway.erasure import erase, job_erased_by_user
from services.gateway.errors import ApiError
from services.gateway.submission import admit, submit
from services.gateway.uploads import read_upload
from services.gateway.views import (
    GALLERY_COPY_KEPT,
    bind_job,
    not_found,
    portrait_view,
    styles_document,
    unbind_job,
)
from shared.audit import Deleter, ObjectKind
from shared.gallery import (
    Cursor,
    GalleryEntry,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Pending,
    Ready,
    copy_keys,
    is_gallery_id,
    removal_deadline,
    token_hash,
    token_matches,
)
from shared.ids import is_job_id
from shared.jobs import Job, JobNotFound, JobState, TransitionRefused
from shared.jobs import now as clock
from shared.logging import get_logger
from shared.queue import queue_depth
from shared.storage import StorageError
from shared.webhooks import host_of

log = get_logger(__name__)

uploads = Blueprint("uploads", __name__)
portraits = Blueprint("portraits", __name__)
ops = Blueprint("ops", __name__)


def register(app: Flask) -> None:
    for blueprint in (uploads, portraits, ops):
        app.register_blueprint(blueprint)
    app.teardown_request(unbind_job)


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


@portraits.get("/v1/portraits/<id>")
def get_portrait(id: str) -> Response:  # the public path parameter is called `id`
    job = _load_job(id)
    view = portrait_view(gateway(), job, clock())
    if view is None:
        raise not_found()
    return jsonify(view)


def _load_job(job_id: str) -> Job:
    if not is_job_id(job_id):
        raise not_found()  # malformed ids never reach Redis
    bind_job(job_id)
    job = gateway().jobs.get(job_id)
    if job is None:
        raise not_found()
    return job


@portraits.delete("/v1/portraits/<id>")
def delete_portrait(id: str) -> tuple[str, int] | Response:
    gw = gateway()
    job = _load_job(id)
    try:
        # First, so a worker finishing now cannot move the job to `done` behind our back.
        gw.jobs.transition(job.id, JobState.DELETED)
    except TransitionRefused:
        pass  # already deleted or expired: an earlier erasure was cut short, so finish it
    except JobNotFound:
        raise not_found() from None
    copy_may_remain = erase(gw, job)
    job_erased_by_user(job.id)
    if copy_may_remain:
        # Nothing links a published gallery copy to its job, so this DELETE cannot erase it: tell the client (#25).
        return jsonify(GALLERY_COPY_KEPT)
    return "", 204


# ---------------------------------------------------------------------------------------------- gallery (#10)

GALLERY_DEFAULT_LIMIT = 24
GALLERY_MAX_LIMIT = 50
# Compared against when an id has no entry, so a 403 for an unknown id costs what a 403 for a known one costs.
_NO_TOKEN_HASH = token_hash("")


@portraits.get("/v1/gallery")
def list_gallery() -> Response:
    """Newest day first, each day's entries in an order set by their random ids; each image URL is presigned for
    at most `result_url_max_seconds` and never past the copy's removal, which its whole day shares. Items and the
    cursor carry only the gallery id, style, family and the day it was released (#25)."""
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
            min(removal_deadline(entry.day, gw.settings.gallery_ttl_seconds) - now, gw.settings.result_url_max_seconds)
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
    it, 204 (erased now: every copy, staged or listed, then the index entry) or, once it is gone (withdrawn or
    expired within a day), 404."""
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
        found = index.lookup(id)  # staged between the two reads: withdraw the staged copy
    if isinstance(found, Ready | GalleryEntry):
        # The copies first, through the one Eraser (deleted, verified, audited under the gallery id): both keys,
        # as a release may be copying one to the other now (#25). The index entry only after, so a failed
        # erasure (503) can be retried with the same token.
        for key in copy_keys(id):
            gw.eraser.erase(ObjectKind.GALLERY, key, id, Deleter.USER, reason="withdrawn")
        index.remove(id)
    metrics.GALLERY_WITHDRAWN.inc()
    log.info("gallery entry withdrawn")  # no ids: the gallery id must never share a log line with a job id
    return "", 204


def _bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


# ---------------------------------------------------------------------------------------------- catalog, docs


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
    except StorageError as exc:
        down.append("storage")
        log.warning("not ready: storage", error_type=type(exc).__name__)
    if down:
        raise ApiError("unavailable", f"not ready: {', '.join(down)} unreachable")
    return jsonify({"status": "ready"})


@ops.get("/metrics")
def prometheus_metrics() -> Response:
    gw = gateway()
    body, content_type = metrics.render(lambda: queue_depth(gw.redis, gw.settings), gw.jobs.queued_count)
    return Response(body, content_type=content_type)

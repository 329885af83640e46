"""What the API shows: the public document of a job (GET /v1/portraits/<id>, the live stream's final event, the
page's download link all answer from it), the style catalogue, and the per-request helpers every view of a job
shares. Apart from the routes so that routes.py, events.py and site.py import it without importing each other.

A portrait document always carries every field; a field that does not apply is null (see openapi.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache
from typing import Any

import structlog

from services.gateway.context import Gateway
from services.gateway.errors import ApiError
from shared.errors import JobErrorCode
from shared.jobs import Job, JobState
from shared.styles import AUTO, Family, choices, styles_in

VISIBLE_STATES = frozenset({JobState.QUEUED, JobState.PROCESSING, JobState.DONE, JobState.FAILED})


def bind_job(job_id: str) -> None:
    """Every log line of this request carries the job id."""
    structlog.contextvars.bind_contextvars(job_id=job_id)


def unbind_job(_exc: BaseException | None = None) -> None:
    structlog.contextvars.unbind_contextvars("job_id")


def not_found() -> ApiError:
    return ApiError("not_found", "no such portrait (it may have expired or been deleted)")


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


#: DELETE /v1/portraits/<id>'s answer (200) for a job its owner shared whose gallery copy may have been published;
#: any other erasure answers 204 with no body, as before (#25).
GALLERY_COPY_KEPT: dict[str, Any] = {
    "deleted": True,
    "gallery_copy": "kept",
    "message": "The portrait, the photo and the job are erased. The portrait was shared: its copy in the public "
    "gallery, if one was made, is not linked to the job, was not erased and stays until it expires. To withdraw "
    "it now, send DELETE /v1/gallery/{gallery id} with `Authorization: Bearer <withdraw_token>`, both from the "
    "upload's 202 answer.",
}


def iso_utc(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@cache
def styles_document() -> dict[str, Any]:
    families = [{"name": family.value, "styles": [style.as_dict() for style in styles_in(family)]} for family in Family]
    return {
        "default": AUTO,
        "choices": choices(),
        "families": families,
    }

"""The gateway's one error envelope, `{"error": {"code": "...", "message": "..."}}`, and the handlers that put
every failure into it: our own rejections, Werkzeug's HTTP errors (404, 405, 413, 429…), dependencies that are
down (503) and anything unexpected (500, logged with its traceback, nothing leaked to the client).

`CODES` is the closed list of codes the gateway emits; the OpenAPI document is generated from it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from kombu.exceptions import OperationalError as BrokerUnavailable
from werkzeug.exceptions import HTTPException

from services.gateway import metrics
from shared.errors import JOB_ERRORS, JobErrorCode, PortraitError
from shared.logging import get_logger
from shared.storage import StorageRefused, StorageUnavailable

log = get_logger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    description: str


#: The job codes the gateway answers with itself, and its own wording where a code means more at the door than on a
#: job (503 `unavailable`: any dependency, not just storage). Their statuses are the job vocabulary's.
_GATEWAY_WORDING = {
    JobErrorCode.UNAVAILABLE: "Storage or Redis is unreachable or too slow; retry after `Retry-After` seconds.",
}


def _job_code_rows() -> tuple[ErrorCode, ...]:
    """One row per job code that has an HTTP status (shared/errors.py, #23: these were spelled here a second time)."""
    return tuple(
        ErrorCode(
            row.code.value, row.status, _GATEWAY_WORDING.get(row.code, row.message[:1].upper() + row.message[1:] + ".")
        )
        for row in JOB_ERRORS.values()
        if row.status is not None
    )


CODES: dict[str, ErrorCode] = {
    entry.code: entry
    for entry in (
        *_job_code_rows(),
        ErrorCode("bad_request", 400, "The request could not be understood."),
        ErrorCode("missing_image", 400, "The multipart form has no file part named `image`."),
        ErrorCode("empty_upload", 400, "The `image` file part is empty."),
        ErrorCode("too_many_fields", 400, "The multipart form has more parts than an upload needs."),
        ErrorCode("invalid_share", 400, "`share` is not `true` or `false` (`1`/`0`, `on`/`off` also accepted)."),
        ErrorCode(
            "invalid_callback_url",
            400,
            "`callback_url` is not an absolute http(s) URL of at most 2048 characters without a user name or password.",
        ),
        ErrorCode(
            "callback_url_refused",
            400,
            "`callback_url`'s host does not resolve, or resolves to a "
            "loopback, private, link-local (cloud metadata), multicast, "
            "reserved or unspecified address (also wrapped in 6to4, Teredo or NAT64), "
            "which webhooks never call; or its port is not 80 or 443 (PORTRAITS_WEBHOOK_ALLOWED_PORTS).",
        ),
        ErrorCode(
            "webhooks_disabled",
            400,
            "`callback_url` was sent but this deployment has no webhook secret "
            "(`PORTRAITS_WEBHOOK_SECRET`): the upload is refused rather than "
            "never called back.",
        ),
        ErrorCode(
            "invalid_token",
            403,
            "The `Authorization: Bearer` withdraw token is missing or does not match "
            "this gallery entry (the same answer whether or not the entry exists).",
        ),
        ErrorCode(
            "cross_site_request",
            403,
            "A browser sent this upload or deletion from another site's page (its `Sec-Fetch-Site` is not "
            "`same-origin`, or its `Origin` is not this host nor in `PORTRAITS_TRUSTED_ORIGINS`). Clients that "
            "are not browsers send neither header and are never refused.",
        ),
        ErrorCode(
            "not_found",
            404,
            "No such route, or no such portrait or gallery entry (unknown, expired, deleted or withdrawn).",
        ),
        ErrorCode("method_not_allowed", 405, "The route exists but not with this method (see `Allow`)."),
        ErrorCode(
            "upload_timeout",
            408,
            "The request body arrived too slowly (see `gateway_body_min_rate`); the connection is closed.",
        ),
        ErrorCode("too_large", 413, "The request body or the image file is over the upload limit."),
        ErrorCode("uri_too_long", 414, "The request line is too long (answered by the HTTP server)."),
        ErrorCode("rate_limited", 429, "Too many uploads from this client; retry after `Retry-After` seconds."),
        ErrorCode("headers_too_large", 431, "Too many or too large request headers (answered by the HTTP server)."),
        ErrorCode("internal_error", 500, "An unexpected error; it has been logged."),
        ErrorCode("not_implemented", 501, "A transfer coding other than chunked (answered by the HTTP server)."),
        ErrorCode(
            "overloaded",
            503,
            "Too many uploads are waiting: this one could not be painted before its "
            "photo's maximum age, so it was not accepted; retry after `Retry-After` "
            "seconds, the estimated time for the queue to drain enough.",
        ),
    )
}

# Werkzeug's HTTP errors, by status; any other 4xx is `bad_request` and any other 5xx `internal_error`.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_type",
    429: "rate_limited",
    503: "unavailable",
}
_HTTP_MESSAGES = {
    "not_found": "no such resource",
    "too_large": "the upload is too large",
    "rate_limited": "too many uploads; try again later",
}

#: Failures of our dependencies: the client did nothing wrong and may retry.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    StorageUnavailable,
    StorageRefused,  # bad credentials are a bug of ours, not the client's: still an outage to them
    redis.RedisError,
    BrokerUnavailable,
)

#: Retry-After on every 503: long enough for a blip to pass, short next to the outages it covers (issue 9).
RETRY_AFTER_SECONDS = 5

#: WSGI environ keys. CLOSE_CONNECTION: a callable the gunicorn worker (worker.py) puts there to close the
#: connection after this response. BODY_TIMED_OUT: set by bodies.py when a body missed its deadline.
CLOSE_CONNECTION = "portraits.close_connection"
BODY_TIMED_OUT = "portraits.body_timed_out"

# An unread request body makes the server's close send a TCP reset, which can destroy the error response
# before the client reads it. Read and discard a bounded amount so the client sees our answer.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_SECONDS = 10.0
_DRAIN_CHUNK = 256 * 1024


class ApiError(Exception):
    """A rejection with a code from `CODES`; raise it anywhere in a request to answer with the envelope."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        entry = CODES[code]  # a KeyError here is a bug: every emitted code must be documented
        super().__init__(message or entry.description)
        self.code = code
        self.message = message or entry.description
        self.status = status or entry.status
        self.headers = dict(headers or {})


#: Job error codes (shared/errors.py) that describe the client's upload; they pass through unchanged, with the
#: status the vocabulary gives them (tests/unit/gateway/test_job_errors.py holds CODES to it).
IMAGE_ERROR_CODES: frozenset[JobErrorCode] = frozenset(
    row.code for row in JOB_ERRORS.values() if row.status is not None and row.status < 500
)


def from_portrait_error(exc: PortraitError) -> ApiError | None:
    """The rejection for an upload's error; None for codes an upload cannot cause (e.g. models_unavailable)."""
    return ApiError(exc.code.value, exc.message) if exc.code in IMAGE_ERROR_CODES else None


def envelope(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(error: ApiError) -> Response:
    metrics.REJECTIONS.labels(code=error.code).inc()
    if request.environ.get(BODY_TIMED_OUT):
        # Waiting for the rest of a body that came too slowly is what the 408 refuses: close instead.
        close = request.environ.get(CLOSE_CONNECTION)
        if close is not None:
            close()
    else:
        _drain_request_body()
    response = jsonify(envelope(error.code, error.message))
    response.status_code = error.status
    response.headers.update(error.headers)
    if error.status == 503:
        response.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return response


def _from_http_exception(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    code = HTTP_ERROR_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    if code == "method_not_allowed":
        message = f"{request.method} is not allowed here"
    elif code == "rate_limited":
        message = f"too many uploads ({exc.description}); try again later"
    else:
        message = _HTTP_MESSAGES.get(code, CODES[code].description)
    # Keep the headers Werkzeug computed (Allow on 405), but not its HTML content type.
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return ApiError(code, message, headers=headers, status=status)


def _drain_request_body() -> None:
    """Discard what is left of a request body, within bounds, when the server delimits it for us
    (`wsgi.input_terminated`: gunicorn does; the Werkzeug dev server only for chunked bodies)."""
    environ = request.environ
    if not environ.get("wsgi.input_terminated"):
        return
    declared = request.content_length
    if declared is not None and declared > DRAIN_MAX_BYTES:
        return  # not worth reading: the connection closes anyway
    stream, drained, deadline = environ["wsgi.input"], 0, time.monotonic() + DRAIN_MAX_SECONDS
    try:
        while drained < DRAIN_MAX_BYTES and time.monotonic() < deadline:
            chunk = stream.read(_DRAIN_CHUNK)
            if not chunk:
                return
            drained += len(chunk)
    except (OSError, ValueError):
        return  # the client went away or the server's reader refused: nothing more to do


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        log.info("request rejected", code=exc.code, status=exc.status)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        error = _from_http_exception(exc)
        log.info("request rejected", code=error.code, status=error.status)
        return error_response(error)

    @app.errorhandler(PortraitError)
    def _portrait_error(exc: PortraitError) -> Response:
        error = from_portrait_error(exc)
        return _api_error(error) if error else _unexpected(exc)

    for dependency_error in UNAVAILABLE_ERRORS:
        app.register_error_handler(dependency_error, _unavailable)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error", error_type=type(exc).__name__, traceback=format_traceback(exc))
        return error_response(ApiError("internal_error", "internal error"))


def _unavailable(exc: Exception) -> Response:
    log.error("dependency unavailable", error_type=type(exc).__name__, error=str(exc), traceback=format_traceback(exc))
    return error_response(ApiError("unavailable", "a storage service is unavailable; try again later"))


def format_traceback(exc: BaseException) -> str:
    # An explicit `traceback` field, which test_gateway_ops reads. shared.logging's chain would format `exc_info=`
    # as well (`format_exc_info`, as text under `exception`): keeping our own field name is a choice, not a
    # workaround (an earlier comment here said the chain had no such formatter; it has, #12).
    return "".join(traceback.format_exception(exc))

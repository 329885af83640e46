"""The gateway's app factory. Collaborators live in one `Gateway` object in `app.extensions`, built from
Settings or handed in by tests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from flask import Flask, Request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from services.gateway import events, metrics, routes, site
from services.gateway.bodies import BodyDeadline
from services.gateway.errors import register_error_handlers
from services.gateway.uploads import FieldCountingParser
from shared import backends
from shared.capacity import CapacityBoard
from shared.crypto import SourceKeys
from shared.deletion import Eraser
from shared.jobs import JobStore
from shared.queue import make_celery
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore, longest_call_seconds

# Room for the multipart boundary, part headers and the small text fields around the file part.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Text parts (`style`, `strength`) are a few bytes, but Werkzeug also applies this cap to its multipart
# parser's buffer, which it fills 64 KiB at a time, file data included: below ~64 KiB every photo would be
# refused with a 413. 128 KiB leaves room for the boundary and part headers on top of one read.
MAX_FORM_MEMORY_BYTES = 128 * 1024
MAX_FORM_PARTS = 16

# The time budget (issue 9). Every dependency call on the request path is bounded, so a request answers —
# a 503 with Retry-After if need be — long before anything in front gives up. Measured before: with S3 stopped,
# botocore's retries (connect 2 s, read 15 s, 4 attempts) outlasted gunicorn's 30 s timeout and the client got
# gunicorn's HTML 500; a hung Redis held every request 5 s and an upload 10 s. Budget now (measured in
# tests/integration/gateway/test_gateway_budget.py): a status read during a Redis hang answers in about
# `redis_timeout` (1.0 s), an upload in 3 of them (rate limiter, first write, one undo step: 3.0 s);
# an upload during an S3 hang in `gateway_s3_max_attempts` × `gateway_s3_timeout` plus the store's backoff
# (3.1 s with botocore, which waited a second per attempt for `100 Continue` until that was removed; obstore,
# the data path since #11, sends none and retries no timed-out PUT: shared/storage.py).
# The worker and the janitor keep their own, patient S3 settings (`s3_*`): they are not holding a client.
# Readiness probes must answer quickly: one attempt, short timeouts.
PROBE_S3_OVERRIDES: dict[str, Any] = {"s3_max_attempts": 1, "s3_connect_timeout": 1.0, "s3_read_timeout": 2.0}


def redis_options(settings: Settings) -> dict[str, Any]:
    """Connection options for every Redis client of the gateway (its own, the rate limiter's): the one set every
    service uses (shared/backends.py: a timeout is final, a reset connection is retried once).

    redis-py 8 also caps a pool at 100 connections and answers the 101st with MaxConnectionsError (a 503 here):
    each of a worker's `gateway_threads` threads uses at most one connection at a time, so the cap is that (#10:
    256 threads; the live-progress streams' own client hit that cap in the first 200-stream load run)."""
    return backends.redis_options(settings, max_connections=backends.pool_for_threads(settings.gateway_threads))


def gateway_s3_settings(settings: Settings) -> Settings:
    """The gateway's S3 client: short timeouts, few attempts (`gateway_s3_*`)."""
    return with_overrides(
        settings,
        s3_max_attempts=settings.gateway_s3_max_attempts,
        s3_connect_timeout=settings.gateway_s3_timeout,
        s3_read_timeout=settings.gateway_s3_timeout,
    )


def bound_broker(celery: Celery, settings: Settings) -> Celery:
    """The Celery app's publishing side on the same budget as the other Redis calls (only the gateway's copy:
    the worker consumes with the shared settings)."""
    timeout = settings.redis_timeout
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    celery.conf.broker_connection_timeout = timeout
    # kombu retries a failed publish 3 times by default, each on a fresh connection: once is enough.
    celery.conf.task_publish_retry_policy = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
    return celery


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    objects: ObjectStore
    source_keys: SourceKeys
    celery: Celery
    eraser: Eraser
    probe_objects: ObjectStore  # same buckets, probe-sized timeouts, for /readyz
    capacity: CapacityBoard  # the render processes' reports, for load shedding (#11)
    # Sends an upload's job to Celery beside the request thread's S3 put of its source (#11; routes.submit): one
    # thread per request thread at most. Threads start on first use, in the serving process, after gunicorn forked.
    job_sender: ThreadPoolExecutor
    # How long a source may stay "expected" (shared/crypto.py): the longest its S3 put can take, and the key's
    # publication after it. Only a gateway dying mid-upload makes a worker wait that long.
    source_expected_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway:
        shared = backends.Backends.connect(
            settings,
            storage=ObjectStore(gateway_s3_settings(settings), fail_fast=True),
            client=backends.redis_client(settings, max_connections=backends.pool_for_threads(settings.gateway_threads)),
        )
        return cls(
            settings=settings,
            redis=shared.redis,
            jobs=shared.jobs,
            objects=shared.storage,
            source_keys=shared.keys,
            celery=bound_broker(make_celery(settings), settings),
            eraser=shared.eraser,
            probe_objects=ObjectStore(with_overrides(settings, **PROBE_S3_OVERRIDES), fail_fast=True),
            capacity=CapacityBoard(shared.redis, settings.renderer_stale_seconds),
            job_sender=ThreadPoolExecutor(max_workers=settings.gateway_threads, thread_name_prefix="job-send"),
            source_expected_seconds=longest_call_seconds(gateway_s3_settings(settings), fail_fast=True)
            + 2 * settings.redis_timeout,
        )


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy of `settings` with some fields replaced (unknown names are an error, not ignored)."""
    unknown = set(overrides) - set(type(settings).model_fields)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    return type(settings).model_validate({**settings.model_dump(), **overrides})


def create_app(settings: Settings | None = None, *, gateway: Gateway | None = None, **overrides: Any) -> Flask:
    """The WSGI app. `overrides` replace Settings fields; `gateway` injects ready-made collaborators."""
    if gateway is None:
        settings = with_overrides(settings or get_settings(), **overrides)
        gateway = Gateway.from_settings(settings)
    elif settings is not None or overrides:
        raise TypeError("pass either a gateway or settings/overrides, not both")
    settings = gateway.settings

    # No app-wide static folder: the page's files (#10) are served by the `site` blueprint, with its headers.
    app = Flask(__name__, static_folder=None)
    app.request_class = GatewayRequest
    # Under gunicorn, a request body that arrives too slowly answers 408 (bodies.py).
    # Replacing `wsgi_app` is how Flask documents adding WSGI middleware; mypy sees a method being assigned.
    deadline = BodyDeadline(app.wsgi_app, settings.gateway_body_timeout, settings.gateway_body_min_rate)
    app.wsgi_app = deadline  # type: ignore[method-assign]  # middleware, see above
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]  # middleware
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY_BYTES,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep documents in the order they are built
    app.extensions[routes.EXTENSION_KEY] = gateway

    metrics.instrument(app)  # first, so its timer starts before the rate limiter can refuse a request
    register_error_handlers(app)
    routes.register(app)
    events.register(app)  # GET /v1/portraits/<id>/events (#10)
    site.register(app)  # the page at / and its files (#10)
    _limit_uploads(app, settings)
    return app


class GatewayRequest(Request):
    form_data_parser_class = FieldCountingParser  # too many form parts: 400 `too_many_fields`, not 413


def _limit_uploads(app: Flask, settings: Settings) -> None:
    if not settings.upload_rate_limit.strip():
        return
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url,
        # Without these the limiter's own Redis client waits on a hung Redis with redis-py's defaults (no
        # timeout, 10 retries), in front of every upload.
        storage_options=redis_options(settings),
        key_prefix="portraits:ratelimit",
        headers_enabled=True,  # Retry-After on the 429
        # Limits are best effort: with Redis down or hung the upload itself answers 503 a moment later.
        swallow_errors=True,
    )
    # The upload blueprint holds POST /v1/portraits only. The check runs before the body is parsed.
    limiter.limit(settings.upload_rate_limit, methods=["POST"])(routes.uploads)
    # Flask-Limiter logs breaches with the client's address: keep that out of our logs.
    limiter.logger.setLevel("WARNING")

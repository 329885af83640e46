"""The gateway's app factory. Collaborators live in one `Gateway` object in `app.extensions`, built from
Settings or handed in by tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from services.gateway import metrics, routes
from services.gateway.errors import register_error_handlers
from shared.audit import AuditLog
from shared.crypto import SourceKeys
from shared.deletion import DeletionSchedule, Eraser
from shared.jobs import JobStore
from shared.queue import make_celery
from shared.settings import Settings, get_settings
from shared.storage import ObjectStore

# Room for the multipart boundary, part headers and the small text fields around the file part.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Text parts (`style`, `strength`) are a few bytes, but Werkzeug also applies this cap to its multipart
# parser's buffer, which it fills 64 KiB at a time, file data included: below ~64 KiB every photo would be
# refused with a 413. 128 KiB leaves room for the boundary and part headers on top of one read.
MAX_FORM_MEMORY_BYTES = 128 * 1024
MAX_FORM_PARTS = 16

# Redis calls sit on the request path: fail fast rather than hold a worker (candidates for Settings).
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0
# Readiness probes must answer quickly: one attempt, short timeouts.
PROBE_S3_OVERRIDES: dict[str, Any] = {"s3_max_attempts": 1, "s3_connect_timeout": 1.0, "s3_read_timeout": 2.0}


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                                      socket_timeout=REDIS_SOCKET_TIMEOUT_S)
        objects = ObjectStore(settings)
        source_keys = SourceKeys(client, ttl_seconds=settings.source_max_age_seconds)
        return cls(
            settings=settings,
            redis=client,
            jobs=JobStore(client, ttl_seconds=settings.job_ttl_seconds),
            objects=objects,
            source_keys=source_keys,
            celery=make_celery(settings),
            eraser=Eraser(objects, source_keys, DeletionSchedule(client), AuditLog(client, settings.audit_max_entries)),
            probe_objects=ObjectStore(with_overrides(settings, **PROBE_S3_OVERRIDES)),
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

    app = Flask(__name__, static_folder=None)  # no /static route: the API serves no files
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]
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
    _limit_uploads(app, settings)
    return app


def _limit_uploads(app: Flask, settings: Settings) -> None:
    if not settings.upload_rate_limit.strip():
        return
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.redis_url,
        key_prefix="portraits:ratelimit",
        headers_enabled=True,  # Retry-After on the 429
        # Limits are best effort: with Redis down the upload itself answers 503 a moment later.
        swallow_errors=True,
    )
    # The upload blueprint holds POST /v1/portraits only. The check runs before the body is parsed.
    limiter.limit(settings.upload_rate_limit, methods=["POST"])(routes.uploads)
    # Flask-Limiter logs breaches with the client's address: keep that out of our logs.
    limiter.logger.setLevel("WARNING")

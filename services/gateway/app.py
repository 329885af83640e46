"""The gateway's app factory. Collaborators live in one `Gateway` object (context.py) in `app.extensions`, built
from Settings or handed in by tests; the factory hands each piece of middleware its share of the Gateway's
budget (budget.py) rather than reading Settings again.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from services.gateway import browsers, events, metrics, routes, site
from services.gateway.bodies import BodyDeadline
from services.gateway.budget import GatewayBudget
from services.gateway.context import EXTENSION_KEY, Gateway
from services.gateway.errors import register_error_handlers
from services.gateway.uploads import FieldCountingParser
from shared import backends
from shared.settings import Settings, get_settings

# Room for the multipart boundary, part headers and the small text fields around the file part.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Text parts (`style`, `strength`) are a few bytes, but Werkzeug also applies this cap to its multipart
# parser's buffer, which it fills 64 KiB at a time, file data included: below ~64 KiB every photo would be
# refused with a 413. 128 KiB leaves room for the boundary and part headers on top of one read.
MAX_FORM_MEMORY_BYTES = 128 * 1024
MAX_FORM_PARTS = 16


def create_app(settings: Settings | None = None, *, gateway: Gateway | None = None, **overrides: Any) -> Flask:
    """The WSGI app. `overrides` replace Settings fields; `gateway` injects ready-made collaborators."""
    if gateway is None:
        settings = with_overrides(settings or get_settings(), **overrides)
        gateway = Gateway.from_settings(settings)
    elif settings is not None or overrides:
        raise TypeError("pass either a gateway or settings/overrides, not both")
    settings, budget = gateway.settings, gateway.budget

    # No app-wide static folder: the page's files (#10) are served by the `site` blueprint, with its headers.
    app = Flask(__name__, static_folder=None)
    app.request_class = GatewayRequest
    # Under gunicorn, a request body that arrives too slowly answers 408 (bodies.py).
    # Replacing `wsgi_app` is how Flask documents adding WSGI middleware; mypy sees a method being assigned.
    deadline = BodyDeadline(app.wsgi_app, budget.body_seconds, budget.body_min_rate)
    app.wsgi_app = deadline  # type: ignore[method-assign]  # middleware, see above
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]  # middleware
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY_BYTES,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep documents in the order they are built
    app.extensions[EXTENSION_KEY] = gateway

    metrics.instrument(app)  # first, so its timer starts before the rate limiter can refuse a request
    register_error_handlers(app)
    # Before the rate limiter's check (registered last), so a refused cross-site upload costs the visitor nothing.
    browsers.register(app, settings.trusted_origin_set)
    routes.register(app)
    events.register(app)  # GET /v1/portraits/<id>/events (#10)
    site.register(app)  # the page at / and its files (#10)
    _limit_uploads(app, settings, budget)
    return app


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy of `settings` with some fields replaced (unknown names are an error, not ignored)."""
    unknown = set(overrides) - set(type(settings).model_fields)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    return type(settings).model_validate({**settings.model_dump(), **overrides})


class GatewayRequest(Request):
    form_data_parser_class = FieldCountingParser  # too many form parts: 400 `too_many_fields`, not 413


def _limit_uploads(app: Flask, settings: Settings, budget: GatewayBudget) -> None:
    if not settings.upload_rate_limit.strip():
        return
    # Without these options the limiter's own Redis client waits on a hung Redis with redis-py's defaults (no
    # timeout, 10 retries), in front of every upload: the options every service's clients have (backends.py),
    # and the same Sentinels when there are (#24).
    storage_uri, storage_options = backends.limiter_storage(settings, max_connections=budget.redis_max_connections)
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri,
        storage_options=storage_options,
        key_prefix="portraits:ratelimit",
        headers_enabled=True,  # Retry-After on the 429
        # Limits are best effort: with Redis down or hung the upload itself answers 503 a moment later.
        swallow_errors=True,
    )
    # The upload blueprint holds POST /v1/portraits only. The check runs before the body is parsed.
    limiter.limit(settings.upload_rate_limit, methods=["POST"])(routes.uploads)
    # Flask-Limiter logs breaches with the client's address: keep that out of our logs.
    limiter.logger.setLevel("WARNING")

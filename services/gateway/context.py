"""The gateway's collaborators: one `Gateway` object, built from Settings (or handed in by tests) and kept in
`app.extensions`, where every view finds it through `gateway()`. Its own module so that the app factory, the
routes, the event stream and the page all import it without importing each other (#23)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from flask import current_app

from shared import backends
from shared.capacity import CapacityBoard
from shared.crypto import SourceKeys
from shared.deletion import Eraser
from shared.jobs import JobStore
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import ObjectStore, longest_call_seconds

#: Where create_app puts the Gateway in `app.extensions`.
EXTENSION_KEY = "portraits_gateway"

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


def gateway() -> Gateway:
    """The current app's Gateway (inside a request or an app context)."""
    gw: Gateway = current_app.extensions[EXTENSION_KEY]  # Flask types its extensions as Any; create_app puts it there
    return gw

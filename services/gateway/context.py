"""The gateway's collaborators: one `Gateway` object, built from Settings (or handed in by tests) and kept in
`app.extensions`, where every view finds it through `gateway()`. Its own module so that the app factory, the
routes, the event stream and the page all import it without importing each other (#23)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from services.gateway.budget import GatewayBudget
from shared import backends
from shared.capacity import CapacityBoard
from shared.deletion import Eraser
from shared.jobs import JobStore
from shared.queue import make_celery
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore

#: Where create_app puts the Gateway in `app.extensions`.
EXTENSION_KEY = "portraits_gateway"


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
    budget: GatewayBudget
    redis: redis.Redis
    jobs: JobStore
    objects: ObjectStore
    source_keys: SourceKeys
    celery: Celery
    eraser: Eraser
    probe_objects: ObjectStore  # same buckets, probe-sized timeouts, for /readyz
    capacity: CapacityBoard  # the render processes' reports, for load shedding (#11)
    # Sends an upload's job to Celery beside the request thread's S3 put of its source (submission.py): one
    # thread per request thread at most. Threads start on first use, in the serving process, after gunicorn forked.
    job_sender: ThreadPoolExecutor

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway:
        budget = GatewayBudget.from_settings(settings)
        shared = backends.Backends.connect(
            settings,
            storage=ObjectStore(settings, budget.s3),
            client=backends.redis_client(settings, max_connections=budget.redis_max_connections),
        )
        return cls(
            settings=settings,
            budget=budget,
            redis=shared.redis,
            jobs=shared.jobs,
            objects=shared.storage,
            source_keys=shared.keys,
            celery=bound_broker(make_celery(settings), settings),
            eraser=shared.eraser,
            probe_objects=ObjectStore(settings, budget.probe_s3),
            capacity=CapacityBoard(shared.redis, settings.renderer_stale_seconds),
            job_sender=ThreadPoolExecutor(max_workers=settings.gateway_threads, thread_name_prefix="job-send"),
        )


def gateway() -> Gateway:
    """The current app's Gateway (inside a request or an app context)."""
    gw: Gateway = current_app.extensions[EXTENSION_KEY]  # Flask types its extensions as Any; create_app puts it there
    return gw

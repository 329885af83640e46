"""`python -m services.janitor`: sweep the deletion schedule every few seconds, reconcile every minute.

A failed sweep (Redis or S3 down) is logged and counted; the loop goes on and the next sweep retries.
SIGTERM finishes the current sweep and exits.
"""

from __future__ import annotations

import signal
import threading
import time

import redis
from kombu.exceptions import OperationalError as BrokerUnavailable

from services.janitor import webhooks
from services.janitor.gallery_release import GalleryRelease
from services.janitor.lost_messages import LostMessages
from services.janitor.sweeper import Janitor
from shared.backends import Backends, redis_client
from shared.leases import JobLeases
from shared.logging import configure_logging, get_logger
from shared.queue import enqueue_render, make_celery
from shared.settings import Settings, get_settings
from shared.storage import StorageUnavailable
from shared.webhooks import WebhookOutbox

log = get_logger("portraits.janitor")


def build_janitor(settings: Settings) -> Janitor:
    shared = Backends.connect(settings)
    celery = make_celery(settings)  # only to send rescued jobs by task name; the janitor never imports the worker

    def enqueue(job_id: str) -> None:
        enqueue_render(celery, settings, job_id)

    return Janitor(
        settings,
        shared.redis,
        shared.jobs,
        shared.eraser,
        JobLeases(shared.redis, settings.job_lease_seconds),
        enqueue,
        webhooks=WebhookOutbox(shared.redis),
        gallery_release=GalleryRelease(shared.redis, shared.storage, shared.eraser, settings.gallery_ttl_seconds),
        lost_messages=LostMessages(shared.redis, settings, enqueue),
    )


def run(settings: Settings, stop: threading.Event) -> None:
    janitor = build_janitor(settings)
    # Webhooks (#10) go out from their own thread with their own connection: a slow receiver never delays a
    # sweep, and a long sweep never delays a webhook.
    webhooks.start(settings, redis_client(settings), stop)
    next_reconcile = time.monotonic()  # reconcile once at start: catch what a previous crash left behind
    log.info(
        "janitor started",
        interval=settings.janitor_interval_seconds,
        source_max_age=settings.source_max_age_seconds,
        result_ttl=settings.result_ttl_seconds,
    )
    while not stop.is_set():
        try:
            janitor.sweep()
        except (redis.RedisError, StorageUnavailable, BrokerUnavailable) as exc:
            log.warning("sweep failed; retrying next interval", error=str(exc))
        # Apart from the sweep: whatever fails there, the reconciliation (a lost deletion entry's catch) still runs.
        try:
            if time.monotonic() >= next_reconcile:
                janitor.reconcile()
                next_reconcile = time.monotonic() + settings.janitor_reconcile_seconds
        except (redis.RedisError, StorageUnavailable, BrokerUnavailable) as exc:
            log.warning("reconciliation failed; retrying next interval", error=str(exc))
        stop.wait(settings.janitor_interval_seconds)
    log.info("janitor stopped")


def main() -> None:
    from prometheus_client import start_http_server

    settings = get_settings()
    configure_logging(settings, "janitor")
    start_http_server(settings.janitor_metrics_port, addr=settings.metrics_bind_address)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, stop)


if __name__ == "__main__":
    main()

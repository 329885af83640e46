"""The webhook delivery loop (#10): a thread in the janitor process that drains the outbox.

Every half second it claims the deliveries that are due (leased, so janitor replicas never send the same one
at once), sends them a few in parallel — one slow receiver must not hold up everyone else's — and then marks
each delivered, schedules its next attempt with backoff, or gives it up after `webhook_max_attempts`. Renders
never wait on any of this: the worker only writes the outbox.

Delivery is at least once: a janitor that dies between a 2xx and `done` sends that message again after the
lease, with the same `webhook-id`, which receivers deduplicate on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from services.janitor import metrics
from shared.logging import get_logger
from shared.settings import Settings
from shared.webhooks import BACKOFF_SECONDS, Attempt, Deliverer, Delivery, Outcome, WebhookOutbox, backoff, host_of

log = get_logger("portraits.janitor.webhooks")

POLL_SECONDS = 0.5
PARALLEL = 8  # deliveries in flight at once
# Longer than one attempt can take (3 s to connect per address, 5 s per read): a claim is not taken over by
# another replica while its attempt is still running.
LEASE_SECONDS = 60.0


class DeliveryLoop:
    def __init__(
        self,
        outbox: WebhookOutbox,
        deliverer: Deliverer,
        max_attempts: int,
        schedule: tuple[float, ...] = BACKOFF_SECONDS,
        clock: Callable[[], float] = time.time,
        parallel: int = PARALLEL,
    ) -> None:
        self._outbox = outbox
        self._deliverer = deliverer
        self._max_attempts = max_attempts
        self._schedule = schedule
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="webhook")
        self._parallel = parallel

    def run_once(self) -> int:
        """Claim what is due, send it, settle each; returns how many were attempted."""
        due = self._outbox.claim_due(self._clock(), self._parallel, LEASE_SECONDS)
        for delivery, attempt in zip(due, self._pool.map(self._deliverer.send, due)):
            self._settle(delivery, attempt)
        metrics.WEBHOOK_PENDING.set(self._outbox.pending())
        return len(due)

    def _settle(self, delivery: Delivery, attempt: Attempt) -> None:
        attempts = delivery.attempts + 1
        # Logs name the callback's host only: its path and query may hold the client's own secrets.
        fields = dict(
            job_id=delivery.job_id,
            webhook_id=delivery.id,
            webhook_event=delivery.event.value,
            host=host_of(delivery.url),
            attempts=attempts,
            status=attempt.status,
            detail=attempt.detail,
        )
        if attempt.outcome is Outcome.DELIVERED:
            self._outbox.done(delivery.id)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
            log.info("webhook delivered", **fields)
        elif attempt.outcome is Outcome.REFUSED:
            self._outbox.done(delivery.id)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="refused").inc()
            # The address stays in our logs (the client's refusal never names it): it tells rebinding from a typo.
            log.warning(
                "webhook refused: not a public address or not an allowed port", address=attempt.address, **fields
            )
        elif attempts >= self._max_attempts:
            self._outbox.done(delivery.id)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="gave_up").inc()
            log.warning("webhook given up", **fields)
        else:
            wait = backoff(attempts, self._schedule)
            self._outbox.reschedule(delivery, self._clock() + wait)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="retried").inc()
            log.info("webhook attempt failed; retrying", retry_in=wait, **fields)

    def run(self, stop: threading.Event) -> None:
        log.info("webhook delivery started", max_attempts=self._max_attempts)
        while not stop.is_set():
            try:
                self.run_once()
            except redis.RedisError as exc:
                log.warning("webhook delivery pass failed; retrying", error_type=type(exc).__name__)
                stop.wait(5 * POLL_SECONDS)
            except Exception as exc:
                log.error("webhook delivery pass crashed", error_type=type(exc).__name__, error=str(exc))
                stop.wait(5 * POLL_SECONDS)
            stop.wait(POLL_SECONDS)
        self.close()
        log.info("webhook delivery stopped")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._deliverer.close()


def build_loop(settings: Settings, client: redis.Redis) -> DeliveryLoop | None:
    """The loop, or None when webhooks are disabled (no secret)."""
    secret = settings.webhook_secret.get_secret_value()
    if not secret:
        return None
    deliverer = Deliverer(secret, settings.webhook_allowed_host_set, settings.webhook_allowed_port_set)
    return DeliveryLoop(WebhookOutbox(client), deliverer, settings.webhook_max_attempts)


def start(settings: Settings, client: redis.Redis, stop: threading.Event) -> threading.Thread | None:
    """Start the delivery thread (a daemon: SIGTERM's stop event ends it after the pass in flight)."""
    loop = build_loop(settings, client)
    if loop is None:
        log.info("webhooks disabled: no PORTRAITS_WEBHOOK_SECRET")
        return None
    thread = threading.Thread(target=loop.run, args=(stop,), name="webhook-delivery", daemon=True)
    thread.start()
    return thread

"""The gateway's time budget (issue 9), resolved from Settings once, in `Gateway.from_settings`, and handed to each
collaborator as it is.

Every dependency call on the request path is bounded, so a request answers, with a 503 and Retry-After if need
be, long before anything in front of it gives up (gunicorn's `gateway_timeout`: past it the client gets gunicorn's
HTML 500). Measured in tests/integration/gateway/test_gateway_budget.py: a status read during a Redis hang answers
in about `redis_timeout` (1.0 s), an upload in three of them (rate limiter, first write, one undo step: 3.0 s);
an upload during an S3 hang in `gateway_s3_max_attempts` × `gateway_s3_timeout` plus the store's backoff (about
3 s: obstore sends no `100 Continue` and retries no timed-out PUT, shared/storage.py). The worker and the janitor
keep their own, patient S3 budget (`s3_*`): they are not holding a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.backends import pool_for_threads
from shared.settings import S3Budget, Settings
from shared.source_keys import source_expected_seconds


@dataclass(frozen=True)
class GatewayBudget:
    s3: S3Budget  # the data path: sources' puts, erasures, presigning
    probe_s3: S3Budget  # /readyz: one quick attempt
    # The pool cap of every Redis client of the gateway (its own, the rate limiter's): each of a worker's
    # `gateway_threads` threads holds at most one connection at a time (redis-py 8 refuses the 101st by default).
    redis_max_connections: int
    # How long a source may stay "expected" (submission.py): its longest put, then the key's publication. Only a
    # gateway dying mid-upload makes a worker wait that long.
    source_expected_seconds: float
    body_seconds: float  # a request body's grace, then it must keep up `body_min_rate` bytes/s (bodies.py)
    body_min_rate: int

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayBudget:
        s3 = settings.s3_budget(for_="gateway")
        return cls(
            s3=s3,
            probe_s3=settings.s3_budget(for_="probe"),
            redis_max_connections=pool_for_threads(settings.gateway_threads),
            source_expected_seconds=source_expected_seconds(settings),
            body_seconds=settings.gateway_body_timeout,
            body_min_rate=settings.gateway_body_min_rate,
        )

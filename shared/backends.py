"""The backends every service and the tests talk to, built in one place (#12): the Redis client, the object
store, the source keys, the deletion schedule, the audit log, the eraser over them, and the job store.

One set of Redis timeouts, for every service: connect and read within `redis_timeout` (1 s by default),
and a timeout is final. redis-py 8 retries a timed-out command up to 10 times by default, so a hung Redis would
cost ten timeouts; here only a refused or reset connection (a restarted Redis, a stale pooled connection) is
retried, once and at once, which costs nothing while Redis hangs. The gateway's request budget needs exactly this
(issue 9, measured in tests/integration/gateway/test_gateway_budget.py); for the worker and the janitor a reply
that takes a second is an outage too, which they already treat as one: the worker retries the render (in its
process, then through the broker: services/worker/tasks.py) and the janitor retries its sweep next interval.
The one exception is a client that blocks on purpose: the live-progress stream's XREAD BLOCK waits up to a read
slice for news, so its socket timeout is that slice on top of the same budget (`blocking_redis_client`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.audit import AuditLog
from shared.deletion import DeletionSchedule, Eraser
from shared.jobs import JobStore
from shared.settings import Settings
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore


def redis_timeout(settings: Settings) -> float:
    """Seconds to connect to Redis and to wait for a reply, for every client of every service."""
    return settings.redis_timeout


def redis_options(settings: Settings, *, max_connections: int | None = None) -> dict[str, Any]:
    """The connection options of every Redis client (redis-py's keyword arguments; the gateway's rate limiter
    takes them as they are). `max_connections`: the pool's cap, for a client shared by many threads (redis-py 8
    caps a pool at 100 and answers the 101st with MaxConnectionsError)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": redis_timeout(settings),
        "socket_timeout": redis_timeout(settings),
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    return options


def pool_for_threads(threads: int) -> int:
    """A pool cap for a client shared by `threads` threads, each holding at most one connection at a time."""
    return threads + 8


def redis_client(settings: Settings, *, max_connections: int | None = None) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **redis_options(settings, max_connections=max_connections))


def blocking_redis_client(
    settings: Settings, block_seconds: float, *, max_connections: int | None = None
) -> redis.Redis:
    """A client for commands that block on purpose for up to `block_seconds` (XREAD BLOCK): its socket waits that
    long on top of the usual budget, so a block that ends empty is not mistaken for a hung Redis."""
    options = redis_options(settings, max_connections=max_connections)
    options["socket_timeout"] = block_seconds + redis_timeout(settings)
    return redis.Redis.from_url(settings.redis_url, **options)


@dataclass(frozen=True)
class Backends:
    """One service's (or test's) backends. `eraser` deletes from `storage` and forgets keys in `keys`, scheduling
    through `schedule` and recording in `audit`, all on `redis`."""

    settings: Settings
    redis: Redis  # `Redis`, not `redis.Redis`: inside the class body `redis` is this field
    storage: ObjectStore
    keys: SourceKeys
    schedule: DeletionSchedule
    audit: AuditLog
    eraser: Eraser
    jobs: JobStore

    @classmethod
    def connect(cls, settings: Settings, *, storage: ObjectStore | None = None, client: Redis | None = None) -> Self:
        """Every backend from `settings`; `storage` (the gateway's fail-fast store, a test's flaky one) and
        `client` replace the default object store and Redis client."""
        client = client if client is not None else redis_client(settings)
        storage = storage if storage is not None else ObjectStore(settings)
        keys = SourceKeys(
            client, settings.source_max_age_seconds, wait_step_seconds=min(0.5, redis_timeout(settings) / 2)
        )
        schedule = DeletionSchedule(client)
        audit = AuditLog(client, settings.audit_max_entries)
        return cls(
            settings=settings,
            redis=client,
            storage=storage,
            keys=keys,
            schedule=schedule,
            audit=audit,
            eraser=Eraser(storage, keys, schedule, audit),
            jobs=JobStore(client, settings.job_ttl_seconds),
        )

    def with_storage(self, storage: ObjectStore) -> Self:
        """The same Redis-side backends over another object store (the eraser deletes from that one)."""
        return replace(self, storage=storage, eraser=Eraser(storage, self.keys, self.schedule, self.audit))

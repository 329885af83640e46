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

Failover (#24): with `redis_sentinels` set, every client is a Sentinel-managed one (`redis_client`), which asks
the Sentinels for the primary at each new connection and drops a connection that finds its server demoted
(`READONLY`). With one URL whose primary is replaced behind it (a managed service's endpoint), a reset connection
is retried as above, and a `READONLY` reply — the old primary, still up but demoted — is treated the same way:
the connection is dropped and the command retried once on a fresh one, which reaches the new primary. The
broker (`shared/queue.py`) and the gateway's rate limiter (`limiter_storage`) take the same addresses. The Sentinels
are asked with `redis_url`'s credentials, as Flask-Limiter's storage does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

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
        # ReadOnlyError: a demoted primary behind one address (#24); Sentinel-managed connections turn it into a
        # ConnectionError themselves.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError, redis.ReadOnlyError)),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    return options


def pool_for_threads(threads: int) -> int:
    """A pool cap for a client shared by `threads` threads, each holding at most one connection at a time."""
    return threads + 8


def _url_options(settings: Settings) -> dict[str, Any]:
    return dict(parse_url(settings.redis_url))  # type: ignore[no-untyped-call]


def redis_database(settings: Settings) -> int:
    """`redis_url`'s database number as redis-py reads it (a `?db=` wins over the path)."""
    return int(_url_options(settings).get("db", 0))


def redis_credentials(settings: Settings) -> dict[str, Any]:
    """`redis_url`'s username and password (those it names), for Sentinel-managed clients and the Sentinels."""
    parsed = _url_options(settings)
    return {name: parsed[name] for name in ("username", "password") if parsed.get(name)}


def _client(settings: Settings, options: dict[str, Any]) -> redis.Redis:
    if not settings.redis_sentinel_addresses:
        return redis.Redis.from_url(settings.redis_url, **options)
    credentials = redis_credentials(settings)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinel_addresses),
        sentinel_kwargs={
            "socket_connect_timeout": redis_timeout(settings),
            "socket_timeout": redis_timeout(settings),
            **credentials,
        },
    )
    db = redis_database(settings)
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, db=db, **credentials, **options
    )
    return client


def redis_client(settings: Settings, *, max_connections: int | None = None) -> redis.Redis:
    """The Redis client of every service: `redis_url`'s server, or the primary the Sentinels name (#24)."""
    return _client(settings, redis_options(settings, max_connections=max_connections))


def blocking_redis_client(
    settings: Settings, block_seconds: float, *, max_connections: int | None = None
) -> redis.Redis:
    """A client for commands that block on purpose for up to `block_seconds` (XREAD BLOCK): its socket waits that
    long on top of the usual budget, so a block that ends empty is not mistaken for a hung Redis."""
    options = redis_options(settings, max_connections=max_connections)
    options["socket_timeout"] = block_seconds + redis_timeout(settings)
    return _client(settings, options)


def limiter_storage(settings: Settings, *, max_connections: int | None = None) -> tuple[str, dict[str, Any]]:
    """Flask-Limiter's `storage_uri` and `storage_options`: the same server (or Sentinels) and budget as
    `redis_client`. Its counters are read from the primary too (`use_replicas`), so a limit is never read stale."""
    options = redis_options(settings, max_connections=max_connections)
    if not settings.redis_sentinel_addresses:
        return settings.redis_url, options
    locations = ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in settings.redis_sentinel_addresses
    )
    options.update(
        db=redis_database(settings),
        use_replicas=False,
        sentinel_kwargs={"socket_connect_timeout": redis_timeout(settings), "socket_timeout": redis_timeout(settings)},
        **redis_credentials(settings),
    )
    return f"redis+sentinel://{locations}/{settings.redis_sentinel_master}", options


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

"""Every Redis client of ours through a failover (#24), against real redis-server processes: a Sentinel-managed
primary and replica (three Sentinels, quorum two), and one address whose primary is replaced behind it (a
managed service's endpoint: scripts/devstack/tcp_proxy.py). The clients are built once, before the failover;
none is rebuilt after it, as no service restarts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from scripts.devstack import LOOPBACK, RedisServer, start_redis
from scripts.devstack.redis_set import RedisSet, start_redis_set
from scripts.devstack.tcp_proxy import TcpProxy
from shared import replication
from shared.backends import limiter_storage, redis_client
from shared.jobs import Job, JobState, JobStore, now
from shared.queue import enqueue_render, make_celery
from shared.settings import Settings
from shared.source_keys import SourceKeys

pytestmark = pytest.mark.integration

QUEUE = "portraits-failover-test"
T = TypeVar("T")


@pytest.fixture
def redis_set(tmp_path: Path) -> Iterator[RedisSet]:
    servers = start_redis_set(tmp_path / "set", replicas=1, sentinels=3)
    try:
        yield servers
    finally:
        servers.kill_all()


def sentinel_settings(redis_set: RedisSet, **overrides: object) -> Settings:
    # The URL's host is ignored with Sentinels: only its database number (and credentials) count.
    values: dict[str, object] = {
        "redis_url": "redis://ignored.invalid:1/3",
        "redis_sentinels": redis_set.sentinel_list,
        "queue_name": QUEUE,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def until_it_works(call: Callable[[], T], timeout: float = 20.0) -> tuple[T, float, int]:
    """`call`'s result once it stops raising Redis or broker errors, the seconds that took, and the failures."""
    started, failures = time.monotonic(), 0
    while True:
        try:
            return call(), time.monotonic() - started, failures
        except Exception:
            failures += 1
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.1)


def a_job() -> Job:
    return Job(id=f"failover{int(time.time() * 1e6)}", state=JobState.QUEUED, created_at=now())


def kill_primary(redis_set: RedisSet) -> int:
    """SIGKILL the primary once the replica has everything; its port."""
    redis_set.wait_for_replicas(1)
    primary = redis_set.primary
    primary.kill()
    return primary.port


def test_a_sentinel_client_follows_the_failover_and_keeps_what_was_replicated(redis_set: RedisSet) -> None:
    settings = sentinel_settings(redis_set)
    client = redis_client(settings)
    jobs = JobStore(client, 3600)
    before = a_job()
    jobs.create(before)
    old = kill_primary(redis_set)

    after = a_job()
    _, window, failures = until_it_works(lambda: jobs.create(after))

    assert redis_set.wait_for_failover(old) < 1  # the write landed on the promoted replica: it is the primary
    assert jobs.get(before.id) == before and jobs.get(after.id) == after
    assert client.connection_pool.get_master_address()[1] != old  # type: ignore[attr-defined]
    assert window < 15, window  # down-after 1 s, then the Sentinels' vote and the promotion
    assert failures > 0  # it did see the outage: the same client came through it


def test_the_broker_sends_through_a_sentinel_failover(redis_set: RedisSet) -> None:
    settings = sentinel_settings(redis_set)
    celery = make_celery(settings)
    enqueue_render(celery, settings, "jobbefore")
    old = kill_primary(redis_set)

    until_it_works(lambda: enqueue_render(celery, settings, "jobafter"))

    redis_set.wait_for_failover(old)
    primary = redis.Redis(LOOPBACK, redis_set.primary.port, db=3)
    ids = [json.loads(raw)["headers"]["id"] for raw in primary.lrange(QUEUE, 0, -1)]
    assert sorted(ids) == ["jobafter", "jobbefore"]  # the task id is the job id (#24)


def test_the_rate_limiter_counts_through_a_sentinel_failover(redis_set: RedisSet) -> None:
    uri, options = limiter_storage(sentinel_settings(redis_set))
    assert uri.startswith("redis+sentinel://")
    limiter = FixedWindowRateLimiter(storage_from_string(uri, **options))
    limit = parse("5/minute")
    assert limiter.hit(limit, "visitor")
    old = kill_primary(redis_set)

    # A read that raises until the limiter's own Sentinel client finds the new primary (`storage.check()` only
    # returns False, and the Sentinels may name it a moment apart: CI saw MasterNotFoundError right after).
    redis_set.wait_for_failover(old)
    until_it_works(lambda: limiter.get_window_stats(limit, "visitor"))

    assert limiter.hit(limit, "visitor")
    remaining = limiter.get_window_stats(limit, "visitor").remaining
    assert remaining == 3  # the first hit was on the replica (kill_primary waits for it): it survived


def test_a_wait_for_one_replica_confirms_the_job_and_says_when_it_could_not(redis_set: RedisSet) -> None:
    client = redis_client(sentinel_settings(redis_set))
    keys = SourceKeys(client, 60)

    assert keys.publish("jobone", b"k" * 32, replicas=1, wait_ms=500) == 1

    replica_pid = redis_set.replicas()[0].process.pid
    assert replica_pid is not None
    os.kill(replica_pid, signal.SIGSTOP)  # a replica that stopped taking the stream
    try:
        started = time.monotonic()
        assert keys.publish("jobtwo", b"k" * 32, replicas=1, wait_ms=200) == 0
        assert 0.18 < time.monotonic() - started < 0.9  # the wait is bounded by its own timeout
    finally:
        os.kill(replica_pid, signal.SIGCONT)
    assert keys.publish("jobthree", b"k" * 32) is None  # no wait asked: no WAIT sent


# --------------------------------------------------------------------- one address, primary replaced behind it


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, TcpProxy]]:
    """A primary, its replica, and the one address (a proxy) the services are given, pointing at the primary."""
    primary = start_redis(tmp_path / "a")
    replica = start_redis(tmp_path / "b")
    redis.Redis(LOOPBACK, replica.port).replicaof(LOOPBACK, primary.port)
    proxy = TcpProxy(primary.port)
    try:
        yield primary, replica, proxy
    finally:
        proxy.close()
        primary.kill()
        replica.kill()


def settle(primary: RedisServer, timeout: float = 10.0) -> None:
    """Wait until the replica has everything the primary has."""
    client = redis.Redis(LOOPBACK, primary.port)
    client.set("probe", "1")
    deadline = time.monotonic() + timeout
    while int(client.wait(1, 100)) < 1:
        assert time.monotonic() < deadline, "the replica never caught up"


def test_one_address_whose_primary_is_killed_and_replaced(pair: tuple[RedisServer, RedisServer, TcpProxy]) -> None:
    primary, replica, proxy = pair
    settings = Settings(redis_url=proxy.url.replace("/0", "/2"), queue_name=QUEUE)
    client = redis_client(settings)
    jobs = JobStore(client, 3600)
    celery = make_celery(settings)
    before = a_job()
    jobs.create(before)
    enqueue_render(celery, settings, before.id)
    settle(primary)

    primary.kill()
    redis.Redis(LOOPBACK, replica.port).replicaof("NO", "ONE")  # the provider promotes the replica …
    proxy.retarget(replica.port, drop=True)  # … and moves the endpoint

    after = a_job()
    until_it_works(lambda: jobs.create(after), timeout=5)
    until_it_works(lambda: enqueue_render(celery, settings, after.id), timeout=5)
    assert jobs.get(before.id) == before and jobs.get(after.id) == after
    queue = redis.Redis(LOOPBACK, replica.port, db=2).lrange(QUEUE, 0, -1)
    assert sorted(json.loads(raw)["headers"]["id"] for raw in queue) == sorted([before.id, after.id])


def test_a_demoted_primary_answering_readonly_is_left_for_the_new_one_at_once(
    pair: tuple[RedisServer, RedisServer, TcpProxy],
) -> None:
    primary, replica, proxy = pair
    settings = Settings(redis_url=proxy.url.replace("/0", "/2"), queue_name=QUEUE)
    client = redis_client(settings)
    jobs = JobStore(client, 3600)
    celery = make_celery(settings)
    jobs.create(a_job())  # the pool now holds a connection to the old primary, through the proxy
    enqueue_render(celery, settings, "jobfirst")
    settle(primary)

    # The provider swaps roles and moves the endpoint, but the open connections stay on the old server.
    redis.Redis(LOOPBACK, replica.port).replicaof("NO", "ONE")
    redis.Redis(LOOPBACK, primary.port).replicaof(LOOPBACK, replica.port)
    proxy.retarget(replica.port, drop=False)

    after = a_job()
    jobs.create(after)  # READONLY on the pooled connection: dropped and retried once on a fresh one, no error
    _, _, failures = until_it_works(lambda: enqueue_render(celery, settings, "jobsecond"), timeout=5)

    assert failures <= 1  # kombu's publish is retried by the caller at most once (the gateway's retry policy)
    new_primary = redis.Redis(LOOPBACK, replica.port, db=2)
    assert new_primary.exists(JobStore.keys_for(after.id).record)
    assert any("jobsecond" in str(raw) for raw in new_primary.lrange(QUEUE, 0, -1))


def test_confirm_counts_the_replica_only_for_a_write_the_answering_server_holds(
    pair: tuple[RedisServer, RedisServer, TcpProxy],
) -> None:
    primary, replica, _ = pair
    settle(primary)
    client = redis.Redis(LOOPBACK, primary.port)
    client.hset("portraits:job:confirmed", "state", json.dumps("done"))

    def confirm(value: str, wait_ms: int = 500) -> int:
        return replication.confirm(client, 1, wait_ms, key="portraits:job:confirmed", field="state", value=value)

    assert confirm("done") == 1
    assert confirm("failed") == 0  # the server answering does not hold the write: a failover came between
    replica_pid = replica.process.pid
    assert replica_pid is not None
    os.kill(replica_pid, signal.SIGSTOP)
    try:
        assert confirm("done", wait_ms=100) == 0
    finally:
        os.kill(replica_pid, signal.SIGCONT)

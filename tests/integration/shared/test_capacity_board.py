"""The capacity board on a real Redis (#11): render processes report, gateways read the queue and the live
capacity in one round trip, stale and unreadable entries are pruned and never counted."""

from __future__ import annotations

import json

import pytest
import redis

from shared.capacity import EWMA_WEIGHT, Capacity, CapacityBoard
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore

CAPACITY_DB = 8
STALE = 30.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{CAPACITY_DB}")
    client.flushdb()
    return client


@pytest.fixture
def clock() -> Clock:
    return Clock()


def board(client: redis.Redis, clock: Clock, owner: str = "gateway:1") -> CapacityBoard:
    return CapacityBoard(client, STALE, owner=owner, clock=clock)


def entry(client: redis.Redis, owner: str) -> dict | None:
    raw = client.hget(CapacityBoard.KEY, owner)
    return json.loads(raw) if raw is not None else None


def test_a_process_reports_its_running_mean_per_job(client, clock):
    worker = board(client, clock, "host-a:11")
    worker.report_service(2.0, 1)
    assert entry(client, "host-a:11") == {"seconds_per_job": 2.0, "reported_at": clock.now}
    clock.now += 5
    worker.report_service(4.0, 2)  # a batch of two in 4 s: 2 s each, the mean stays
    worker.report_service(6.0, 1)
    expected = 2.0 + EWMA_WEIGHT * (6.0 - 2.0)
    assert entry(client, "host-a:11") == {"seconds_per_job": pytest.approx(expected), "reported_at": clock.now}
    capacity = board(client, clock).capacity()
    assert capacity.renderers == 1 and capacity.seconds_per_job == pytest.approx(expected)


def test_a_task_that_settled_no_job_reports_nothing(client, clock):
    board(client, clock, "host-a:11").report_service(0.01, 0)  # a skipped duplicate delivery
    assert client.hlen(CapacityBoard.KEY) == 0


def test_processes_pool_their_rates(client, clock):
    board(client, clock, "host-a:11").report_service(1.0, 1)
    board(client, clock, "host-b:12").report_service(3.0, 1)
    capacity = board(client, clock).capacity()
    assert capacity.renderers == 2 and capacity.seconds_per_job == pytest.approx(1.5)  # 1 + 1/3 jobs a second


def test_stale_reports_do_not_count_and_are_pruned(client, clock):
    board(client, clock, "host-a:11").report_service(1.0, 1)
    clock.now += STALE - 1
    board(client, clock, "host-b:12").report_service(2.0, 1)
    assert board(client, clock).capacity().renderers == 2
    clock.now += 2  # host-a's report is now older than the window
    assert board(client, clock).capacity() == Capacity(1, 2.0)
    assert client.hkeys(CapacityBoard.KEY) == [b"host-b:12"]
    clock.now += STALE + 1
    assert board(client, clock).capacity() == Capacity(0, 0.0)
    assert client.exists(CapacityBoard.KEY) == 0


def test_a_report_written_after_the_read_survives_the_prune(client, clock):
    worker = board(client, clock, "host-a:11")
    worker.report_service(1.0, 1)
    clock.now += STALE + 1
    reader = board(client, clock)
    stale = client.hgetall(CapacityBoard.KEY)
    worker.report_service(1.0, 1)  # the process reports again between the reader's read and its prune
    assert reader._live(stale, clock.now) == Capacity(0, 0.0)
    assert entry(client, "host-a:11")["reported_at"] == clock.now


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"seconds_per_job": "x", "reported_at": 1}',
        b'{"seconds_per_job": 0, "reported_at": 1000000}',
        b'{"seconds_per_job": Infinity, "reported_at": 1000000}',
        b'{"seconds_per_job": 1, "reported_at": NaN}',
    ],
)
def test_unreadable_or_impossible_entries_are_pruned_not_counted(client, clock, raw):
    client.hset(CapacityBoard.KEY, "host-x:1", raw)
    board(client, clock, "host-a:11").report_service(1.0, 1)
    assert board(client, clock).capacity() == Capacity(1, 1.0)
    assert client.hkeys(CapacityBoard.KEY) == [b"host-a:11"]


def test_a_redis_outage_does_not_fail_the_report(clock, redis_server):
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    worker = CapacityBoard(gone, STALE, owner="host-a:11", clock=clock)
    worker.report_service(1.0, 1)  # logged, not raised
    assert worker.seconds_per_job == 1.0  # the running mean goes on in the process
    with pytest.raises(redis.ConnectionError):
        worker.read(120)  # a gateway's read does raise: it answers 503 `unavailable`


def test_read_counts_the_jobs_still_within_the_photo_s_maximum_age(client, clock):
    jobs = JobStore(client, ttl_seconds=600)
    for age in (200, 119, 60, 0):  # 200 s: failing `source_expired`, or a record gone without leaving the queue
        jobs.create(Job(id=new_job_id(), state=JobState.QUEUED, created_at=clock.now - age))
    board(client, clock, "host-a:11").report_service(2.0, 1)
    reading = board(client, clock).read(120)
    assert reading.queued == 3
    assert reading.capacity == Capacity(1, 2.0)
    assert jobs.queued_count() == 4  # the sorted set itself still holds the old one

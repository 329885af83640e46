"""Held leases on a real Redis (#11): one keeper thread per process renews them all, and a lease released after
its last renewal is never reported lost."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shared.ids import new_job_id
from shared.leases import JobLeases
from tests.support.leases import hold_lease

pytestmark = pytest.mark.integration

LEASE_SECONDS = 0.3  # beats every 0.1 s


@pytest.fixture
def leases(client) -> JobLeases:
    return JobLeases(client, LEASE_SECONDS)


def keepers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "lease-keeper"]


def deadline(client: redis.Redis, job_id: str) -> float:
    return float(client.zscore(JobLeases.DEADLINES, job_id) or 0)


def test_one_thread_renews_every_held_lease(leases, client):
    jobs = [new_job_id(), new_job_id()]
    for job_id in jobs:
        hold_lease(client, job_id, "me", time.time() + LEASE_SECONDS)
    before = len(keepers())
    with leases.held(jobs[0], "me", time.time) as first, leases.held(jobs[1], "me", time.time) as second:
        taken = {job_id: deadline(client, job_id) for job_id in jobs}
        time.sleep(LEASE_SECONDS * 2)  # past the first deadlines: alive only if renewed
        assert all(deadline(client, job_id) > taken[job_id] for job_id in jobs)
        assert all(deadline(client, job_id) > time.time() for job_id in jobs)
        assert len(keepers()) <= before + 1  # one for this process's leases, not one per job
        assert not first.lost.is_set() and not second.lost.is_set()
    assert [leases.holder(job_id) for job_id in jobs] == [None, None]  # released after


def test_a_lease_taken_elsewhere_is_reported_lost(leases, client):
    job_id = new_job_id()
    hold_lease(client, job_id, "me", time.time() + LEASE_SECONDS)
    with leases.held(job_id, "me", time.time) as held:
        client.hset(JobLeases.OWNERS, job_id, "someone-else")
        assert held.lost.wait(timeout=LEASE_SECONDS * 3)


def test_releasing_while_a_renewal_is_due_never_reports_the_lease_lost(leases, client):
    """`remove` waits for a renewal in flight: one landing after the release would find the lease gone."""
    for _ in range(20):
        job_id = new_job_id()
        hold_lease(client, job_id, "me", time.time() + LEASE_SECONDS)
        with leases.held(job_id, "me", time.time) as held:
            time.sleep(LEASE_SECONDS / 3)  # about when a beat is due
        time.sleep(LEASE_SECONDS / 2)
        assert not held.lost.is_set()
        assert leases.holder(job_id) is None

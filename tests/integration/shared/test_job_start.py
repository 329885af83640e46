"""Starting a job in one Lua call on a real Redis (#11): state, lease, restart count and `processing` together, or
nothing changed at all."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from shared.crypto import new_key
from shared.ids import new_job_id
from shared.job_start import JobStarter, NotStarted, Started
from shared.jobs import Job, JobState, JobStore
from shared.leases import JobLeases
from shared.source_keys import SourceKeys
from tests.support.leases import hold_lease

pytestmark = pytest.mark.integration

OWNER = "this-host:100"
LEASE_SECONDS = 10.0


@pytest.fixture
def jobs(client) -> JobStore:
    return JobStore(client, ttl_seconds=600)


@pytest.fixture
def leases(client) -> JobLeases:
    return JobLeases(client, LEASE_SECONDS)


@pytest.fixture
def starter(client) -> JobStarter:
    return JobStarter(client, job_ttl_seconds=600, lease_seconds=LEASE_SECONDS)


def queued(jobs: JobStore, **fields: object) -> str:
    job_id = new_job_id()
    jobs.create(Job(id=job_id, state=JobState.QUEUED, created_at=time.time(), style_requested="auto", **fields))
    return job_id


def start(starter: JobStarter, job_id: str, *, owner: str = OWNER, extra: bool = False) -> Started | NotStarted:
    return starter.start(job_id, owner, time.time(), max_restarts=2, stage="fetch", extra=extra)


def held_by(jobs: JobStore, job_id: str, holder: str, *, restarts: int = 0) -> None:
    """The job as a render process left it: processing, leased to `holder` until well after now."""
    jobs.transition(job_id, JobState.PROCESSING, stage="generate", attempts=1, restarts=restarts)
    hold_lease(jobs.client, job_id, holder, time.time() + 30)


def test_a_queued_job_starts_in_one_call(jobs, leases, starter, client):
    job_id = queued(jobs)
    before = time.time()
    outcome = start(starter, job_id)
    assert isinstance(outcome, Started) and not outcome.restarted and outcome.previous == ""
    assert outcome.source_key is None  # not published yet: the worker waits for it (shared/source_keys.py)
    job = outcome.job
    assert (job.state, job.stage, job.attempts, job.restarts) == (JobState.PROCESSING, "fetch", 1, 0)
    assert job.started_at is not None and job.started_at >= before
    assert jobs.get(job_id) == job  # the record it answered is the record as stored
    assert leases.holder(job_id) == OWNER
    assert client.zscore(JobLeases.DEADLINES, job_id) == pytest.approx(job.started_at + LEASE_SECONDS)
    assert jobs.queue_position(job_id) is None  # left the queue index in the same step
    history = jobs.history(job_id)
    assert [(event.kind.value, event.state, event.stage) for event in history][-1] == (
        "transition",
        JobState.PROCESSING,
        "fetch",
    )


@pytest.mark.parametrize("end", [JobState.DONE, JobState.FAILED, JobState.DELETED])
def test_a_job_that_ended_is_not_started_nor_leased(jobs, leases, starter, end):
    job_id = queued(jobs)
    jobs.transition(job_id, JobState.PROCESSING)
    jobs.transition(job_id, end)
    assert start(starter, job_id) == NotStarted("ended", end.value)
    assert leases.holder(job_id) is None
    assert jobs.get(job_id).state is end


def test_a_job_without_a_record_is_gone(starter, leases):
    job_id = new_job_id()
    assert start(starter, job_id) == NotStarted("gone", "")
    assert leases.holder(job_id) is None


def test_a_job_leased_by_a_live_process_is_left_as_it_was(jobs, leases, starter):
    job_id = queued(jobs)
    held_by(jobs, job_id, "another-host:7")
    before = jobs.get(job_id)
    assert start(starter, job_id) == NotStarted("leased", "another-host:7")
    assert jobs.get(job_id) == before and leases.holder(job_id) == "another-host:7"


def test_a_rescued_job_counts_a_restart(jobs, leases, starter):
    job_id = queued(jobs)
    held_by(jobs, job_id, "rescue")
    outcome = start(starter, job_id)
    assert isinstance(outcome, Started) and outcome.restarted and outcome.previous == "rescue"
    assert (outcome.job.restarts, outcome.job.attempts, outcome.job.stage) == (1, 2, "fetch")


def test_its_own_lease_is_not_a_restart(jobs, leases, starter):
    """A retry of this process's own job (a transient error in the middle of its render) starts it again."""
    job_id = queued(jobs)
    held_by(jobs, job_id, OWNER)
    outcome = start(starter, job_id)
    assert isinstance(outcome, Started) and not outcome.restarted and outcome.job.restarts == 0


def test_a_job_restarted_too_often_is_worn_out_with_its_lease_taken(jobs, leases, starter):
    job_id = queued(jobs)
    held_by(jobs, job_id, "rescue", restarts=2)
    assert start(starter, job_id) == NotStarted("worn_out", "rescue")
    assert leases.holder(job_id) == OWNER  # so that failing it is ours to do
    job = jobs.get(job_id)
    assert (job.state, job.restarts, job.stage) == (JobState.PROCESSING, 2, "generate")


def test_the_lease_of_a_dead_render_process_of_this_host_is_taken_over(jobs, leases, starter):
    child = subprocess.Popen(["true"])
    child.wait()
    dead = f"{socket.gethostname()}:{child.pid}"
    job_id = queued(jobs)
    held_by(jobs, job_id, dead)
    outcome = start(starter, job_id)
    assert isinstance(outcome, Started) and outcome.previous == dead and outcome.restarted
    assert leases.holder(job_id) == OWNER


def test_a_batch_takes_along_only_queued_jobs_whose_source_is_stored(jobs, leases, starter, client):
    keys = SourceKeys(client, ttl_seconds=60)
    waiting = queued(jobs)  # its source still being stored: no key yet
    assert start(starter, waiting, extra=True) == NotStarted("not_ready", "queued")
    assert leases.holder(waiting) is None and jobs.get(waiting).state is JobState.QUEUED
    key = new_key()
    keys.store(waiting, key)
    taken = start(starter, waiting, extra=True)
    assert isinstance(taken, Started) and taken.source_key == key  # the key comes with the start
    running = queued(jobs)
    keys.store(running, new_key())
    held_by(jobs, running, "rescue")
    assert start(starter, running, extra=True) == NotStarted("not_ready", "processing")

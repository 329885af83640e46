"""Job records on a real Redis: the state machine is enforced atomically and records expire."""

from __future__ import annotations

import pytest
import redis

from shared.ids import new_job_id
from shared.jobs import ALLOWED, Job, JobNotFound, JobState, JobStore, TransitionRefused, now


@pytest.fixture
def store(redis_server) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=60)


def queued(store: JobStore) -> Job:
    job = Job(id=new_job_id(), state=JobState.QUEUED, created_at=now(), style_requested="ink", strength=0.5)
    store.create(job)
    return job


def test_round_trip_and_ttl(store, redis_server):
    job = queued(store)
    assert store.get(job.id) == job
    assert 0 < redis.Redis.from_url(redis_server.url).ttl(store.key(job.id)) <= 60
    assert store.get(new_job_id()) is None


def test_happy_path_sets_fields(store):
    job = queued(store)
    assert store.queue_position(job.id) is not None
    store.transition(job.id, JobState.PROCESSING, started_at=1.0, attempts=1)
    assert store.queue_position(job.id) is None
    store.transition(job.id, JobState.DONE, style="sumi-e", timings={"detect": 0.05})
    done = store.get(job.id)
    assert done.state is JobState.DONE and done.style == "sumi-e" and done.timings == {"detect": 0.05}
    assert done.strength == 0.5 and done.attempts == 1


def test_redelivery_may_restart_processing(store):
    job = queued(store)
    store.transition(job.id, JobState.PROCESSING, attempts=1)
    store.transition(job.id, JobState.PROCESSING, attempts=2)
    assert store.get(job.id).attempts == 2


@pytest.mark.parametrize("terminal", [JobState.DONE, JobState.FAILED])
def test_finished_jobs_cannot_go_back(store, terminal):
    job = queued(store)
    store.transition(job.id, JobState.PROCESSING)
    store.transition(job.id, terminal)
    with pytest.raises(TransitionRefused) as refused:
        store.transition(job.id, JobState.PROCESSING)
    assert refused.value.current is terminal
    assert store.get(job.id).state is terminal  # nothing was written


def test_queued_cannot_jump_to_done(store):
    job = queued(store)
    with pytest.raises(TransitionRefused):
        store.transition(job.id, JobState.DONE)


def test_missing_job(store):
    with pytest.raises(JobNotFound):
        store.transition(new_job_id(), JobState.PROCESSING)


def test_machine_has_no_exit_from_deleted_or_expired():
    assert not ALLOWED[JobState.DELETED] and not ALLOWED[JobState.EXPIRED]
    assert all(JobState.DELETED in ALLOWED[s] for s in (JobState.QUEUED, JobState.PROCESSING, JobState.DONE))


def test_queue_entries_of_vanished_jobs_are_pruned(store):
    stale = Job(id=new_job_id(), state=JobState.QUEUED, created_at=now() - 10_000)
    fresh = queued(store)
    store.create(stale)
    store.prune_queue(older_than=now() - 5_000)
    assert store.queue_position(stale.id) is None and store.queue_position(fresh.id) is not None

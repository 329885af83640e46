"""Each job's event stream (shared/events.py, #10): written by JobStore with every change, atomically, in order,
expiring with the record and erased with it."""

from __future__ import annotations

import pytest
import redis

from shared import events
from shared.events import EventKind, JobEvent
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore, TransitionRefused, now


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, ttl_seconds=60)


def queued(store: JobStore) -> str:
    job_id = new_job_id()
    store.create(Job(id=job_id, state=JobState.QUEUED, created_at=now()))
    return job_id


def summary(store: JobStore, job_id: str) -> list[tuple[EventKind, JobState, str | None]]:
    return [(event.kind, event.state, event.stage) for event in store.history(job_id)]


def test_every_change_is_an_event_in_order(store: JobStore, client: redis.Redis) -> None:
    job_id = queued(store)
    store.transition(job_id, JobState.PROCESSING, attempts=1, stage="fetch")
    store.set_stage(job_id, "detect")
    store.transition(job_id, JobState.DONE, stage=None, style="ink")
    assert summary(store, job_id) == [
        (EventKind.CREATED, JobState.QUEUED, None),
        (EventKind.TRANSITION, JobState.PROCESSING, "fetch"),
        (EventKind.STAGE, JobState.PROCESSING, "detect"),
        (EventKind.TRANSITION, JobState.DONE, None),
    ]
    history = store.history(job_id)
    assert store.snapshot(job_id).last_event_id == history[-1].id
    assert store.follow(job_id, history[1].id).events == history[2:]
    assert all(isinstance(event, JobEvent) and event.at > 0 for event in history)


def test_refused_changes_write_no_event(store: JobStore, client: redis.Redis) -> None:
    job_id = queued(store)
    with pytest.raises(TransitionRefused):
        store.transition(job_id, JobState.DONE)
    store.set_stage(job_id, "detect")  # not processing: ignored
    assert summary(store, job_id) == [(EventKind.CREATED, JobState.QUEUED, None)]
    assert store.get(job_id).stage is None


def test_a_stage_for_an_erased_job_does_not_bring_it_back(store: JobStore, client: redis.Redis) -> None:
    job_id = queued(store)
    store.transition(job_id, JobState.PROCESSING, stage="fetch")
    store.delete(job_id)
    store.set_stage(job_id, "generate")  # a worker still painting
    assert not client.exists(store.key(job_id)) and not client.exists(events.key(job_id))


def test_the_stream_expires_with_the_record_and_is_capped(store: JobStore, client: redis.Redis) -> None:
    job_id = queued(store)
    client.pexpire(store.key(job_id), 30_000)  # less time left than at creation
    store.transition(job_id, JobState.PROCESSING, stage="fetch")
    assert abs(client.pttl(events.key(job_id)) - client.pttl(store.key(job_id))) < 50
    for n in range(events.MAXLEN + 10):
        store.set_stage(job_id, f"stage-{n}")
    assert client.xlen(events.key(job_id)) == events.MAXLEN
    assert abs(client.pttl(events.key(job_id)) - client.pttl(store.key(job_id))) < 50

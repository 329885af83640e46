"""The job state machine's states and the transitions it allows (shared/jobs.py applies them atomically in Redis).
A module of its own so that the event log (shared/events.py), which the job store writes through, can name the
states without importing the store (#23: they imported each other)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DELETED = "deleted"
    EXPIRED = "expired"


ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PROCESSING, JobState.FAILED, JobState.DELETED, JobState.EXPIRED}),
    # processing → processing: a task redelivered after its worker died starts over.
    JobState.PROCESSING: frozenset(
        {JobState.PROCESSING, JobState.DONE, JobState.FAILED, JobState.DELETED, JobState.EXPIRED}
    ),
    JobState.DONE: frozenset({JobState.DELETED, JobState.EXPIRED}),
    JobState.FAILED: frozenset({JobState.DELETED, JobState.EXPIRED}),
    JobState.DELETED: frozenset(),
    JobState.EXPIRED: frozenset(),
}
TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.DELETED, JobState.EXPIRED})

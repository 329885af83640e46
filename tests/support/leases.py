"""A job's lease written as a render process leaves it, for tests that need one held (the worker takes leases only
inside the start script, shared/job_start.py)."""

from __future__ import annotations

import redis

from shared.leases import JobLeases


def hold_lease(client: redis.Redis, job_id: str, owner: str, until: float) -> None:
    """`owner` holds the job's lease until `until` (epoch seconds)."""
    client.hset(JobLeases.OWNERS, job_id, owner)
    client.zadd(JobLeases.DEADLINES, {job_id: until})

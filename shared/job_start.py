"""Starting a job in one round trip (#11): look at its state, take its lease, count a restart, move it to
`processing` and read the record back, in one Lua call.

A render process used to make three: the record read, the lease (shared/leases.py), and later the transition
(shared/jobs.py). That meant three hand-offs of the GIL on every job's path while its source was being fetched
beside them, and two windows in which another delivery or a DELETE could come between the look and the step
taken on it. The script calls the same Lua functions as those stores (`acquire`, `transition`, `record`), so each
rule is still written once.

    started    the lease is ours and the job `processing`: `Started.job` is the record as it is now, and
               `Started.source_key` the source's key if the gateway has published it (shared/crypto.py)
    gone       no record (expired, or erased by its owner)
    ended      finished, failed, deleted or expired: a redelivery of a job already over
    not_ready  a job a batch wanted to take along is no longer queued, or its source is still being stored
    leased     another live render process holds it
    worn_out   the lease is ours, but the job's renders were cut short `max_restarts` times: fail it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import redis

from shared import crypto, events, jobs, leases
from shared.jobs import Job, JobState, JobStore, sources_of
from shared.logging import get_logger
from shared.redis_replies import text

log = get_logger("portraits.jobs")

# KEYS: 1 the job hash, 2 its stream, 3 the queue index, 4 lease deadlines, 5 lease owners, 6 the source's key.
# ARGV: 1 job id, 2 owner, 3 lease deadline, 4 now, 5 a holder that may be replaced (''), 6 most restarts,
# 7 '1' for a job a batch takes along, 8 the states `processing` may be entered from, 9 started_at (JSON),
# 10 the stage (JSON), 11 the stream's fallback TTL in ms.
_START = (
    events.LUA_RECORD
    + jobs.LUA_TRANSITION
    + leases.LUA_ACQUIRE
    + """
local raw = redis.call('HGET', KEYS[1], 'state')
if not raw then return {'gone', ''} end
local state = cjson.decode(raw)
if not string.find(',' .. ARGV[8] .. ',', ',' .. state .. ',', 1, true) then return {'ended', state} end
if ARGV[7] == '1' and (state ~= 'queued' or redis.call('EXISTS', KEYS[6]) == 0) then return {'not_ready', state} end
local lease = acquire(KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if lease[1] == 0 then return {'leased', lease[2]} end
local previous = lease[2]
-- Still `processing` under someone else's name: the render before this one died with its worker.
local restarted = state == 'processing' and previous ~= ARGV[2]
local restarts = tonumber(redis.call('HGET', KEYS[1], 'restarts') or '0')
if restarted then restarts = restarts + 1 end
if restarts > tonumber(ARGV[6]) then return {'worn_out', previous} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
transition(ARGV[8], '"processing"', ARGV[11], ARGV[1], {
  'started_at', ARGV[9], 'attempts', tostring(attempts), 'restarts', tostring(restarts), 'stage', ARGV[10]})
return {'started', previous, restarted and 1 or 0, redis.call('HGETALL', KEYS[1]),
  redis.call('LINDEX', KEYS[6], 0) or ''}
"""
)

Reason = Literal["gone", "ended", "not_ready", "leased", "worn_out"]


@dataclass(frozen=True)
class Started:
    job: Job  # processing, with this start's `started_at`, `attempts` and `restarts`
    previous: str  # the lease's holder before ('' for none)
    restarted: bool  # the job was processing under another holder: its render died with its worker
    source_key: bytes | None  # the key of the job's sealed source, None while it is still being stored (or gone)


@dataclass(frozen=True)
class NotStarted:
    reason: Reason
    detail: str  # the state (`ended`, `not_ready`), or the lease's holder (`leased`, `worn_out`)


class JobStarter:
    def __init__(self, client: redis.Redis, job_ttl_seconds: int, lease_seconds: float) -> None:
        self._script = client.register_script(_START)
        self._ttl_ms = job_ttl_seconds * 1000
        self._lease_seconds = lease_seconds
        self._from = ",".join(sorted(sources_of(JobState.PROCESSING)))

    def start(
        self, job_id: str, owner: str, now: float, *, max_restarts: int, stage: str, extra: bool = False
    ) -> Started | NotStarted:
        """Start the job for `owner` at `now` (its `started_at`). `extra`: a queued job a batch takes along, left
        alone unless it is still queued and its source stored. A lease held by a render process of this host
        that no longer exists (killed and replaced) is taken over at once instead of waiting for it to lapse."""
        outcome = self._run(job_id, owner, now, max_restarts, stage, extra, replaceable="")
        if (
            isinstance(outcome, NotStarted)
            and outcome.reason == "leased"
            and leases.is_dead_local_owner(outcome.detail)
        ):
            dead = outcome.detail
            outcome = self._run(job_id, owner, now, max_restarts, stage, extra, replaceable=dead)
            if isinstance(outcome, Started):
                log.info("lease taken over from a dead render process", job_id=job_id, previous=dead)
        return outcome

    def _run(
        self, job_id: str, owner: str, now: float, max_restarts: int, stage: str, extra: bool, replaceable: str
    ) -> Started | NotStarted:
        reply = self._script(
            keys=[
                JobStore.KEY_PREFIX + job_id,
                events.key(job_id),
                JobStore.QUEUE_KEY,
                leases.JobLeases.DEADLINES,
                leases.JobLeases.OWNERS,
                crypto.SourceKeys.KEY_PREFIX + job_id,
            ],
            args=[
                job_id,
                owner,
                now + self._lease_seconds,
                now,
                replaceable,
                max_restarts,
                "1" if extra else "0",
                self._from,
                json.dumps(now),
                json.dumps(stage),
                self._ttl_ms,
            ],
        )
        status = text(reply[0])
        if status == "started":
            job = Job.from_redis(_pairs(reply[3]))
            return Started(job=job, previous=text(reply[1]), restarted=int(reply[2]) == 1, source_key=reply[4] or None)
        if status not in _REASONS:
            raise ValueError(f"unexpected reply from the start script: {status!r}")
        return NotStarted(_REASONS[status], text(reply[1]))


_REASONS: dict[str, Reason] = {
    "gone": "gone",
    "ended": "ended",
    "not_ready": "not_ready",
    "leased": "leased",
    "worn_out": "worn_out",
}


def _pairs(flat: list[bytes]) -> dict[bytes | str, bytes | str]:
    """HGETALL inside a script answers a flat list: field, value, field, value…"""
    return dict(zip(flat[0::2], flat[1::2]))

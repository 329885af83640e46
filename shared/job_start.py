"""Starting a job in one round trip (#11): look at its state, take its lease, count a restart, move it to
`processing` and read the record back, in one Lua call.

One call rather than three (the record read, the lease, the transition): no hand-off of the GIL on the job's path
while its source is being fetched beside it, and no window in which another delivery or a DELETE comes between
the look and the step taken on it. The script calls the same Lua functions as the stores (`acquire`,
`transition`, `record`), so each rule is written once, and takes its keys from them.

    started    the lease is ours and the job `processing`: `Started.job` is the record as it is now, and
               `Started.source_key` the source's key if the gateway has published it (shared/source_keys.py)
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

from shared import events, jobs, leases
from shared.jobs import Job, JobState, JobStore, lua_names, lua_values, sources_of
from shared.logging import get_logger
from shared.redis_replies import text
from shared.source_keys import SourceKeys

log = get_logger("portraits.jobs")

# The script's KEYS and ARGV by name, in the order they are passed (`lua_names`, `lua_values`). KEYS: the job's
# (JobKeys: record, events, queue), the leases' and the source key's. ARGV: `owner` takes the lease until
# `deadline` unless another holder than `replaceable` ('' for none) has it; `extra` is '1' for a job a batch takes
# along; `allowed` the states `processing` may be entered from; `started_at` and `stage` as JSON; `fallback_ms`
# the stream's TTL should the record have none.
_KEYS = (*jobs.JobKeys._fields, "lease_deadlines", "lease_owners", "source")
_ARGS = (
    "job_id",
    "owner",
    "deadline",
    "now",
    "replaceable",
    "max_restarts",
    "extra",
    "allowed",
    "started_at",
    "stage",
    "fallback_ms",
)
_START = (
    events.LUA_RECORD
    + jobs.LUA_TRANSITION
    + leases.LUA_ACQUIRE
    + lua_names("key", "KEYS", _KEYS)
    + lua_names("argv", "ARGV", _ARGS)
    + """
local raw = redis.call('HGET', key.record, 'state')
if not raw then return {'gone', ''} end
local state = cjson.decode(raw)
if not string.find(',' .. argv.allowed .. ',', ',' .. state .. ',', 1, true) then return {'ended', state} end
if argv.extra == '1' and (state ~= 'queued' or redis.call('EXISTS', key.source) == 0) then
  return {'not_ready', state}
end
local lease = acquire(key.lease_deadlines, key.lease_owners, argv.job_id, argv.owner, argv.deadline, argv.now,
  argv.replaceable)
if lease[1] == 0 then return {'leased', lease[2]} end
local previous = lease[2]
-- Still `processing` under someone else's name: the render before this one died with its worker.
local restarted = state == 'processing' and previous ~= argv.owner
local restarts = tonumber(redis.call('HGET', key.record, 'restarts') or '0')
if restarted then restarts = restarts + 1 end
if restarts > tonumber(argv.max_restarts) then return {'worn_out', previous} end
local attempts = tonumber(redis.call('HGET', key.record, 'attempts') or '0') + 1
-- `key` holds the job's keys under JobKeys's names, as `transition` reads them.
transition(key, argv.allowed, '"processing"', argv.fallback_ms, argv.job_id, {
  'started_at', argv.started_at, 'attempts', tostring(attempts), 'restarts', tostring(restarts), 'stage', argv.stage})
return {'started', previous, restarted and 1 or 0, redis.call('HGETALL', key.record),
  redis.call('LINDEX', key.source, 0) or ''}
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
        job_keys = JobStore.keys_for(job_id)
        lease = leases.JobLeases.KEYS
        keys = lua_values(
            _KEYS,
            record=job_keys.record,
            events=job_keys.events,
            queue=job_keys.queue,
            lease_deadlines=lease.deadlines,
            lease_owners=lease.owners,
            source=SourceKeys.key_of(job_id),
        )
        args = lua_values(
            _ARGS,
            job_id=job_id,
            owner=owner,
            deadline=now + self._lease_seconds,
            now=now,
            replaceable=replaceable,
            max_restarts=max_restarts,
            extra="1" if extra else "0",
            allowed=self._from,
            started_at=json.dumps(now),
            stage=json.dumps(stage),
            fallback_ms=self._ttl_ms,
        )
        reply = self._script(keys=keys, args=args)
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

"""Jobs: an explicit state machine and their records in Redis (with TTLs; never Celery's result backend).

    queued ──▶ processing ──▶ done
       │            │  ▲ (redelivery)
       │            ▼  │
       └──────────▶ failed            any state ──▶ deleted (user erasure) | expired (TTL)

A transition is one atomic Lua call that checks the current state, so two workers (a redelivery racing a slow
original) or a worker racing a DELETE can never move a job along a path the machine does not allow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

import redis
from redis.typing import EncodableT, FieldT

from shared import events
from shared.job_states import ALLOWED as ALLOWED
from shared.job_states import TERMINAL as TERMINAL
from shared.job_states import JobState as JobState
from shared.logging import get_logger
from shared.redis_replies import members, stream_entries, text, xread_entries

log = get_logger("portraits.jobs")


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which `target` may be entered."""
    return frozenset(state for state, targets in ALLOWED.items() if target in targets)


class JobNotFound(LookupError):
    pass


class UnknownJobField(TypeError):
    """A transition named a field `Job` does not have (a typo, or a field removed): refused before anything is
    written, since `from_redis` would drop it without a word (#12)."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(f"not fields a transition may set: {', '.join(sorted(names))}")
        self.names = frozenset(names)


class TransitionRefused(RuntimeError):
    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id}: {current} → {target} is not allowed")
        self.current, self.target = current, target


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    created_at: float
    style_requested: str = "auto"
    strength: float | None = None
    stage: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # renders started (retries after transient errors included)
    restarts: int = 0  # renders cut short by a worker that died (#9): bounded by `job_max_restarts`
    style: str | None = None
    family: str | None = None
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The face recogniser's photo-to-portrait distance (#21): kept with the job and in the logs, never shown
    # to the user, whose reason says in words what it decided.
    identity_distance: float | None = None
    result_key: str | None = None
    result_expires_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    # The public gallery (#10): consent, and — only until the worker has published the copy — its random id and
    # the withdraw token's hash. Never part of the public view of the job.
    share: bool = False
    gallery_id: str | None = None
    gallery_token_hash: str | None = None
    # Where to POST the signed webhook when the job ends (#10); checked at submit, never in the public view,
    # and kept only as long as the record itself.
    callback_url: str | None = None

    # Field names already logged as unknown by `from_redis`, so each is logged once per process.
    _unknown_seen: ClassVar[set[str]] = set()

    def to_redis(self) -> dict[FieldT, EncodableT]:
        return {name: json.dumps(value) for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[bytes | str, bytes | str]) -> Job:
        """The job a record holds. A field this version does not know is skipped, not an error, and logged once
        per name and process (#12): during a rolling upgrade a newer gateway may write a field an older worker
        has never heard of, and that worker must still paint the job rather than fail every read of it. A name
        that keeps being logged after an upgrade has finished is a bug (`transition` refuses unknown names, so
        only a writer that bypasses it can cause one)."""
        values: dict[str, Any] = {text(key): json.loads(value) for key, value in raw.items()}
        values["state"] = JobState(values["state"])
        unknown = set(values) - JOB_FIELDS
        if unknown - cls._unknown_seen:
            cls._unknown_seen.update(unknown)
            log.warning("job record has fields this version does not know; skipped", fields=sorted(unknown))
        return cls(**{key: value for key, value in values.items() if key in JOB_FIELDS})


JOB_FIELDS = frozenset(spec.name for spec in fields(Job))
# What a transition may set: any field but the id (the key) and the state (the transition's target).
SETTABLE_FIELDS = JOB_FIELDS - {"id", "state"}


class JobKeys(NamedTuple):
    """A job's keys, in the order its scripts take them as KEYS; the scripts name them after these fields."""

    record: str  # the job's hash
    events: str  # its event stream (shared/events.py)
    queue: str  # the index of queued jobs, one for all


_Value = TypeVar("_Value", bound=EncodableT)


def lua_names(table: str, source: str, names: Sequence[str]) -> str:
    """A Lua line that names a script's KEYS or ARGV by position, `local job = {record = KEYS[1], …}`: the script
    reads `job.record`, and the caller passes values in the order of `names`, so the two cannot disagree."""
    pairs = ", ".join(f"{name} = {source}[{position}]" for position, name in enumerate(names, start=1))
    return f"local {table} = {{{pairs}}}\n"


def lua_values(names: Sequence[str], **values: _Value) -> list[_Value]:
    """`values` in the order `lua_names` gave `names` their positions; a name missing or left over raises."""
    if set(values) != set(names):
        raise TypeError(f"script values {sorted(values)} are not the names {sorted(names)}")
    return [values[name] for name in names]


# A Lua function: `transition(job, allowed, target, fallback_ms, job_id, pairs)` with `job` the table of the job's
# keys (`JobKeys`'s fields), `allowed` the comma-separated states it may leave, `target` the state (JSON-encoded),
# `fallback_ms` the stream's TTL should the hash have none, `pairs` a table of field/value pairs. Returns {"ok"}
# or {"refused", current} or {"missing"}. The event is appended inside it (#10), so a client following the stream
# sees every transition that happened and none that was refused, in the order Redis applied them. A job leaving
# `queued` leaves the queue index in the same step, so no batch sees a processing job among the queued ones.
# shared/job_start.py calls it too, inside the script that starts a job.
LUA_TRANSITION = """
local function transition(job, allowed, target, fallback_ms, job_id, pairs)
  local current = redis.call('HGET', job.record, 'state')
  if not current then return {'missing'} end
  local bare = cjson.decode(current)
  if not string.find(',' .. allowed .. ',', ',' .. bare .. ',', 1, true) then return {'refused', bare} end
  redis.call('HSET', job.record, 'state', target, unpack(pairs))
  record(job, 'transition', cjson.decode(target), fallback_ms)
  if target ~= '"queued"' then redis.call('ZREM', job.queue, job_id) end
  return {'ok'}
end
"""

_JOB = lua_names("job", "KEYS", JobKeys._fields)
# ARGV: the named ones, then the field/value pairs.
_TRANSITION_ARGS = ("allowed", "target", "fallback_ms", "job_id")
_TRANSITION = (
    events.LUA_RECORD
    + LUA_TRANSITION
    + _JOB
    + lua_names("argv", "ARGV", _TRANSITION_ARGS)
    + f"""
local pairs = {{unpack(ARGV, {len(_TRANSITION_ARGS) + 1})}}
return transition(job, argv.allowed, argv.target, argv.fallback_ms, argv.job_id, pairs)
"""
)

# ARGV[1] the stage (JSON-encoded); ARGV[2] fallback TTL in ms. A Lua script rather than MULTI because it must read
# the hash (does it exist, what state) before writing: a stage reported for a job that was erased meanwhile must
# not recreate its record (a hash holding only `stage`, with no TTL), nor add an event after the job's last one.
_SET_STAGE = (
    events.LUA_RECORD
    + _JOB
    + """
local current = redis.call('HGET', job.record, 'state')
if not current then return 0 end
local bare = cjson.decode(current)
if bare ~= 'processing' then return 0 end
redis.call('HSET', job.record, 'stage', ARGV[1])
record(job, 'stage', bare, ARGV[2])
return 1
"""
)


@dataclass(frozen=True)
class Snapshot:
    """A job's record and its stream's newest entry, read together."""

    job: Job | None  # None: no record (never created, erased or expired)
    last_event_id: str | None  # None: no entry (the stream is gone with the record)


@dataclass(frozen=True)
class Progress:
    """One read of a job's stream, with the record and the queue rank as they were once the read returned."""

    events: tuple[events.JobEvent, ...]
    # The record's raw fields, empty when it is gone: parsed only when needed (`job`), which is once per job.
    record: Mapping[bytes | str, bytes | str]
    state: JobState | None  # the record's state; None when it is gone
    queue_rank: int | None  # 0-based place among queued jobs; None when not queued

    def job(self) -> Job | None:
        return Job.from_redis(self.record) if self.record else None


class JobStore:
    """Job records as Redis hashes, one JSON value per field, expiring `ttl_seconds` after creation."""

    KEY_PREFIX = "portraits:job:"
    QUEUE_KEY = "portraits:queued"  # sorted set of queued ids by enqueue time, for queue positions

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._transition = client.register_script(_TRANSITION)
        self._set_stage = client.register_script(_SET_STAGE)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def key(self, job_id: str) -> str:
        return self.KEY_PREFIX + job_id

    @classmethod
    def keys_for(cls, job_id: str) -> JobKeys:
        """The keys a script about this job takes (shared/job_start.py's among them)."""
        return JobKeys(record=cls.KEY_PREFIX + job_id, events=events.key(job_id), queue=cls.QUEUE_KEY)

    def create(self, job: Job, pipe: redis.client.Pipeline | None = None) -> None:
        """Record a new job; with `pipe`, queue the writes in that MULTI instead (the gateway's upload, #11)."""
        # MULTI is enough here (nothing to read first): the record and its stream's first entry appear together,
        # with the same TTL (#10).
        if pipe is not None:
            self._queue_create(pipe, job)
            return
        with self._redis.pipeline(transaction=True) as own:
            self._queue_create(own, job)
            own.execute()

    def _queue_create(self, pipe: redis.client.Pipeline, job: Job) -> None:
        pipe.hset(self.key(job.id), mapping=job.to_redis())
        pipe.expire(self.key(job.id), self._ttl)
        created: dict[FieldT, EncodableT] = {"kind": events.EventKind.CREATED.value, "state": job.state.value}
        pipe.xadd(
            events.key(job.id),
            created | ({"stage": json.dumps(job.stage)} if job.stage else {}),
            maxlen=events.MAXLEN,
            approximate=False,
        )
        pipe.expire(events.key(job.id), self._ttl)
        pipe.zadd(self.QUEUE_KEY, {job.id: job.created_at})

    def get(self, job_id: str) -> Job | None:
        raw = self._redis.hgetall(self.key(job_id))
        return Job.from_redis(raw) if raw else None

    def transition(self, job_id: str, target: JobState, **changes: Any) -> None:
        """Move the job to `target` and set `changes` (fields of `Job`), atomically, if the machine allows it
        from here. A name that is not a settable field of `Job` raises `UnknownJobField` before Redis is asked."""
        unknown = set(changes) - SETTABLE_FIELDS
        if unknown:
            raise UnknownJobField(unknown)
        allowed = ",".join(sorted(sources_of(target)))
        pairs: list[str] = []
        for name, value in changes.items():
            pairs += [name, json.dumps(value)]
        named = lua_values(
            _TRANSITION_ARGS,
            allowed=allowed,
            target=json.dumps(target.value),
            fallback_ms=self._ttl * 1000,
            job_id=job_id,
        )
        outcome = self._transition(keys=list(self.keys_for(job_id)), args=[*named, *pairs])
        status = text(outcome[0])
        if status == "missing":
            raise JobNotFound(job_id)
        if status == "refused":
            raise TransitionRefused(job_id, JobState(text(outcome[1])), target)

    def set_stage(self, job_id: str, stage: str) -> None:
        """Progress within `processing`, recorded with its event; ignored for a job no longer processing (done,
        failed, erased or expired meanwhile)."""
        self._set_stage(keys=list(self.keys_for(job_id)), args=[json.dumps(stage), self._ttl * 1000])

    def forget_gallery(self, job_id: str) -> None:
        """Drop the gallery id and token hash once the copy is published (or given up): from then on nothing
        links the job to its gallery entry (#10)."""
        self._redis.hdel(self.key(job_id), "gallery_id", "gallery_token_hash")

    def delete(self, job_id: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(job_id), events.key(job_id))  # the stream goes with the record (#10)
            pipe.zrem(self.QUEUE_KEY, job_id)
            pipe.execute()

    def history(self, job_id: str) -> tuple[events.JobEvent, ...]:
        """Every entry of the job's stream, oldest first."""
        entries = stream_entries(self._redis.xrange(events.key(job_id)))
        return tuple(events.JobEvent.from_entry(entry_id, fields) for entry_id, fields in entries)

    def snapshot(self, job_id: str) -> Snapshot:
        """The record and the stream's newest id, in one MULTI so that they agree."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(events.key(job_id), count=1)
            pipe.hgetall(self.key(job_id))
            newest, raw = pipe.execute()
        entries = stream_entries(newest)
        last_event_id = entries[0][0].decode() if entries else None
        return Snapshot(job=Job.from_redis(raw) if raw else None, last_event_id=last_event_id)

    def follow(self, job_id: str, after: str, *, block_ms: int | None = None, count: int = 32) -> Progress:
        """The stream's entries after `after` (a stream id; "0-0" for all), waiting up to `block_ms` for the first,
        then the record and the queue rank as they are once the read returned: one round trip (#11).

        Redis answers a connection's commands in order and holds those behind a blocked XREAD until it returns, so
        the record is never older than the entries: a follower that sees the job's last entry has its final record
        without a read of its own. Use a store on a client whose socket timeout outlasts `block_ms`
        (shared/backends.py's `blocking_redis_client`)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xread({events.key(job_id): after}, count=count, block=block_ms)
            pipe.hgetall(self.key(job_id))
            pipe.zrank(self.QUEUE_KEY, job_id)
            reply, raw, rank = pipe.execute()
        state = raw.get(b"state")
        return Progress(
            events=tuple(events.JobEvent.from_entry(entry_id, fields) for entry_id, fields in xread_entries(reply)),
            record=raw,
            state=JobState(json.loads(state)) if state else None,
            queue_rank=int(rank) if rank is not None else None,
        )

    def queue_position(self, job_id: str) -> int | None:
        """0-based place among queued jobs (approximate: ids of expired jobs are pruned lazily)."""
        rank: int | None = self._redis.zrank(self.QUEUE_KEY, job_id)  # type: ignore[assignment]  # without WITHSCORE: the rank
        return int(rank) if rank is not None else None

    def oldest_queued(self, limit: int) -> list[str]:
        """Ids of the `limit` longest-waiting queued jobs (the candidates a render process batches, #11)."""
        return [text(raw) for raw in members(self._redis.zrange(self.QUEUE_KEY, 0, limit - 1))]

    def queued_count(self) -> int:
        return int(self._redis.zcard(self.QUEUE_KEY))

    @classmethod
    def count_queued_since(cls, pipe: redis.client.Pipeline, since: float) -> None:
        """Queue in `pipe` the count of queue entries enqueued at `since` (epoch s) or later, for a caller that
        reads it with other things in one round trip (the gateway's load shedding)."""
        pipe.zcount(cls.QUEUE_KEY, since, "+inf")

    def prune_queue(self, older_than: float) -> int:
        """Drop queue entries older than `older_than` (epoch s): jobs that expired without leaving the queue."""
        return int(self._redis.zremrangebyscore(self.QUEUE_KEY, "-inf", older_than))


def now() -> float:
    return time.time()

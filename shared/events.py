"""A job's progress as a Redis Stream, `portraits:events:<job id>`: what the gateway's live progress route
(GET /v1/portraits/<id>/events, #10) follows.

JobStore (shared/jobs.py) appends an entry on every change it makes — the job's creation, every transition,
every stage — inside the same Lua script (or MULTI) that makes the change, so a reader can never see a state
the stream has not recorded or an event for a change that did not happen. Each entry says what the job is
*now* (`state`, and `stage` as stored in the record), not what changed, so a reader can act on any single
entry. The stream is capped (`MAXLEN`) and expires with the job record (same remaining TTL), and JobStore's
`delete` removes it with the record: nothing about an erased job is left behind.

The Redis stream id (`<ms>-<seq>`) is the event's id, which the gateway sends as the SSE `id:`; a client's
`Last-Event-ID` is therefore a position in this stream, and resuming is an XREAD from it. Reading goes through
JobStore too (`history`, `snapshot`, `follow`): a reader wants the record along with the entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from shared.job_states import JobState

KEY_PREFIX = "portraits:events:"
# Entries per job: created, processing, seven stages and an end is ~10; a job restarted twice after its worker
# died (`job_max_restarts`) writes ~30. Older entries only matter to a client resuming from long ago, and it is
# told where the job is now anyway (the gateway re-reads the record), so a small cap is enough.
MAXLEN = 64
# ASCII digits only (`\d` also takes other scripts' digits), matched whole (`$` lets a trailing newline by, #25).
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def key(job_id: str) -> str:
    return KEY_PREFIX + job_id


def is_event_id(value: str) -> bool:
    """A syntactically valid stream id (`<ms>-<seq>`), e.g. from a client's `Last-Event-ID`."""
    return _STREAM_ID.fullmatch(value) is not None


class EventKind(StrEnum):
    CREATED = "created"
    TRANSITION = "transition"
    STAGE = "stage"


@dataclass(frozen=True)
class JobEvent:
    id: str  # the Redis stream id; the SSE `id:`
    kind: EventKind
    state: JobState  # the job's state once the change was made
    stage: str | None  # the job's stage once the change was made (null outside `processing`)

    @property
    def at(self) -> float:
        """When it was written (epoch seconds, Redis's clock: the stream id's millisecond part)."""
        return int(self.id.split("-", 1)[0]) / 1000

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> JobEvent:
        raw_stage = fields.get(b"stage")
        stage = json.loads(raw_stage) if raw_stage else None
        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            kind=EventKind(fields[b"kind"].decode()),
            state=JobState(fields[b"state"].decode()),
            stage=stage if isinstance(stage, str) else None,
        )


# A Lua function JobStore's scripts call after changing a job's hash, to append to its stream:
# `record(job, kind, state, fallback_ms)` with `job` the table of the job's keys (`job.record`, `job.events`: see
# JobKeys in shared/jobs.py) and `state` the bare (JSON-decoded) state. The stage is copied from the hash as its
# raw JSON. The stream then gets the hash's remaining TTL, so both expire together; `fallback_ms` covers a
# record without a TTL (there should be none), so no stream is ever left without one.
LUA_RECORD = f"""
local function record(job, kind, state, fallback_ms)
  local fields = {{'kind', kind, 'state', state}}
  local stage = redis.call('HGET', job.record, 'stage')
  if stage then
    fields[#fields + 1] = 'stage'
    fields[#fields + 1] = stage
  end
  local id = redis.call('XADD', job.events, 'MAXLEN', {MAXLEN}, '*', unpack(fields))
  local ttl = redis.call('PTTL', job.record)
  if ttl <= 0 then ttl = tonumber(fallback_ms) end
  redis.call('PEXPIRE', job.events, ttl)
  return id
end
"""

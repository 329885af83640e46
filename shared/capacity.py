"""Load shedding (#11): how long a new upload would wait, and whether it could be painted in time.

A stored photo is deleted `source_max_age_seconds` (120 s) after its upload, painted or not, and its job then
fails `source_expired`: an upload accepted beyond what the workers can paint in that time only fails two minutes
later. So each render process reports how long its jobs take on a board in Redis, and the gateway refuses an
upload (503 `overloaded`, Retry-After) whose estimated wait plus one render would outlast `shed_wait_fraction` of
that maximum age.

    portraits:renderers  hash  owner (`host:pid` of a render process) → {"seconds_per_job": …, "reported_at": …}

The board only holds what each process measured; the arithmetic is in `estimate_wait` and `decide`, pure
functions. Capacity comes from processes that reported within `renderer_stale_seconds`: a process reports after
every job, so a busy one is always fresh, and one that stopped reporting is idle, stuck or gone; its entry is
pruned by the next reader. Clocks: `reported_at` is the render host's wall clock, compared with the gateway's,
as job deadlines already are.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from shared.jobs import JobStore
from shared.leases import process_owner
from shared.logging import get_logger
from shared.redis_replies import hash_fields

log = get_logger("portraits.capacity")

#: Weight of the newest job in a process's running mean: a change of speed (another style mix, a throttled GPU)
#: shows within a few jobs, and one odd photo moves the mean by less than a third of its own excess.
EWMA_WEIGHT = 0.3
#: Retry-After bounds on a shed upload: at least a second, and never so long that a client gives up on a queue
#: that drains in seconds on a GPU.
RETRY_AFTER_MIN_SECONDS = 1
RETRY_AFTER_MAX_SECONDS = 60
#: Floor of a reported time per job, so a pooled rate (1/s) is always finite.
MIN_SECONDS_PER_JOB = 0.001

# KEYS[1] the board; ARGV pairs of owner and the exact value the reader judged stale. An entry is deleted only if
# it still holds that value, so a process that reported again in between keeps its fresh report.
_PRUNE = """
local pruned = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    pruned = pruned + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return pruned
"""


@dataclass(frozen=True)
class Capacity:
    """The render processes that reported recently, and their pooled time per job: `renderers` processes
    together finish `renderers / seconds_per_job` jobs a second (0.0 when there are none)."""

    renderers: int
    seconds_per_job: float

    def __post_init__(self) -> None:
        if self.renderers < 0 or (self.renderers > 0) != (self.seconds_per_job > 0):
            raise ValueError(f"inconsistent capacity: {self}")

    @classmethod
    def pooled(cls, seconds_per_job: Iterable[float]) -> Capacity:
        """Processes of different speeds add their rates (1/s each): the pooled time per job is their harmonic
        mean, so one slow process lowers the estimate by its share of the work, not by the mean of the times."""
        times = list(seconds_per_job)
        if not times:
            return cls(0, 0.0)
        return cls(len(times), len(times) / sum(1.0 / seconds for seconds in times))


@dataclass(frozen=True)
class Admit:
    estimated_wait: float | None  # None: no render process reported, so there was nothing to estimate from


@dataclass(frozen=True)
class Shed:
    estimated_wait: float
    retry_after: int  # seconds until the queue should have drained enough, if nothing else arrived


def estimate_wait(queued_ahead: int, capacity: Capacity) -> float:
    """Seconds until a new upload's render starts: the jobs queued ahead of it, at the rate all live render
    processes together finish jobs. Jobs already being painted are not counted; they are the noise that
    `shed_wait_fraction` leaves room for."""
    if capacity.renderers < 1:
        raise ValueError("no render process to estimate a wait from")
    return max(0, queued_ahead) * capacity.seconds_per_job / capacity.renderers


def decide(queued_ahead: int, capacity: Capacity, max_seconds: float) -> Admit | Shed:
    """Admit an upload whose estimated wait plus one render fits in `max_seconds`; shed it otherwise.

    With no render process reporting, the upload is admitted: there is no evidence its wait is too long. That
    is the state of an idle deployment (a process reports only after a job), of workers still loading their
    models, and of a gateway with no workers at all (tests, `scripts/sse_load.py`); shedding there would keep
    the queue empty and the processes idle, so the board would never fill again. All workers dead is the one
    case this lets through as before (jobs then fail `source_expired`): the NoWorkers alert covers it."""
    if capacity.renderers == 0:
        return Admit(None)
    wait = estimate_wait(queued_ahead, capacity)
    excess = wait + capacity.seconds_per_job - max_seconds
    if excess <= 0:
        return Admit(wait)
    # The queue drains at the pool's rate, so after `excess` seconds (nothing else arriving) it would fit.
    return Shed(wait, min(RETRY_AFTER_MAX_SECONDS, max(RETRY_AFTER_MIN_SECONDS, math.ceil(excess))))


@dataclass(frozen=True)
class Reading:
    """What the gateway reads before admitting an upload: one round trip."""

    queued: int  # jobs waiting whose photos are still within their maximum age
    capacity: Capacity


class CapacityBoard:
    """The board of render processes: they write (`report_service`), gateways read (`read`)."""

    KEY = "portraits:renderers"

    def __init__(
        self,
        client: redis.Redis,
        stale_seconds: float = 30.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._stale_seconds = stale_seconds
        self.owner = owner or process_owner()
        self._clock = clock
        self._prune = client.register_script(_PRUNE)
        self.seconds_per_job: float | None = None  # this process's running mean, once it has painted

    # ------------------------------------------------------------------------------------ render processes

    def report_service(self, seconds: float, jobs: int) -> None:
        """After a task: `seconds` it held this process, `jobs` it settled (painted or failed; a batch settles
        several, a skipped duplicate none). Never raises for Redis: a report is not worth failing a job over,
        and a missed one only makes this process count a little later."""
        if jobs < 1:
            return  # nothing settled: nothing learnt about the time a queued job takes
        sample = max(seconds / jobs, MIN_SECONDS_PER_JOB)
        previous = self.seconds_per_job
        self.seconds_per_job = sample if previous is None else previous + EWMA_WEIGHT * (sample - previous)
        entry = json.dumps({"seconds_per_job": round(self.seconds_per_job, 4), "reported_at": self._clock()})
        try:
            self._redis.hset(self.KEY, self.owner, entry)
        except redis.RedisError as exc:
            log.warning("capacity report failed", error_type=type(exc).__name__, error=str(exc))

    # ------------------------------------------------------------------------------------------- gateways

    def read(self, max_age_seconds: float) -> Reading:
        """The queue ahead of a new upload and the live capacity, in one pipelined round trip; stale entries are
        pruned on the way (a second trip, only when there are some). Redis errors propagate: the gateway
        answers them 503 `unavailable` like every other outage."""
        now = self._clock()
        with self._redis.pipeline(transaction=False) as pipe:
            # Jobs queued longer than a photo may live are failing `source_expired` or already gone (an entry
            # whose record expired stays until the janitor prunes it): they do not stand in front of anyone.
            JobStore.count_queued_since(pipe, now - max_age_seconds)
            pipe.hgetall(self.KEY)
            queued, entries = pipe.execute()
        return Reading(int(queued), self._live(hash_fields(entries), now))

    def capacity(self) -> Capacity:
        return self._live(hash_fields(self._redis.hgetall(self.KEY)), self._clock())

    def _live(self, entries: dict[bytes, bytes], now: float) -> Capacity:
        live: list[float] = []
        stale: list[bytes] = []
        for owner, raw in entries.items():
            try:
                entry = json.loads(raw)
                seconds, reported_at = float(entry["seconds_per_job"]), float(entry["reported_at"])
            except (ValueError, KeyError, TypeError):
                log.warning("capacity entry unreadable; pruned", owner=owner.decode(errors="replace"))
                stale += [owner, raw]
                continue
            # Written the other way round, NaN and infinity (which JSON can carry) count as stale too.
            if not (now - reported_at <= self._stale_seconds and MIN_SECONDS_PER_JOB <= seconds < math.inf):
                stale += [owner, raw]
            else:
                live.append(seconds)
        if stale:
            self._prune(keys=[self.KEY], args=stale)
        return Capacity.pooled(live)

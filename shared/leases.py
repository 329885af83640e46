"""Job leases: how a job whose worker vanished is found and painted again within the privacy window (issue 9).

Celery hands an unacknowledged task to another worker only after the broker's visibility timeout (300 s), but a
photo lives at most 120 s: a job whose whole worker died (SIGKILL, OOM, node loss, Redis restart) always failed
`source_expired` (3 of 3 in the issue's trials). So the render process *leases* the job while it paints and
renews the lease every few seconds; the janitor's sweep finds leases that lapsed and sends the job again.

    portraits:leases        sorted set  job id → lease deadline (epoch s)
    portraits:lease-owners  hash        job id → owner (`host:pid` of the render process, or `rescue`)

An owner is a render process, named `host:pid`, so a process can tell that a lease held on its own host by a
pid that no longer exists is dead (a render process SIGKILLed and replaced) and take it over at once instead
of waiting for it to lapse. After a rescue the owner is `rescue` with a fresh deadline: any delivery may take
it, and if none does before that deadline the job is sent again (duplicates are harmless: the job state
machine lets only one delivery finish it, and a worker that lost its lease discards its render).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import redis

from shared.logging import get_logger
from shared.redis_replies import optional_text

log = get_logger("portraits.leases")

RESCUE_OWNER = "rescue"
Clock = Callable[[], float]

# A Lua function: `acquire(deadlines, owners, id, owner, deadline, now, replaceable)` takes the job's lease for
# `owner` until `deadline` unless a live holder has it; `replaceable` is a holder that may be replaced even before
# its deadline ('' for none). Returns {1, the previous holder or ''} when taken, else {0, the holder}.
# shared/job_start.py calls it inside the script that starts a job (#11: the worker's only way to take a lease).
LUA_ACQUIRE = """
local function acquire(deadlines, owners, id, owner, deadline, now, replaceable)
  local holder = redis.call('HGET', owners, id)
  local until_ = tonumber(redis.call('ZSCORE', deadlines, id) or '0')
  if holder and holder ~= owner and holder ~= 'rescue' and holder ~= replaceable and until_ > tonumber(now) then
    return {0, holder}
  end
  redis.call('HSET', owners, id, owner)
  redis.call('ZADD', deadlines, deadline, id)
  return {1, holder or ''}
end
"""
# Renew only while we still hold it. Returns 1 when renewed, 0 when the lease is someone else's (or gone).
_RENEW = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

# ARGV[1] now, ARGV[2] limit, ARGV[3] the rescue deadline. Hands each lapsed lease to `rescue` and returns the ids.
_CLAIM_LAPSED = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(lapsed) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  redis.call('HSET', KEYS[2], id, 'rescue')
end
return lapsed
"""


def process_owner() -> str:
    """This process's name as a lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local_owner(owner: str) -> bool:
    """True for a render process on this host that no longer exists (so its lease can be taken at once)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class LeaseKeys(NamedTuple):
    """The two keys every lease lives in, in the order the lease scripts take them as KEYS."""

    deadlines: str
    owners: str


class JobLeases:
    DEADLINES = "portraits:leases"
    OWNERS = "portraits:lease-owners"
    KEYS = LeaseKeys(deadlines=DEADLINES, owners=OWNERS)  # for a script of another store that takes a lease

    def __init__(self, client: redis.Redis, lease_seconds: float) -> None:
        self._redis = client
        self.lease_seconds = lease_seconds
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM_LAPSED)
        self._keeper = _Keeper(lease_seconds / 3)  # three beats per lease period: two can be missed before it lapses

    @property
    def _keys(self) -> list[str]:
        return list(self.KEYS)

    def renew(self, job_id: str, owner: str, now: float, extra_seconds: float = 0.0) -> bool:
        """Push the deadline on; False when the lease is no longer ours (rescued elsewhere, or released)."""
        deadline = now + self.lease_seconds + extra_seconds
        return bool(self._renew(keys=self._keys, args=[job_id, owner, deadline]))

    def release(self, job_id: str, owner: str) -> None:
        self._release(keys=self._keys, args=[job_id, owner])

    def drop(self, job_id: str) -> None:
        """Forget a lease whoever holds it (the job ended while it was being rescued)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.DEADLINES, job_id)
            pipe.hdel(self.OWNERS, job_id)
            pipe.execute()

    def holder(self, job_id: str) -> str | None:
        return optional_text(self._redis.hget(self.OWNERS, job_id))

    def claim_lapsed(self, now: float, limit: int, rescue_seconds: float) -> list[str]:
        """Ids of jobs whose lease lapsed, each handed to `rescue` until `now + rescue_seconds`."""
        ids = self._claim(keys=self._keys, args=[now, limit, now + rescue_seconds])
        return [raw.decode() for raw in ids]

    def count(self) -> int:
        return int(self._redis.zcard(self.DEADLINES))

    @contextmanager
    def held(self, job_id: str, owner: str, clock: Clock) -> Iterator[Held]:
        """Renew the (already acquired) lease while the body runs; release it after.

        Renewed from a background thread, because the render holds the process for seconds in torch (which
        releases the GIL): one thread for every lease this process holds (`_Keeper`). Renewal errors (Redis
        briefly away) are logged and retried on the next beat; a renewal refused means the lease was rescued
        elsewhere, and the body learns it from `Held.lost` before it writes anything.
        """
        held = Held(self, job_id, owner, clock)
        self._keeper.add(held)
        try:
            yield held
        finally:
            self._keeper.remove(held)
        # Released only when the body finished the job. After an error (a transient one the task retries) the
        # lease stays: if this process dies before the retry, the lease lapses and the job is rescued.
        try:
            self.release(job_id, owner)
        except redis.RedisError as exc:  # it lapses on its own; a rescue then finds the job finished
            log.warning("lease release failed", job_id=job_id, error=str(exc))


class Held:
    """A lease being renewed; `lost` is set once a renewal is refused."""

    def __init__(self, leases: JobLeases, job_id: str, owner: str, clock: Clock) -> None:
        self._leases, self.job_id, self.owner, self._clock = leases, job_id, owner, clock
        self.lost = threading.Event()

    def extend(self, seconds: float) -> bool:
        """Hold the lease `seconds` longer than usual (a retry waiting out an outage)."""
        return self._renew(extra=seconds)

    def beat(self) -> None:
        self._renew()

    def _renew(self, extra: float = 0.0) -> bool:
        try:
            if self._leases.renew(self.job_id, self.owner, self._clock(), extra):
                return True
            if not self.lost.is_set():
                log.warning("lease lost: the job was rescued elsewhere", job_id=self.job_id)
            self.lost.set()
            return False
        except redis.RedisError as exc:
            log.warning("lease renewal failed; retrying", job_id=self.job_id, error=str(exc))
            return True


class _Keeper:
    """One thread that renews every lease its process holds, each `period` seconds.

    One for all, so that no job's path starts or joins a thread (each a hand-off of the GIL while the job's source
    is being fetched beside its claim). It starts with the first lease (after the fork, in a render process) and
    sleeps while none is held."""

    def __init__(self, period: float) -> None:
        self._period = period
        self._held: dict[int, Held] = {}
        self._changed = threading.Condition()
        self._beating = threading.Lock()  # held during a round of renewals: `remove` waits for one in flight
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, held: Held) -> None:
        with self._changed:
            self._held[id(held)] = held
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # a thread does not survive a fork: the child starts its own
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, held: Held) -> None:
        """Stop renewing `held`; returns once no renewal of it is in flight, so a release that follows is never
        followed by a renewal (which would find the lease gone and call it lost)."""
        with self._changed:
            self._held.pop(id(held), None)
        with self._beating:
            pass

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._held:
                    self._changed.wait()
            time.sleep(self._period)
            with self._beating:
                with self._changed:
                    helds = list(self._held.values())
                for held in helds:
                    held.beat()

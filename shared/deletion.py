"""Deletion you can prove: every stored object is scheduled for deletion *before* it is written, and every
deletion goes through one `Eraser` that deletes, verifies, and audits exactly once.

The schedule is one Redis sorted set per object kind, scored by deadline, so the janitor pops what is due
instead of listing buckets. `claim_due` leases what it returns (an atomic Lua call), so several janitor
replicas never work on the same object at once; and whoever removes an entry from the schedule — worker,
user erasure or janitor — is the one that writes its audit record, so no object is reported deleted twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from prometheus_client import Histogram

from shared.audit import AuditEntry, AuditLog, Deleter, ObjectKind
from shared.claims import CLAIM_DUE
from shared.redis_replies import scored_members
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore, StorageUnavailable, job_id_of

_LIFETIME_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600, 7200)
SOURCE_LIFETIME = Histogram(
    "portraits_source_lifetime_seconds", "Upload stored → source deleted.", ["deleted_by"], buckets=_LIFETIME_BUCKETS
)
RESULT_LIFETIME = Histogram(
    "portraits_result_lifetime_seconds",
    "Portrait stored → portrait deleted.",
    ["deleted_by"],
    buckets=_LIFETIME_BUCKETS,
)
# Gallery copies live up to 30 days (#10): buckets in hours and days.
GALLERY_LIFETIME = Histogram(
    "portraits_gallery_lifetime_seconds",
    "Gallery copy stored → deleted (withdrawn or expired).",
    ["deleted_by"],
    buckets=(60, 3600, 21600, 86400, 7 * 86400, 14 * 86400, 28 * 86400, 30 * 86400, 31 * 86400, 60 * 86400),
)
_LIFETIMES = {
    ObjectKind.SOURCE: SOURCE_LIFETIME,
    ObjectKind.RESULT: RESULT_LIFETIME,
    ObjectKind.GALLERY: GALLERY_LIFETIME,
}


@dataclass(frozen=True)
class Tracked:
    kind: ObjectKind
    key: str  # object key in the kind's bucket
    job_id: str
    created_at: float
    attempts: int = 0  # failed deletions so far


class DeletionUnverified(StorageUnavailable):
    """The object was still there after the delete (retried later, like an unreachable store)."""


class DeletionSchedule:
    PREFIX = "portraits:deletions:"
    META = "portraits:deletions:meta"
    # Scored by creation time, which — unlike a deadline — no lease or retry ever moves: ages come from here.
    BORN_PREFIX = "portraits:deletions:born:"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(CLAIM_DUE)

    def _zset(self, kind: ObjectKind) -> str:
        return self.PREFIX + kind.value

    def _born(self, kind: ObjectKind) -> str:
        return self.BORN_PREFIX + kind.value

    @staticmethod
    def _field(kind: ObjectKind, key: str) -> str:
        return f"{kind.value}:{key}"

    def add(self, tracked: Tracked, deadline: float, pipe: redis.client.Pipeline | None = None) -> None:
        """Put the entry on the schedule (or move its deadline); with `pipe`, queue it in that MULTI instead."""
        if pipe is not None:
            self._queue_add(pipe, tracked, deadline)
            return
        with self._redis.pipeline(transaction=True) as own:
            self._queue_add(own, tracked, deadline)
            own.execute()

    def _queue_add(self, pipe: redis.client.Pipeline, tracked: Tracked, deadline: float) -> None:
        meta = json.dumps({"job_id": tracked.job_id, "created_at": tracked.created_at, "attempts": tracked.attempts})
        pipe.hset(self.META, self._field(tracked.kind, tracked.key), meta)
        pipe.zadd(self._zset(tracked.kind), {tracked.key: deadline})
        pipe.zadd(self._born(tracked.kind), {tracked.key: tracked.created_at}, nx=True)

    def get(self, kind: ObjectKind, key: str) -> Tracked | None:
        raw = self._redis.hget(self.META, self._field(kind, key))
        if raw is None:
            return None
        meta = json.loads(raw)
        return Tracked(kind, key, meta["job_id"], meta["created_at"], meta.get("attempts", 0))

    def contains(self, kind: ObjectKind, key: str) -> bool:
        return self._redis.zscore(self._zset(kind), key) is not None

    def remove(self, kind: ObjectKind, key: str) -> Tracked | None:
        """Take the entry off the schedule; returns it only to the one caller that actually removed it."""
        tracked = self.get(kind, key)
        if not self._redis.zrem(self._zset(kind), key):
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.META, self._field(kind, key))
            pipe.zrem(self._born(kind), key)
            pipe.execute()
        return tracked or Tracked(kind, key, job_id="unknown", created_at=time.time())

    def claim_due(self, kind: ObjectKind, now: float, limit: int, lease_seconds: float) -> list[Tracked]:
        """Due entries, each hidden from other claimers for `lease_seconds` (retried then if still there)."""
        members = self._claim(keys=[self._zset(kind)], args=[now, limit, now + lease_seconds])
        claimed = []
        for member in members:
            key = member.decode()
            tracked = self.get(kind, key)
            claimed.append(tracked or Tracked(kind, key, job_id=job_id_of(key), created_at=now))
        return claimed

    def retry_later(self, tracked: Tracked, when: float) -> None:
        """After a failed deletion: count the attempt and push the deadline back (only if still scheduled)."""
        again = Tracked(tracked.kind, tracked.key, tracked.job_id, tracked.created_at, tracked.attempts + 1)
        if self.contains(tracked.kind, tracked.key):
            self.add(again, when)

    def oldest_created(self, kind: ObjectKind) -> float | None:
        """Creation time of the oldest object still stored (not yet erased)."""
        first = scored_members(self._redis.zrange(self._born(kind), 0, 0, withscores=True))
        return first[0][1] if first else None

    def overdue(self, kind: ObjectKind, now: float, max_age: float) -> int:
        """Objects still stored although older than `max_age` (leases and retries do not hide them)."""
        return int(self._redis.zcount(self._born(kind), "-inf", now - max_age))

    def size(self, kind: ObjectKind) -> int:
        return int(self._redis.zcard(self._zset(kind)))


class Eraser:
    """Delete an object, verify it is gone, shred a source's key, and audit it — once."""

    def __init__(self, storage: ObjectStore, keys: SourceKeys, schedule: DeletionSchedule, audit: AuditLog) -> None:
        self._storage = storage
        self._keys = keys
        self.schedule = schedule
        self._audit = audit

    def bucket(self, kind: ObjectKind) -> str:
        # Gallery copies share the results bucket, under their own prefix (`gallery/`).
        return self._storage.sources_bucket if kind is ObjectKind.SOURCE else self._storage.results_bucket

    def list_objects(self, kind: ObjectKind, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified epoch seconds) of every stored object of this kind."""
        return self._storage.list(self.bucket(kind), prefix)

    def track(
        self,
        kind: ObjectKind,
        key: str,
        job_id: str,
        created_at: float,
        max_age: float,
        pipe: redis.client.Pipeline | None = None,
    ) -> None:
        """Schedule an object's deletion; call it *before* writing the object, so no write goes unscheduled.
        With `pipe`, the schedule is queued in that MULTI: the write must then wait for its `execute()`."""
        self.schedule.add(Tracked(kind, key, job_id, created_at), created_at + max_age, pipe)

    def erase(self, kind: ObjectKind, key: str, job_id: str, deleted_by: Deleter, reason: str) -> AuditEntry | None:
        """Returns the audit entry, or None when someone else already erased (and audited) this object.
        Raises `StorageUnavailable` or `DeletionUnverified`; the schedule entry then stays for a retry."""
        bucket = self.bucket(kind)
        self._storage.delete(bucket, key)
        if kind is ObjectKind.SOURCE:
            self._keys.delete(job_id)  # crypto-shred: any copy that escaped is now unreadable
        if self._storage.exists(bucket, key):
            raise DeletionUnverified(f"{kind.value} {key} still exists after delete")
        tracked = self.schedule.remove(kind, key)
        if tracked is None:
            return None
        entry = AuditEntry(
            job_id=job_id,
            kind=kind,
            created_at=tracked.created_at,
            deleted_at=time.time(),
            deleted_by=deleted_by,
            reason=reason,
            verified=True,
        )
        self._audit.record(entry)
        _LIFETIMES[kind].labels(deleted_by=deleted_by.value).observe(entry.lifetime)
        return entry

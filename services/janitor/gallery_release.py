"""The gallery's daily release (#25): every copy that became ready before the last UTC midnight is listed at once.

A copy listed when its portrait was done could be matched with the job's `done` event or webhook, which anyone
holding the job's id or callback sees. Released together, a day's copies say only their day: in a shuffled
order, each public copy is scheduled for deletion at the day's removal deadline (the same for the whole batch)
and then copied server-side from its staging key (so its Last-Modified is the release, not the render); then one
Redis call lists every copied entry still ready; then the staged copies go through the Eraser.

A release cut short (S3 down) lists nothing and is redone by the next sweep: the copies are idempotent, and only
entries still ready are listed. Replicas take turns under a lock; should two overlap, each entry is listed once
and only an entry withdrawn meanwhile has its public copy erased.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import redis

from shared.audit import Deleter, ObjectKind
from shared.deletion import Eraser
from shared.gallery import GalleryEntry, GalleryIndex, ReleaseOutcome, day_of, day_start, object_key, staging_key
from shared.logging import get_logger
from shared.storage import ObjectMissing, ObjectStore, StorageUnavailable

log = get_logger("portraits.janitor")

RELEASE_LOCK = "portraits:janitor:gallery-release-lock"
RELEASE_LOCK_SECONDS = 300
# From the OS's generator: an order no one can replay from the ids.
_SHUFFLE = random.SystemRandom().shuffle
# A staged copy whose erasure failed after its release is tried again this much later (by the sweep).
ERASE_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class ReleaseReport:
    day: str  # YYYY-MM-DD, UTC: the day the released entries show
    listed: int
    dropped: int  # withdrawn while being released, or their staged copy was lost


class GalleryRelease:
    def __init__(
        self,
        client: redis.Redis,
        storage: ObjectStore,
        eraser: Eraser,
        ttl_seconds: int,
        shuffle: Callable[[list[str]], None] = _SHUFFLE,
    ) -> None:
        self._redis = client
        self._index = GalleryIndex(client)
        self._storage = storage
        self._eraser = eraser
        self._ttl = ttl_seconds
        self._shuffle = shuffle

    def release(self, now: float) -> ReleaseReport | None:
        """List every copy that became ready before the UTC midnight at or before `now`; None when there was none
        or another replica is releasing. Raises `StorageError` (nothing listed; the next sweep tries again)."""
        boundary = day_start(now)
        if not self._index.ready_before(boundary):
            return None
        if not self._redis.set(RELEASE_LOCK, "1", nx=True, ex=RELEASE_LOCK_SECONDS):
            return None
        try:
            return self._release(boundary, now)
        finally:
            self._redis.delete(RELEASE_LOCK)

    def _release(self, boundary: int, now: float) -> ReleaseReport:
        day = day_of(boundary)
        due = self._index.ready_before(boundary)  # read again under the lock
        self._shuffle(due)  # the copies' order and Last-Modified say nothing about when each became ready
        copied, lost = [], []
        bucket = self._eraser.bucket(ObjectKind.GALLERY)
        for gallery_id in due:
            # Scheduled before it is written, from the day's start: every copy of the day leaves together.
            self._eraser.track(ObjectKind.GALLERY, object_key(gallery_id), gallery_id, boundary, self._ttl)
            try:
                self._storage.copy(bucket, staging_key(gallery_id), object_key(gallery_id))
            except ObjectMissing:
                lost.append(gallery_id)  # withdrawn since we read the set, or lost: nothing to list
                continue
            copied.append(gallery_id)
        outcomes = self._index.list_released(copied, day, self._ttl)
        gone = [gid for gid in copied if outcomes[gid] is ReleaseOutcome.GONE]
        # A copy missing from its staging key was withdrawn, lost, or released by an overlapping replica (which
        # erased it): only in the last case does the entry stay, listed, with its public copy.
        lost = [gid for gid in lost if not isinstance(self._index.lookup(gid), GalleryEntry)]
        for gallery_id in lost:
            self._index.remove(gallery_id, only_ready=True)  # a ready entry without its copy can never be listed
        for gallery_id in gone + lost:
            self._erase(object_key(gallery_id), gallery_id, "withdrawn", now)
        for gallery_id in due:
            self._erase(staging_key(gallery_id), gallery_id, "released", now)
        listed = sum(outcome is ReleaseOutcome.LISTED for outcome in outcomes.values())
        log.info("gallery released", day=day, listed=listed, dropped=len(gone) + len(lost))
        return ReleaseReport(day, listed, len(gone) + len(lost))

    def _erase(self, key: str, gallery_id: str, reason: str, now: float) -> None:
        try:
            self._eraser.erase(ObjectKind.GALLERY, key, gallery_id, Deleter.JANITOR, reason)
        except StorageUnavailable:
            # The entry is listed already: the copy stays on the schedule and the sweep erases it soon.
            tracked = self._eraser.schedule.get(ObjectKind.GALLERY, key)
            if tracked is not None:
                self._eraser.schedule.retry_later(tracked, now + ERASE_RETRY_SECONDS)

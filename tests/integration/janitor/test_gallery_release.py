"""The gallery's daily release (#25) against real Redis and SeaweedFS: the copies staged before the last UTC
midnight are copied to their public keys in a shuffled order and listed together in one step, never one by one;
their Last-Modified is the release, not the render; their deletion is scheduled from the day; a copy withdrawn
while it is being released is neither listed nor left behind; replicas take turns."""

from __future__ import annotations

import time
import urllib.request
from email.utils import parsedate_to_datetime

import pytest

from services.janitor.gallery_release import RELEASE_LOCK
from shared.audit import Deleter, ObjectKind
from shared.gallery import (
    DAY_SECONDS,
    GalleryIndex,
    Ready,
    day_of,
    day_start,
    listing_score,
    object_key,
    staging_key,
)
from tests.support.gallery import WatchedStore, releaser, stage
from tests.support.service import Backends

TTL = 3 * DAY_SECONDS
pytestmark = pytest.mark.backends(gallery_ttl_seconds=TTL)
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def last_modified(backends: Backends, key: str) -> float:
    url = backends.storage.presigned_get(backends.settings.results_bucket, key, 60)
    with _no_proxy.open(url, timeout=5) as response:
        return parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()


def test_a_days_copies_are_listed_together_in_a_shuffled_order(backends):
    today = day_start(time.time())
    grants = [stage(backends, today - DAY_SECONDS, shade=n) for n in range(6)]
    later = stage(backends, today)  # staged today: waits for tomorrow's release
    staged_at = last_modified(backends, staging_key(grants[0].id))
    index = GalleryIndex(backends.redis)
    while time.time() < staged_at + 2:  # Last-Modified has a one-second grain: let it tell render from release
        time.sleep(0.1)

    listed_while_copying: list[list[str]] = []
    store = WatchedStore(backends, after=lambda _: listed_while_copying.append(index.ids()))
    orders: list[list[str]] = []

    def shuffle(ids: list[str]) -> None:
        orders.append(list(ids))
        ids.sort(key=lambda gid: gid[::-1])  # an order unlike the set's, to see that the copies follow it

    started = time.time()
    report = releaser(backends, store, shuffle).release(today + 30)
    finished = time.time()

    assert report is not None and (report.day, report.listed, report.dropped) == (day_of(today), 6, 0)
    assert sorted(orders[0]) == sorted(g.id for g in grants)
    assert store.copied == [staging_key(gid) for gid in sorted(orders[0], key=lambda gid: gid[::-1])]
    assert listed_while_copying == [[]] * 6  # nothing listed until every copy was made: then all at once
    ordered = sorted(grants, key=lambda g: listing_score(day_of(today), g.id), reverse=True)
    assert index.ids() == [g.id for g in ordered]
    assert isinstance(index.lookup(later.id), Ready) and later.id not in index.ids()

    for grant in grants:
        tracked = backends.eraser.schedule.get(ObjectKind.GALLERY, object_key(grant.id))
        assert tracked is not None and (tracked.job_id, tracked.created_at) == (grant.id, today)
        assert backends.redis.zscore("portraits:deletions:gallery", object_key(grant.id)) == today + TTL
        assert not backends.storage.exists(backends.settings.results_bucket, staging_key(grant.id))
        modified = last_modified(backends, object_key(grant.id))
        assert int(started) <= modified <= finished and modified >= staged_at + 2  # the release, not the render
    released = [e for e in backends.audit.entries() if e.reason == "released"]
    assert sorted(e.job_id for e in released) == sorted(g.id for g in grants)
    assert all(e.deleted_by is Deleter.JANITOR and e.verified for e in released)


@pytest.mark.parametrize("moment", ["before its copy", "after its copy"])
def test_a_copy_withdrawn_while_it_is_released_is_neither_listed_nor_kept(backends, moment):
    today = day_start(time.time())
    kept, withdrawn = (stage(backends, today - DAY_SECONDS) for _ in range(2))
    index = GalleryIndex(backends.redis)

    def withdraw(source: str) -> None:  # what DELETE /v1/gallery/<id> does, at the worst moment
        if source == staging_key(withdrawn.id):
            for key in (staging_key(withdrawn.id), object_key(withdrawn.id)):
                backends.eraser.erase(ObjectKind.GALLERY, key, withdrawn.id, Deleter.USER, "withdrawn")
            assert index.remove(withdrawn.id)

    store = WatchedStore(backends, **{"before" if moment == "before its copy" else "after": withdraw})
    report = releaser(backends, store).release(today + 30)
    assert report is not None and (report.listed, report.dropped) == (1, 1)
    assert index.ids() == [kept.id]
    for key in (staging_key(withdrawn.id), object_key(withdrawn.id)):
        assert not backends.storage.exists(backends.settings.results_bucket, key)
        assert not backends.eraser.schedule.contains(ObjectKind.GALLERY, key)
    assert index.ready_before(today + 30) == []


def test_replicas_take_turns_and_a_day_with_nothing_ready_takes_no_lock(backends):
    today = day_start(time.time())
    assert releaser(backends).release(today + 30) is None and not backends.redis.exists(RELEASE_LOCK)
    grant = stage(backends, today - DAY_SECONDS)
    backends.redis.set(RELEASE_LOCK, "1", ex=60)  # another replica is releasing
    assert releaser(backends).release(today + 30) is None
    assert GalleryIndex(backends.redis).ids() == []
    backends.redis.delete(RELEASE_LOCK)
    assert releaser(backends).release(today + 30) is not None
    assert GalleryIndex(backends.redis).ids() == [grant.id] and not backends.redis.exists(RELEASE_LOCK)

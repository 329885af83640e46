"""Gallery copies are released and expire through the same schedule, Eraser, audit and metrics as every other
object (#10, #25): the janitor, with an injected clock, lists the day's staged copies at the next UTC midnight and
deletes them together at that midnight plus `gallery_ttl_seconds`, verified and audited under the gallery id, taking
their entries out of the gallery; a staged copy that outlives its release never takes a listed entry with it; a copy
the schedule never saw is found by reconciliation and scheduled from its day."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
import redis

from services.janitor import metrics
from services.janitor.gallery_release import GalleryRelease
from services.janitor.sweeper import Janitor
from services.worker.outcomes import DONE
from shared.audit import AuditLog, Deleter, ObjectKind
from shared.deletion import DeletionSchedule, Eraser
from shared.gallery import (
    DAY_SECONDS,
    GalleryEntry,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Ready,
    day_of,
    day_start,
    object_key,
    removal_deadline,
    staging_key,
)
from shared.leases import JobLeases
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore, StorageUnavailable
from tests.support.gallery import jpeg, stage
from tests.support.service import Backends

TTL = 2 * DAY_SECONDS  # counted from a release's midnight: long enough that a copy listed today is not yet due
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Buckets of the janitor's own: its reconciliation lists whole buckets and would erase other modules' objects.
pytestmark = pytest.mark.backends(
    sources_bucket="jan-sources",
    results_bucket="jan-results",
    source_max_age_seconds=10,
    result_ttl_seconds=60,
    gallery_ttl_seconds=TTL,
)


def janitor(backends: Backends, at: float, releases: bool = True, storage: ObjectStore | None = None) -> Janitor:
    client = redis.Redis.from_url(backends.settings.redis_url)
    storage = storage or ObjectStore(backends.settings)
    eraser = Eraser(storage, SourceKeys(client, 10), DeletionSchedule(client), AuditLog(client, 1000))
    gallery_release = GalleryRelease(client, storage, eraser, TTL) if releases else None
    return Janitor(
        backends.settings,
        client,
        backends.jobs,
        eraser,
        JobLeases(client, 2.0),
        [].append,
        clock=lambda: at,
        gallery_release=gallery_release,
    )


def test_a_shared_portrait_is_released_at_midnight_and_expires_with_its_day(backends, engine, astronaut_path):
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", gallery=grant)
    assert backends.runner(engine).run(job_id) == DONE
    gallery = GalleryIndex(backends.redis)
    assert isinstance(gallery.lookup(grant.id), Ready)
    midnight = day_start(time.time()) + DAY_SECONDS
    deleted_before = metrics.DELETIONS.labels(kind="gallery", reason="expired")._value.get()

    janitor(backends, at=midnight - 1).sweep()  # the same day: still staged, unlisted
    assert gallery.ids() == [] and isinstance(gallery.lookup(grant.id), Ready)
    janitor(backends, at=midnight + 30).sweep()  # the first sweep of the next day releases it
    entry = gallery.lookup(grant.id)
    assert isinstance(entry, GalleryEntry) and entry.day == day_of(midnight) and gallery.ids() == [grant.id]
    assert not backends.storage.exists(backends.settings.results_bucket, staging_key(grant.id))
    url = backends.storage.presigned_get(backends.settings.results_bucket, entry.object_key, 300)
    deadline = removal_deadline(entry.day, TTL)
    assert deadline == midnight + TTL
    assert backends.redis.zscore("portraits:deletions:gallery", entry.object_key) == deadline

    janitor(backends, at=deadline - 5).sweep()
    assert backends.storage.exists(backends.settings.results_bucket, entry.object_key)
    assert gallery.ids() == [grant.id]
    assert janitor(backends, at=deadline + 1).sweep().deleted == 1
    assert not backends.storage.exists(backends.settings.results_bucket, entry.object_key)
    with pytest.raises(urllib.error.HTTPError) as gone:
        _no_proxy.open(url, timeout=5)
    assert gone.value.code in (403, 404)
    assert gallery.ids() == [] and isinstance(gallery.lookup(grant.id), Gone)
    assert metrics.DELETIONS.labels(kind="gallery", reason="expired")._value.get() == deleted_before + 1
    audited = {e.reason: e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY}
    assert set(audited) == {"released", "expired"}  # the staged copy at the release, the public one at expiry
    assert all((e.job_id, e.deleted_by, e.verified) == (grant.id, Deleter.JANITOR, True) for e in audited.values())
    # Both copies were filed under their day, never a moment of it (#25).
    assert audited["released"].created_at == midnight - DAY_SECONDS and audited["expired"].created_at == midnight
    assert all(e.job_id != grant.id for e in backends.audit.entries() if e.kind is not ObjectKind.GALLERY)
    assert all(e.job_id != job_id for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY)


class StagedDeletesFail(ObjectStore):
    """S3 that cannot delete staged copies (the release's last step), and only those."""

    def delete(self, bucket: str, key: str) -> None:
        if key.endswith(".staged.jpg"):
            raise StorageUnavailable("simulated outage")
        super().delete(bucket, key)


def test_a_staged_copy_left_after_its_release_is_erased_soon_and_leaves_the_entry_listed(backends):
    today = day_start(time.time())
    grant = stage(backends, today)
    midnight = today + DAY_SECONDS
    janitor(backends, at=midnight + 1, storage=StagedDeletesFail(backends.settings)).sweep()
    gallery = GalleryIndex(backends.redis)
    assert gallery.ids() == [grant.id]  # listed although the staged copy could not be erased
    assert backends.storage.exists(backends.settings.results_bucket, staging_key(grant.id))
    retry_at = backends.redis.zscore("portraits:deletions:gallery", staging_key(grant.id))
    assert retry_at == midnight + 1 + 60  # brought forward from its whole-TTL deadline

    janitor(backends, at=retry_at + 1).sweep()
    assert not backends.storage.exists(backends.settings.results_bucket, staging_key(grant.id))
    assert gallery.ids() == [grant.id] and isinstance(gallery.lookup(grant.id), GalleryEntry)
    assert backends.storage.exists(backends.settings.results_bucket, object_key(grant.id))


def test_a_copy_never_released_goes_with_its_entry(backends):
    today = day_start(time.time())
    grant = stage(backends, today)
    deadline = backends.redis.zscore("portraits:deletions:gallery", staging_key(grant.id))
    assert deadline == today + DAY_SECONDS + TTL
    assert janitor(backends, at=deadline + 1, releases=False).sweep().deleted == 1  # no janitor released it
    assert not backends.storage.exists(backends.settings.results_bucket, staging_key(grant.id))
    gallery = GalleryIndex(backends.redis)
    assert isinstance(gallery.lookup(grant.id), Gone) and gallery.ready_before(deadline + DAY_SECONDS) == []


def test_a_failed_release_holds_up_no_deletion(backends, astronaut_path):
    today = day_start(time.time())
    grant = stage(backends, today - DAY_SECONDS)  # due for today's release
    job_id = backends.submit(astronaut_path.read_bytes())

    class CopiesFail(ObjectStore):
        def copy(self, bucket: str, source: str, destination: str) -> None:
            raise StorageUnavailable("simulated outage")

    report = janitor(backends, at=time.time() + 11, storage=CopiesFail(backends.settings)).sweep()
    assert report.deleted == 1 and not backends.source_exists(job_id)  # the source's deadline was kept
    assert isinstance(GalleryIndex(backends.redis).lookup(grant.id), Ready)  # retried by a later sweep
    janitor(backends, at=today + DAY_SECONDS + 1).sweep()
    assert GalleryIndex(backends.redis).ids() == [grant.id]


def test_unscheduled_gallery_copies_are_found_and_scheduled_from_their_day(backends):
    gallery = GalleryIndex(backends.redis)
    today = day_start(time.time())
    listed, staged = GalleryGrant.new(), GalleryGrant.new()
    for grant in (listed, staged):
        gallery.reserve(grant, 60)
        assert gallery.mark_ready(grant.id, "ink-wash", "ink", today - DAY_SECONDS, TTL)
    gallery.list_released([listed.id], day_of(today), TTL)
    bucket = backends.settings.results_bucket
    backends.storage.put(bucket, object_key(listed.id), jpeg(), "image/jpeg")  # a crash lost their schedule entries
    backends.storage.put(bucket, staging_key(staged.id), jpeg(), "image/jpeg")
    assert janitor(backends, at=time.time()).reconcile() >= 2  # young: only scheduled, under the gallery ids
    schedule = backends.eraser.schedule
    public, held = (
        schedule.get(ObjectKind.GALLERY, object_key(listed.id)),
        schedule.get(ObjectKind.GALLERY, staging_key(staged.id)),
    )
    assert public is not None and (public.job_id, public.created_at) == (listed.id, today)
    assert held is not None and (held.job_id, held.created_at) == (staged.id, today)
    assert backends.redis.zscore("portraits:deletions:gallery", object_key(listed.id)) == today + TTL
    assert backends.redis.zscore("portraits:deletions:gallery", staging_key(staged.id)) == today + DAY_SECONDS + TTL
    assert gallery.ids() == [listed.id]

    janitor(backends, at=today + TTL + 5, releases=False).sweep()
    assert not backends.storage.exists(bucket, object_key(listed.id)) and gallery.ids() == []
    assert [e.reason for e in backends.audit.entries() if e.job_id == listed.id] == ["expired"]
    assert isinstance(gallery.lookup(staged.id), Ready)  # its own deadline is a day later

"""Gallery copies expire through the same schedule, Eraser, audit and metrics as every other object (#10): the
janitor, with an injected clock, deletes a copy at `gallery_ttl_seconds`, verifies and audits it under its gallery
id, and takes its entry out of the gallery; a copy the schedule never saw is found by reconciliation."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
import redis

from services.janitor import metrics
from services.janitor.sweeper import Janitor
from services.worker.outcomes import DONE
from shared.audit import AuditLog, Deleter, ObjectKind
from shared.deletion import DeletionSchedule, Eraser
from shared.gallery import GalleryEntry, GalleryGrant, GalleryIndex, Gone, object_key
from shared.leases import JobLeases
from shared.source_keys import SourceKeys
from shared.storage import ObjectStore
from tests.support.service import Backends

TTL = 3600
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Buckets of the janitor's own: its reconciliation lists whole buckets and would erase other modules' objects.
pytestmark = pytest.mark.backends(
    sources_bucket="jan-sources",
    results_bucket="jan-results",
    source_max_age_seconds=10,
    result_ttl_seconds=60,
    gallery_ttl_seconds=TTL,
)


def janitor(backends: Backends, at: float) -> Janitor:
    client = redis.Redis.from_url(backends.settings.redis_url)
    eraser = Eraser(
        ObjectStore(backends.settings), SourceKeys(client, 10), DeletionSchedule(client), AuditLog(client, 1000)
    )
    return Janitor(
        backends.settings, client, backends.jobs, eraser, JobLeases(client, 2.0), [].append, clock=lambda: at
    )


def test_a_shared_portrait_expires_at_the_gallery_ttl(backends, engine, astronaut_path):
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", gallery=grant)
    assert backends.runner(engine).run(job_id) == DONE
    gallery = GalleryIndex(backends.redis)
    entry = gallery.lookup(grant.id)
    assert isinstance(entry, GalleryEntry)
    url = backends.storage.presigned_get(backends.settings.results_bucket, entry.object_key, 300)
    deleted_before = metrics.DELETIONS.labels(kind="gallery", reason="expired")._value.get()

    # The portrait's own TTL (60 s) passes: the result goes, the gallery copy stays.
    janitor(backends, at=entry.published_at + 120).sweep()
    assert backends.storage.exists(backends.settings.results_bucket, entry.object_key)
    assert gallery.ids() == [grant.id]
    janitor(backends, at=entry.published_at + TTL - 5).sweep()
    assert gallery.ids() == [grant.id]

    assert janitor(backends, at=entry.published_at + TTL + 1).sweep().deleted == 1
    assert not backends.storage.exists(backends.settings.results_bucket, entry.object_key)
    with pytest.raises(urllib.error.HTTPError) as gone:
        _no_proxy.open(url, timeout=5)
    assert gone.value.code in (403, 404)
    assert gallery.ids() == [] and isinstance(gallery.lookup(grant.id), Gone)
    assert metrics.DELETIONS.labels(kind="gallery", reason="expired")._value.get() == deleted_before + 1
    [audited] = [e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY]
    assert (audited.job_id, audited.deleted_by, audited.reason, audited.verified) == (
        grant.id,
        Deleter.JANITOR,
        "expired",
        True,
    )
    assert all(e.job_id != grant.id for e in backends.audit.entries() if e.kind is not ObjectKind.GALLERY)
    assert all(e.job_id != job_id for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY)


def test_an_unscheduled_gallery_copy_is_found_and_erased_with_its_entry(backends):
    grant = GalleryGrant.new()
    gallery = GalleryIndex(backends.redis)
    gallery.reserve(grant, 60)
    key = object_key(grant.id)
    backends.storage.put(backends.settings.results_bucket, key, b"\xff\xd8 a copy", "image/jpeg")
    gallery.publish(GalleryEntry(grant.id, "ink-wash", "ink", "2025-01-01", key, grant.token_hash, time.time()), TTL)
    assert janitor(backends, at=time.time()).reconcile() >= 1  # young: only scheduled, under the gallery id
    tracked = backends.eraser.schedule.get(ObjectKind.GALLERY, key)
    assert tracked is not None and tracked.job_id == grant.id
    assert gallery.ids() == [grant.id]
    janitor(backends, at=time.time() + TTL + 5).sweep()
    assert not backends.storage.exists(backends.settings.results_bucket, key) and gallery.ids() == []
    assert [e.reason for e in backends.audit.entries() if e.job_id == grant.id] == ["expired"]

"""The worker's gallery copy (#10), against real Redis, SeaweedFS and the real engine: made only with consent,
re-encoded without metadata, under an id unrelated to the job, scheduled and audited under that id, and forgotten
by the job once made. The worker only stages it, unlisted, keeping nothing finer than its day (#25): the janitor
lists it at the next UTC midnight. A copy that cannot be made never fails the job."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from services.worker import metrics
from services.worker.outcomes import DONE
from shared.audit import ObjectKind
from shared.gallery import DAY_SECONDS, GalleryGrant, GalleryIndex, Ready, day_start, object_key, staging_key
from shared.jobs import JobState, now
from shared.storage import ObjectStore, StorageUnavailable
from tests.support.service import Backends
from tests.unit.worker.test_clean_jpeg import _METADATA_MARKERS, segments


@pytest.fixture
def gallery(backends) -> GalleryIndex:
    return GalleryIndex(backends.redis)


def staged_object(backends: Backends, gallery_id: str) -> bytes:
    return backends.storage.get(backends.settings.results_bucket, staging_key(gallery_id))


def test_a_shared_portrait_is_copied_clean_and_unlinked(backends, gallery, engine, astronaut_path):
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", gallery=grant)
    assert backends.jobs.get(job_id).gallery_id == grant.id  # until it is published
    published_before = metrics.GALLERY_PUBLISHED._value.get()
    assert backends.runner(engine).run(job_id) == DONE
    assert metrics.GALLERY_PUBLISHED._value.get() == published_before + 1

    job = backends.jobs.get(job_id)
    assert job.state is JobState.DONE and job.share
    assert job.gallery_id is None and job.gallery_token_hash is None  # the job no longer knows its entry
    raw_job = backends.redis.hgetall(backends.jobs.key(job_id))
    assert b"gallery_id" not in raw_job and b"gallery_token_hash" not in raw_job
    assert grant.id != job_id and grant.id not in job_id and job_id not in grant.id

    # Staged, not listed: the entry waits for the next release with nothing finer than its day (#25).
    assert gallery.lookup(grant.id) == Ready(grant.id, grant.token_hash)
    assert gallery.ids() == [] and gallery.page(None, 10).entries == ()
    today = day_start(now())
    assert backends.redis.zscore(GalleryIndex.READY_KEY, grant.id) == today
    assert not backends.storage.exists(backends.settings.results_bucket, object_key(grant.id))  # no public copy
    # Nothing in the entry points back at the job, and no time is kept but the day's.
    raw_entry = backends.redis.hgetall(GalleryIndex.ENTRY_PREFIX + grant.id)
    assert raw_entry == {
        b"state": b"ready",
        b"token_hash": grant.token_hash.encode(),
        b"style": job.style.encode(),
        b"family": job.family.encode(),
    }
    # Scheduled for deletion under the gallery id, from the day: the release's day plus a whole TTL at most.
    key = staging_key(grant.id)
    tracked = backends.eraser.schedule.get(ObjectKind.GALLERY, key)
    assert tracked is not None and tracked.job_id == grant.id and tracked.created_at == today
    deadline = backends.redis.zscore("portraits:deletions:gallery", key)
    assert deadline == today + DAY_SECONDS + backends.settings.gallery_ttl_seconds
    meta = json.loads(backends.redis.hget("portraits:deletions:meta", f"gallery:{key}"))
    assert job_id not in json.dumps(meta)

    copy = staged_object(backends, grant.id)
    assert not _METADATA_MARKERS & set(segments(copy)) and b"Exif" not in copy
    with Image.open(io.BytesIO(copy)) as opened:
        assert opened.format == "JPEG" and not {"exif", "icc_profile", "xmp", "comment"} & set(opened.info)
        portrait = backends.storage.get(backends.settings.results_bucket, job.result_key)
        assert opened.size == Image.open(io.BytesIO(portrait)).size  # the portrait, not the photo
    assert copy != portrait


def test_without_consent_nothing_reaches_the_gallery(backends, gallery, engine, astronaut_path):
    before = set(gallery.ids())
    scheduled_before = backends.eraser.schedule.size(ObjectKind.GALLERY)
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink")
    assert backends.runner(engine).run(job_id) == DONE
    job = backends.jobs.get(job_id)
    assert not job.share and job.gallery_id is None
    assert set(gallery.ids()) == before
    assert backends.eraser.schedule.size(ObjectKind.GALLERY) == scheduled_before


def test_withdrawn_before_publication_is_never_listed(backends, gallery, engine, astronaut_path):
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", gallery=grant)
    assert gallery.remove(grant.id, only_pending=True)  # what DELETE /v1/gallery/<id> does while it is pending
    assert backends.runner(engine).run(job_id) == DONE
    assert grant.id not in gallery.ids() and gallery.ready_before(now() + DAY_SECONDS) == []
    for key in (staging_key(grant.id), object_key(grant.id)):
        assert not backends.storage.exists(backends.settings.results_bucket, key)
        assert not backends.eraser.schedule.contains(ObjectKind.GALLERY, key)
    assert backends.jobs.get(job_id).gallery_id is None


class GalleryWritesFail(ObjectStore):
    """S3 that refuses gallery writes (a full or failing bucket), and only those."""

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        if key.startswith("gallery/"):
            raise StorageUnavailable("simulated outage")
        super().put(bucket, key, data, content_type)


def test_a_failed_publication_does_not_fail_the_job(backends, gallery, engine, astronaut_path):
    grant = GalleryGrant.new()
    job_id = backends.submit(astronaut_path.read_bytes(), style="ink", gallery=grant)
    failures_before = metrics.GALLERY_PUBLISH_FAILURES._value.get()
    runner = backends.runner(engine, storage=GalleryWritesFail(backends.settings))
    assert runner.run(job_id) == DONE
    job = backends.jobs.get(job_id)
    assert job.state is JobState.DONE and job.gallery_id is None
    assert metrics.GALLERY_PUBLISH_FAILURES._value.get() == failures_before + 1
    assert grant.id not in gallery.ids() and gallery.ready_before(now() + DAY_SECONDS) == []
    # The copy that might have landed was erased at once (not left to wait 30 days on the schedule).
    assert not backends.eraser.schedule.contains(ObjectKind.GALLERY, staging_key(grant.id))
    assert [e.reason for e in backends.audit.entries() if e.job_id == grant.id] == ["publish failed"]

"""The public gallery's copy of a portrait its owner chose to share (#10): re-encoded without metadata, under the
gallery id drawn at upload, and never linked to the job in a log line, the audit or the deletion schedule."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
import structlog
from PIL import Image

from services.worker import metrics
from shared.audit import Deleter, ObjectKind
from shared.deletion import Eraser
from shared.gallery import GalleryEntry, GalleryIndex, day_of
from shared.gallery import object_key as gallery_object_key
from shared.jobs import Job, JobStore, now
from shared.logging import get_logger
from shared.storage import ObjectStore

if TYPE_CHECKING:  # torch underneath: the engine's types are only named here, its module loads in render processes
    from services.worker.engine.pipeline import Portrait

log = get_logger("portraits.worker")


@dataclass(frozen=True)
class GalleryCopier:
    index: GalleryIndex
    jobs: JobStore
    storage: ObjectStore
    eraser: Eraser
    quality: int  # of the re-encoded JPEG
    ttl_seconds: int  # how long the copy stays in the gallery

    def publish(self, job: Job, portrait: Portrait) -> None:
        """Copy the job's finished portrait to the gallery if its owner shared it and has not withdrawn it,
        scheduled for deletion before it is written; then the job forgets its gallery id. Never fails the job:
        a copy that cannot be published is counted and logged."""
        gallery_id, token_hash = job.gallery_id, job.gallery_token_hash
        if not gallery_id or not token_hash:
            return
        key = gallery_object_key(gallery_id)
        may_exist = False
        with _unlinked():  # no log line may carry both the job id and the gallery id
            try:
                if self.index.is_pending(gallery_id):
                    copy = clean_jpeg(portrait.data, self.quality)
                    published = now()
                    # The audit's and the schedule's "job id" is the gallery id: nothing there names the job.
                    self.eraser.track(ObjectKind.GALLERY, key, gallery_id, published, self.ttl_seconds)
                    may_exist = True
                    self.storage.put(self.storage.results_bucket, key, copy, "image/jpeg")
                    entry = GalleryEntry(
                        id=gallery_id,
                        style=portrait.style,
                        family=portrait.family,
                        day=day_of(published),
                        object_key=key,
                        token_hash=token_hash,
                        published_at=published,
                    )
                    if self.index.publish(entry, self.ttl_seconds):
                        metrics.GALLERY_PUBLISHED.inc()
                        log.info("portrait published to the gallery")
                    else:  # withdrawn (or the job erased) while we wrote it
                        self.eraser.erase(ObjectKind.GALLERY, key, gallery_id, Deleter.WORKER, reason="withdrawn")
                        log.info("gallery copy erased: withdrawn before publication")
                else:
                    log.info("gallery copy not made: withdrawn before publication")
            except Exception as exc:
                metrics.GALLERY_PUBLISH_FAILURES.inc()
                # The type only: storage errors name the object key, which holds the gallery id.
                log.warning("gallery publication failed; the job stays done", error_type=type(exc).__name__)
                if may_exist:
                    try:
                        self.eraser.erase(ObjectKind.GALLERY, key, gallery_id, Deleter.WORKER, reason="publish failed")
                    except Exception:
                        pass
        try:
            self.jobs.forget_gallery(job.id)
        except redis.RedisError:
            pass  # the record expires with the job; until then only the job's own id can read it


def clean_jpeg(data: bytes, quality: int) -> bytes:
    """A fresh JPEG of the pixels alone: the image is rebuilt from raw RGB bytes, so no EXIF, ICC profile, XMP,
    comment or other ancillary data of the original can ride along."""
    with Image.open(io.BytesIO(data)) as opened:
        rgb = opened.convert("RGB")
    pixels = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


@contextmanager
def _unlinked() -> Iterator[None]:
    """Log lines inside do not carry the bound job id (restored after)."""
    bound = structlog.contextvars.get_contextvars().get("job_id")
    structlog.contextvars.unbind_contextvars("job_id")
    try:
        yield
    finally:
        if bound is not None:
            structlog.contextvars.bind_contextvars(job_id=bound)

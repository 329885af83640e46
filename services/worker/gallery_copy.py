"""The public gallery's copy of a portrait its owner chose to share (#10): re-encoded without metadata, under the
gallery id drawn at upload, and never linked to the job in a log line, the audit or the deletion schedule. The
worker only stages it: the janitor lists it at the next UTC midnight with the rest of the day's (#25), so its
listing cannot be matched with the moment the job finished."""

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
from shared.gallery import DAY_SECONDS, GalleryIndex, day_start, staging_key
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
        """Stage the job's finished portrait for the gallery if its owner shared it and has not withdrawn it:
        scheduled for deletion before it is written, under its staging key, its entry marked ready for the next
        release; then the job forgets its gallery id. Never fails the job: a copy that cannot be staged is counted
        and logged."""
        gallery_id, token_hash = job.gallery_id, job.gallery_token_hash
        if not gallery_id or not token_hash:
            return
        key = staging_key(gallery_id)
        may_exist = False
        with _unlinked():  # no log line may carry both the job id and the gallery id
            try:
                if self.index.is_pending(gallery_id):
                    copy = clean_jpeg(portrait.data, self.quality)
                    # The day, not the moment: nothing stored keeps when the job finished (#25). The staged copy
                    # lives until the day's release, or a whole TTL more if the release never comes.
                    day = day_start(now())
                    # The audit's and the schedule's "job id" is the gallery id: nothing there names the job.
                    self.eraser.track(ObjectKind.GALLERY, key, gallery_id, day, DAY_SECONDS + self.ttl_seconds)
                    may_exist = True
                    self.storage.put(self.storage.results_bucket, key, copy, "image/jpeg")
                    if self.index.mark_ready(gallery_id, portrait.style, portrait.family, day, self.ttl_seconds):
                        metrics.GALLERY_PUBLISHED.inc()
                        log.info("portrait staged for the gallery's next release")
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

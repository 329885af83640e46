"""What the worker leaves for a shared portrait, without rendering one (#25): a staged copy, scheduled before it
is written as the worker schedules it, and its entry marked ready on a given day; and the janitor's release."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image

from services.janitor.gallery_release import GalleryRelease, ReleaseReport
from shared.audit import ObjectKind
from shared.gallery import DAY_SECONDS, GalleryGrant, GalleryIndex, staging_key
from shared.storage import ObjectStore
from tests.support.service import Backends


def jpeg(shade: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (shade % 255, 0, 0)).save(buffer, format="JPEG")
    return buffer.getvalue()


def stage(backends: Backends, day: int, style: str = "ink-wash", shade: int = 0) -> GalleryGrant:
    """A reserved entry whose copy was staged on the day starting at `day` (epoch seconds, a UTC midnight)."""
    grant = GalleryGrant.new()
    index = GalleryIndex(backends.redis)
    index.reserve(grant, 60)
    ttl = backends.settings.gallery_ttl_seconds
    backends.eraser.track(ObjectKind.GALLERY, staging_key(grant.id), grant.id, day, DAY_SECONDS + ttl)
    backends.storage.put(backends.settings.results_bucket, staging_key(grant.id), jpeg(shade), "image/jpeg")
    assert index.mark_ready(grant.id, style, "ink", day, ttl)
    return grant


class WatchedStore(ObjectStore):
    """S3 that calls `before` ahead of each server-side copy and `after` behind it, with the copy's source key,
    and keeps the sources in the order they were copied."""

    def __init__(
        self,
        backends: Backends,
        before: Callable[[str], None] | None = None,
        after: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(backends.settings)
        self.before, self.after = before, after
        self.copied: list[str] = []

    def copy(self, bucket: str, source: str, destination: str) -> None:
        if self.before is not None:
            self.before(source)
        super().copy(bucket, source, destination)
        self.copied.append(source)
        if self.after is not None:
            self.after(source)


def releaser(
    backends: Backends, storage: ObjectStore | None = None, shuffle: Callable[[list[str]], None] | None = None
) -> GalleryRelease:
    """The janitor's release over these backends (optionally another object store, or a known order)."""
    backends = backends.with_storage(storage) if storage is not None else backends
    ttl = backends.settings.gallery_ttl_seconds
    if shuffle is None:
        return GalleryRelease(backends.redis, backends.storage, backends.eraser, ttl)
    return GalleryRelease(backends.redis, backends.storage, backends.eraser, ttl, shuffle=shuffle)


def release(backends: Backends, now: float, storage: ObjectStore | None = None) -> ReleaseReport | None:
    """The janitor's release at `now`."""
    return releaser(backends, storage).release(now)

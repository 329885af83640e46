"""The services' backends with what an integration test does with them, on the session's real Redis and SeaweedFS
(their settings: scripts/support/service_settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from services.worker.outcomes import PortraitRenderer
from services.worker.process import RenderProcess
from services.worker.runner import JobRunner
from shared.audit import ObjectKind
from shared.backends import Backends as SharedBackends
from shared.capacity import CapacityBoard
from shared.crypto import new_key, seal
from shared.gallery import GalleryGrant, GalleryIndex
from shared.ids import new_job_id
from shared.jobs import Job, JobState, now
from shared.storage import ObjectStore, source_key


@dataclass(frozen=True)
class Backends(SharedBackends):
    """The services' backends (shared/backends.py: the same Redis options, the same eraser), plus what a test
    does with them: submit a job as the gateway would, look at a source, build a worker's runner."""

    def submit(
        self,
        photo: bytes,
        style: str = "auto",
        strength: float | None = None,
        callback_url: str | None = None,
        gallery: GalleryGrant | None = None,
    ) -> str:
        """What the gateway does for an accepted upload, minus validation and the queue (`gallery`: with
        consent to the gallery, and this id and token)."""
        job_id = new_job_id()
        key = new_key()
        self.keys.store(job_id, key)
        self.eraser.track(ObjectKind.SOURCE, source_key(job_id), job_id, now(), self.settings.source_max_age_seconds)
        self.storage.put(
            self.storage.sources_bucket, source_key(job_id), seal(key, photo, job_id), "application/octet-stream"
        )
        self.jobs.create(
            Job(
                id=job_id,
                state=JobState.QUEUED,
                created_at=now(),
                style_requested=style,
                strength=strength,
                callback_url=callback_url,
                share=gallery is not None,
                gallery_id=gallery.id if gallery else None,
                gallery_token_hash=gallery.token_hash if gallery else None,
            )
        )
        if gallery is not None:
            GalleryIndex(self.redis).reserve(gallery, self.settings.job_ttl_seconds)
        return job_id

    def begin_submit(self, photo: bytes, style: str = "auto", expected_seconds: float = 30) -> PendingUpload:
        """The gateway's upload up to its S3 put (#11): the job recorded and its source expected, nothing stored
        yet. The returned upload's `finish()` stores the source and publishes its key; `abandon()` gives it up."""
        job_id = new_job_id()
        created = now()
        with self.redis.pipeline(transaction=True) as pipe:
            self.eraser.track(
                ObjectKind.SOURCE, source_key(job_id), job_id, created, self.settings.source_max_age_seconds, pipe=pipe
            )
            self.keys.expect(pipe, job_id, expected_seconds)
            self.jobs.create(Job(id=job_id, state=JobState.QUEUED, created_at=created, style_requested=style), pipe)
            pipe.execute()
        return PendingUpload(self, job_id, photo)

    def source_exists(self, job_id: str) -> bool:
        return self.storage.exists(self.storage.sources_bucket, source_key(job_id))

    def render_process(
        self, engine: PortraitRenderer, storage: ObjectStore | None = None, capacity: CapacityBoard | None = None
    ) -> RenderProcess:
        """A render process on these backends, as `worker_process_init` builds one (optionally over a different
        object store, e.g. a flaky one)."""
        backends = self.with_storage(storage) if storage is not None else self
        return RenderProcess.assemble(backends, engine, capacity=capacity)

    def runner(self, engine: PortraitRenderer, storage: ObjectStore | None = None) -> JobRunner:
        """A JobRunner on these backends (optionally with a different object store, e.g. a flaky one)."""
        return self.render_process(engine, storage).runner


@dataclass(frozen=True)
class PendingUpload:
    """An upload whose job is recorded and sent-able but whose source is still being stored (Backends.begin_submit)."""

    backends: Backends
    job_id: str
    photo: bytes

    def finish(self) -> None:
        key = new_key()
        storage = self.backends.storage
        storage.put(
            storage.sources_bucket,
            source_key(self.job_id),
            seal(key, self.photo, self.job_id),
            "application/octet-stream",
        )
        self.backends.keys.publish(self.job_id, key)

    def abandon(self) -> None:
        """As the gateway's undo after a failed put: key shredded, the source abandoned, record gone."""
        self.backends.keys.abandon(self.job_id)
        self.backends.jobs.delete(self.job_id)

"""Wiring the service's collaborators to the session's real Redis and SeaweedFS, for integration tests."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from scripts.devstack import SeaweedServer, ensure_buckets
from shared.audit import AuditLog, ObjectKind
from shared.crypto import SourceKeys, new_key, seal
from shared.deletion import DeletionSchedule, Eraser
from shared.gallery import GalleryGrant, GalleryIndex
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore, now
from shared.settings import Settings
from shared.storage import ObjectStore, source_key
from shared.webhooks import WebhookOutbox


def service_settings(redis_url: str, s3: SeaweedServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "s3_endpoint_url": s3.endpoint,
        "s3_access_key_id": s3.credentials.access_key,
        "s3_secret_access_key": s3.credentials.secret_key,
        "sources_bucket": "test-sources",
        "results_bucket": "test-results",
        "output_size": 512,
        "upload_rate_limit": "",
        "log_json": False,
        "worker_processes": 1,  # one render process per test worker: one model load (the plan: #11, plan.py)
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    ensure_buckets(s3.endpoint, s3.credentials, [settings.sources_bucket, settings.results_bucket])
    return settings


@dataclass
class Backends:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    storage: ObjectStore
    keys: SourceKeys
    eraser: Eraser
    audit: AuditLog

    @classmethod
    def connect(cls, settings: Settings, storage: ObjectStore | None = None) -> Backends:
        client = redis.Redis.from_url(settings.redis_url)
        storage = storage or ObjectStore(settings)
        keys = SourceKeys(client, settings.source_max_age_seconds)
        audit = AuditLog(client, settings.audit_max_entries)
        return cls(
            settings,
            client,
            JobStore(client, settings.job_ttl_seconds),
            storage,
            keys,
            Eraser(storage, keys, DeletionSchedule(client), audit),
            audit,
        )

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

    def source_exists(self, job_id: str) -> bool:
        return self.storage.exists(self.storage.sources_bucket, source_key(job_id))

    def runner(self, engine, storage: ObjectStore | None = None):  # type: ignore[no-untyped-def]
        """A JobRunner on these backends (optionally with a different object store, e.g. a flaky one)."""
        from services.worker.runner import JobRunner
        from shared.leases import JobLeases

        storage = storage or self.storage
        eraser = Eraser(storage, self.keys, self.eraser.schedule, self.audit)
        return JobRunner(
            self.settings,
            self.jobs,
            storage,
            self.keys,
            eraser,
            engine,
            JobLeases(self.redis, self.settings.job_lease_seconds),
            webhooks=WebhookOutbox(self.redis),
        )

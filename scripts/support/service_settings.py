"""The services' settings wired to a devstack's Redis and SeaweedFS (scripts/devstack): for the integration tests'
backends and for the privacy drill."""

from __future__ import annotations

from scripts.devstack import SeaweedServer, ensure_buckets
from shared.settings import Settings


def service_settings(redis_url: str, s3: SeaweedServer, **overrides: object) -> Settings:
    """Settings for Redis at `redis_url` and the S3 gateway of `s3`, with test-sized defaults (512 px portraits,
    no upload rate limit, plain-text logs, one render process) under `overrides`; its two buckets exist."""
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
    # A dict of mixed values: the pydantic plugin types each keyword, which a ** of dict[str, object] cannot meet.
    settings = Settings(**values)  # type: ignore[arg-type]
    ensure_buckets(s3.endpoint, s3.credentials, [settings.sources_bucket, settings.results_bucket])
    return settings

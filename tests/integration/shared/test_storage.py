"""Object storage on a real SeaweedFS: round trips, idempotent deletes, presigned URLs, failures translated."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from scripts.devstack import ensure_buckets, free_port
from shared.settings import Settings
from shared.storage import ObjectMissing, ObjectStore, StorageUnavailable


def settings_for(s3_server, endpoint: str | None = None) -> Settings:
    return Settings(
        s3_endpoint_url=endpoint or s3_server.endpoint,
        s3_access_key_id=s3_server.credentials.access_key,
        s3_secret_access_key=s3_server.credentials.secret_key,
        sources_bucket="storage-sources",
        results_bucket="storage-results",
        s3_max_attempts=2,
        s3_connect_timeout=0.5,
    )


@pytest.fixture(scope="module")
def store(s3_server) -> ObjectStore:
    ensure_buckets(s3_server.endpoint, s3_server.credentials, ["storage-sources", "storage-results"])
    return ObjectStore(settings_for(s3_server))


def test_round_trip_and_delete(store):
    store.put(store.results_bucket, "results/a.jpg", b"painted", "image/jpeg")
    assert store.exists(store.results_bucket, "results/a.jpg")
    assert store.get(store.results_bucket, "results/a.jpg") == b"painted"
    store.delete(store.results_bucket, "results/a.jpg")
    store.delete(store.results_bucket, "results/a.jpg")  # idempotent
    assert not store.exists(store.results_bucket, "results/a.jpg")
    with pytest.raises(ObjectMissing):
        store.get(store.results_bucket, "results/a.jpg")


def test_presigned_url_downloads_until_tampered(store):
    store.put(store.results_bucket, "results/b.jpg", b"portrait bytes", "image/jpeg")
    url = store.presigned_get(store.results_bucket, "results/b.jpg", 60)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"portrait bytes"
    tampered = url.replace("results/b.jpg", "results/c.jpg")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=5)
    assert refused.value.code == 403


def test_unreachable_store_is_transient(s3_server):
    dead = ObjectStore(settings_for(s3_server, endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StorageUnavailable):
        dead.get("storage-sources", "sources/x")
    with pytest.raises(StorageUnavailable):
        dead.ping()

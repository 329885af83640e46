"""Object storage on a real SeaweedFS: round trips, idempotent deletes, presigned URLs, failures translated."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from pydantic import SecretStr

from scripts.devstack import ensure_buckets, free_port
from shared.settings import PROJECT_ROOT, Settings
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


def test_refused_credentials_are_a_configuration_error_not_an_outage(s3_server):
    settings = settings_for(s3_server).model_copy(update={"s3_secret_access_key": SecretStr("not-the-secret")})
    refused = ObjectStore(settings)
    with pytest.raises(Exception) as caught:
        refused.get("storage-sources", "sources/x")
    # Not retried as an outage (503), not a missing object (a job failing source_expired): raised as it is.
    assert not isinstance(caught.value, (StorageUnavailable, ObjectMissing))
    assert "403" in str(caught.value)


FORK_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from shared.settings import Settings
    from shared.storage import ObjectStore, StoreUsedBeforeFork
    store = ObjectStore(Settings(**json.loads(sys.argv[1])))

    def in_child(label):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                store.put(store.sources_bucket, "sources/fork-" + label, b"x", "application/octet-stream")
                answer = "ok"
            except StoreUsedBeforeFork:
                answer = "refused"
            os.write(write, answer.encode())
            os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode()
        os.waitpid(pid, 0)
        return answer

    before = in_child("before")  # made but never used before the fork: the deployed pattern
    store.get(store.sources_bucket, "sources/fork-before")
    after = in_child("after")  # used, then forked: obstore's runtime would hang the child
    print(json.dumps([before, after]))
    """
)


def test_only_a_store_used_before_a_fork_is_refused_in_the_child(s3_server):
    """obstore's runtime does not survive fork(): a child of a process that used it hangs on its first call. The
    services open stores after forking; a violation must fail loudly (StoreUsedBeforeFork), never hang."""
    settings = settings_for(s3_server)
    values = {
        "s3_endpoint_url": settings.s3_endpoint_url,
        "s3_access_key_id": settings.s3_access_key_id,
        "s3_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
        "sources_bucket": settings.sources_bucket,
        "results_bucket": settings.results_bucket,
    }
    done = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, json.dumps(values)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["ok", "refused"]

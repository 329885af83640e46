"""#24, storage redundancy: with two volume servers and replication 001, every object is stored twice, losing
one volume server loses no object, and an erasure leaves no copy on either, including the copy of a server that
was down while it ran (docs/storage.md says what SeaweedFS does there on its own: nothing)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts import devstack
from scripts.devstack import RedisServer, SeaweedServer, start_seaweedfs
from scripts.devstack.copies import chunk_file_ids, copies, read_token
from scripts.support.service_settings import service_settings
from shared.audit import Deleter, ObjectKind
from shared.backends import Backends

pytestmark = pytest.mark.integration

BUCKET = "replicated"
ERASURE_REDIS_DB = 9  # one of its own (tests/integration/conftest.py lists the others)
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """Two volume servers, two copies of everything. start.sh's deletion sync is off (0): these tests watch what
    SeaweedFS does without it, and run `sync_replica_deletions` themselves."""
    server = start_seaweedfs(
        tmp_path_factory.mktemp("replicated"), volume_servers=2, replication="001", sync_deletions_seconds=0
    )
    devstack.ensure_buckets(server.endpoint, server.credentials, [BUCKET])
    try:
        yield server
    finally:
        server.kill_all()


@pytest.fixture
def lost(replicated: SeaweedServer) -> Iterator[devstack.VolumeServer]:
    """The extra volume server, to be killed by the test; running again (and in sync) afterwards."""
    [volume] = replicated.extra_volume_servers
    try:
        yield volume
    finally:
        if not volume.running:
            volume.start()


def put(server: SeaweedServer, body: bytes = b"") -> tuple[str, tuple[str, ...]]:
    key = f"results/{uuid.uuid4().hex}.jpg"
    server.client().put_object(Bucket=BUCKET, Key=key, Body=body or key.encode() * 20)
    fids = chunk_file_ids(server, BUCKET, key)
    assert fids, "no chunk recorded for the object"
    return key, fids


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_an_object_is_stored_on_two_volume_servers(replicated: SeaweedServer) -> None:
    _, fids = put(replicated)
    assert len(replicated.volume_urls) == 2
    assert set(copies(replicated, fids)) == set(replicated.volume_urls)


def test_replication_the_servers_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 2 volume servers"):
        start_seaweedfs(tmp_path, replication="001")
    with pytest.raises(ValueError, match="racks"):
        start_seaweedfs(tmp_path, volume_servers=3, replication="010")


def test_the_extra_volume_server_serves_only_our_tokens(replicated: SeaweedServer, tmp_path: Path) -> None:
    # Issue 9 holds for the second copy too: it shares the JWT keys, so it wants a token only SeaweedFS signs.
    _, [fid, *_] = put(replicated)
    [extra] = replicated.extra_volume_servers

    def get(token: str) -> int:
        headers = {"Authorization": f"BEARER {token}"} if token else {}
        try:
            with _no_proxy.open(urllib.request.Request(f"{extra.url}/{fid}", headers=headers), timeout=3) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    devstack.write_weed_security(tmp_path)  # other keys: a token that looks right but is not ours
    assert get("") == 401
    assert get(read_token(tmp_path, fid)) == 401
    assert get(read_token(replicated.data_dir, fid)) == 200


def test_objects_written_before_a_volume_server_is_lost_stay_readable(
    replicated: SeaweedServer, lost: devstack.VolumeServer
) -> None:
    stored = {key: key.encode() * 20 for key, _ in (put(replicated) for _ in range(5))}
    lost.kill()
    client = replicated.client()
    for key, body in stored.items():
        url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60)
        with _no_proxy.open(url, timeout=5) as answer:
            assert answer.read() == body


@pytest.fixture
def eraser_backends(replicated: SeaweedServer, redis_server: RedisServer) -> Backends:
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{ERASURE_REDIS_DB}"
    settings = service_settings(redis_url, replicated, results_bucket=BUCKET, sources_bucket=f"{BUCKET}-sources")
    backends = Backends.connect(settings)
    backends.redis.flushdb()
    return backends


def store(backends: Backends, server: SeaweedServer) -> tuple[str, tuple[str, ...]]:
    """A result stored through the project's ObjectStore, tracked for erasure; its job id and chunk ids."""
    job_id = uuid.uuid4().hex
    key = f"results/{job_id}.jpg"
    backends.eraser.track(ObjectKind.RESULT, key, job_id, time.time(), 60)
    backends.storage.put(BUCKET, key, b"a portrait" * 50, "image/jpeg")
    fids = chunk_file_ids(server, BUCKET, key)
    assert len(copies(server, fids)) == 2
    return job_id, fids


def erase(backends: Backends, job_id: str) -> None:
    """Through the project's Eraser (the janitor's path): delete, verify, audit."""
    entry = backends.eraser.erase(ObjectKind.RESULT, f"results/{job_id}.jpg", job_id, Deleter.JANITOR, "test")
    assert entry is not None and entry.verified


def test_an_erasure_leaves_no_copy_on_either_volume_server(
    replicated: SeaweedServer, eraser_backends: Backends
) -> None:
    job_id, fids = store(eraser_backends, replicated)
    erase(eraser_backends, job_id)
    # The filer deletes the chunks after the S3 DELETE has answered (~0.7 s measured): a bounded wait.
    assert eventually(lambda: copies(replicated, fids) == ()), copies(replicated, fids)


def test_a_volume_server_down_during_an_erasure_brings_its_copy_back_until_deletions_are_synced(
    replicated: SeaweedServer, eraser_backends: Backends, lost: devstack.VolumeServer
) -> None:
    kept, kept_fids = put(replicated)
    job_id, fids = store(eraser_backends, replicated)
    lost.kill()
    erase(eraser_backends, job_id)
    assert eventually(lambda: copies(replicated, fids) == ())  # the running server's copy goes
    # What SeaweedFS does on its own: the master no longer listed the lost server among the volume's copies, so
    # nobody asked it to delete, and nothing retries. Back, it serves the erased portrait again.
    lost.process.start()
    lost.process.wait_ready(lost.ready, 30)
    assert copies(replicated, fids) == (lost.url,)
    # The fix: the deletion the other copy has is applied to it; what was not deleted stays, twice.
    devstack.sync_replica_deletions(replicated.master_address)
    assert copies(replicated, fids) == ()
    assert set(copies(replicated, kept_fids)) == set(replicated.volume_urls)
    assert replicated.client().get_object(Bucket=BUCKET, Key=kept)["Body"].read() == kept.encode() * 20


def test_a_restarted_volume_server_serves_nothing_erased_while_it_was_down(
    replicated: SeaweedServer, eraser_backends: Backends, lost: devstack.VolumeServer
) -> None:
    job_id, fids = store(eraser_backends, replicated)
    lost.kill()
    erase(eraser_backends, job_id)
    lost.start()  # devstack's start syncs the deletions it missed
    assert eventually(lambda: copies(replicated, fids) == ())


def test_orphan_purge_removes_a_copy_only_one_server_holds(
    replicated: SeaweedServer, lost: devstack.VolumeServer, tmp_path: Path
) -> None:
    # The backstop for a copy no deletion record speaks of any more: volume.fsck finds chunks no filer entry
    # refers to. With a cutoff of 1 s here; 10 min by default, to spare uploads not yet committed.
    kept, kept_fids = put(replicated)
    gone, fids = put(replicated)
    lost.kill()
    replicated.client().delete_object(Bucket=BUCKET, Key=gone)
    assert eventually(lambda: copies(replicated, fids) == ())
    lost.process.start()
    lost.process.wait_ready(lost.ready, 30)
    assert copies(replicated, fids) == (lost.url,)
    time.sleep(1.1)  # both objects older than the cutoff
    devstack.purge_orphan_chunks(replicated.master_address, tmp_path, cutoff="1s")
    assert copies(replicated, fids) == ()
    assert set(copies(replicated, kept_fids)) == set(replicated.volume_urls)


def test_restarting_weed_server_keeps_both_copies_and_the_extra_server(replicated: SeaweedServer) -> None:
    # The master, filer and S3 gateway come back on the same ports and data; the extra volume server, left
    # running, heartbeats to the new master by itself, and `restart` waits for it: new objects get two copies.
    key, fids = put(replicated)
    replicated.restart()
    assert set(copies(replicated, fids)) == set(replicated.volume_urls)
    _, new_fids = put(replicated)
    assert set(copies(replicated, new_fids)) == set(replicated.volume_urls)
    assert replicated.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode() * 20


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """Three volume servers, two copies, and start.sh's deletion sync every second."""
    server = start_seaweedfs(
        tmp_path_factory.mktemp("trio"), volume_servers=3, replication="001", sync_deletions_seconds=1
    )
    devstack.ensure_buckets(server.endpoint, server.credentials, [BUCKET])
    try:
        yield server
    finally:
        server.kill_all()


def test_a_third_volume_server_keeps_writes_going_while_one_is_lost(trio: SeaweedServer) -> None:
    # With two servers and two copies a PUT waits ~30 s for a volume the master cannot place, then fails
    # (docs/storage.md); with a third, the master places new volumes on the two left.
    _, fids = put(trio)
    [holder] = [v for v in trio.extra_volume_servers if v.url in copies(trio, fids)][:1]
    holder.kill()
    try:
        client = trio.client(max_attempts=1, read_timeout=10)
        for _ in range(3):
            key = f"results/{uuid.uuid4().hex}.jpg"
            client.put_object(Bucket=BUCKET, Key=key, Body=b"written while a server is lost")
            assert len(copies(trio, chunk_file_ids(trio, BUCKET, key))) == 2
    finally:
        holder.start()


def test_start_sh_syncs_the_deletions_a_returning_volume_server_missed(trio: SeaweedServer) -> None:
    # The loop beside each extra volume server (deploy/seaweedfs/start.sh, as the local run and the dev overlay
    # run it), not devstack's own sync: the server is started bare.
    key, fids = put(trio)
    [holder] = [v for v in trio.extra_volume_servers if v.url in copies(trio, fids)][:1]
    holder.kill()
    trio.client().delete_object(Bucket=BUCKET, Key=key)
    assert eventually(lambda: copies(trio, fids) == ())
    holder.process.start()
    holder.process.wait_ready(holder.ready, 30)
    assert eventually(lambda: copies(trio, fids) == (), timeout=15), copies(trio, fids)

"""Issue 9, "storage back door": a stored object is reachable only through the S3 API, signed (or by a
presigned URL), never by an unsigned request to one of SeaweedFS's other HTTP ports."""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from scripts import devstack, storage_backdoor
from scripts.devstack import SeaweedServer

pytestmark = pytest.mark.integration

BUCKET = "backdoor-test"
BODY = b"a portrait nobody may read without a signature"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def stored(s3_server: SeaweedServer) -> str:
    devstack.ensure_buckets(s3_server.endpoint, s3_server.credentials, [BUCKET])
    key = f"results/{uuid.uuid4().hex}.jpg"
    s3_server.client().put_object(Bucket=BUCKET, Key=key, Body=BODY)
    return key


@pytest.fixture(scope="module")
def attempts(s3_server: SeaweedServer, stored: str) -> list[storage_backdoor.Attempt]:
    return storage_backdoor.unsigned_reads(s3_server.ports, BUCKET, stored)


def test_the_probe_found_the_object_it_attacks(s3_server: SeaweedServer, stored: str) -> None:
    # Otherwise the volume-server attempts would only show that a made-up file id is refused.
    assert storage_backdoor.file_id(s3_server.ports, BUCKET, stored)


@pytest.mark.parametrize(
    "port, what",
    [
        ("filer", "GET object"),
        ("filer", "list bucket"),
        ("master", "lookup volume"),
        ("master", "lookup file id (token)"),
        ("master", "GET object by file id"),
        ("master", "assign file id (write)"),
        ("volume", "GET object by file id"),
        ("volume", "PUT new file id"),
    ],
)
def test_unsigned_path_is_refused(attempts: list[storage_backdoor.Attempt], port: str, what: str) -> None:
    [attempt] = [a for a in attempts if (a.port, a.what) == (port, what)]
    assert attempt.refused, attempt.row()
    # An HTTP refusal (the port answers: 401 no JWT, 404 API switched off), not a server that is down.
    assert attempt.status in (401, 403, 404), attempt.row()


def test_no_unsigned_path_is_open(attempts: list[storage_backdoor.Attempt]) -> None:
    # Includes the volume read with a token from the master, should one ever be handed out again.
    assert all(a.refused for a in attempts), storage_backdoor.summary(attempts)


def test_signed_and_presigned_reads_still_work(s3_server: SeaweedServer, stored: str) -> None:
    client = s3_server.client()
    assert client.get_object(Bucket=BUCKET, Key=stored)["Body"].read() == BODY
    assert stored in [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="results/")["Contents"]]
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": stored}, ExpiresIn=60)
    with _no_proxy.open(url, timeout=5) as response:
        assert response.read() == BODY


def test_signed_write_and_delete_still_work(s3_server: SeaweedServer) -> None:
    client = s3_server.client()
    key = f"sources/{uuid.uuid4().hex}.jpg"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"x" * (5 << 20))  # > 4 MiB: more than one chunk
    assert len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == 5 << 20
    client.delete_object(Bucket=BUCKET, Key=key)
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=key)


def test_weed_shell_still_configures_the_filer(s3_server: SeaweedServer) -> None:
    rule = devstack.configure_prefix_ttl(s3_server.master_address, f"{BUCKET}/sources", "5m")
    assert rule["ttl"] == "5m"


def test_weed_shell_cannot_read_object_content(s3_server: SeaweedServer, stored: str) -> None:
    # `weed shell` outside the server's directory has no JWT keys: it sees metadata (gRPC) but the volume
    # server refuses it the bytes.
    with pytest.raises(RuntimeError, match="401"):
        devstack.run_weed_shell(s3_server.master_address, [f"fs.cat /buckets/{BUCKET}/{stored}"])


def test_security_file_is_owner_only(s3_server: SeaweedServer) -> None:
    path = s3_server.data_dir / devstack.WEED_SECURITY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().count("key = ") == 4

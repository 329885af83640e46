"""Issue 9, "storage back door": a stored object is reachable only through the S3 API, signed (or by a
presigned URL), never by an unsigned request to one of SeaweedFS's other HTTP ports, nor over gRPC without
the client certificate of SeaweedFS's own CA (mutual TLS)."""

from __future__ import annotations

import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from scripts import devstack, storage_backdoor
from scripts.devstack import SeaweedServer, status_pages

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
    # Otherwise the volume-server attempts would only show that a made-up file id is refused. (`weed shell`
    # with our client certificate, found by the master address: `start_seaweedfs` made it.)
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


GRPC_PARTS = ("master", "volume", "filer", "s3")
# What a server that refuses says: it closes a plaintext connection; a TLS one without a client certificate
# ends with an alert (or just closes). Not: nothing listening (ConnectionRefusedError), or a timeout.
_REFUSALS = {
    "closed",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLEOFError",
    "UNEXPECTED_EOF_WHILE_READING",
    "ConnectionResetError",
    "BrokenPipeError",
}


@pytest.mark.parametrize("part", GRPC_PARTS)
@pytest.mark.parametrize("what", ["plaintext gRPC", "TLS gRPC, no client cert"])
def test_grpc_without_our_client_certificate_is_refused(
    attempts: list[storage_backdoor.Attempt], part: str, what: str
) -> None:
    # The TCP port, and weed's /tmp unix socket for it: the same gRPC server, so the same mutual TLS.
    tried = [a for a in attempts if a.port in (f"{part}-grpc", f"{part}-grpc.sock") and a.what == what]
    assert {a.port for a in tried} == {f"{part}-grpc", f"{part}-grpc.sock"}
    for attempt in tried:
        assert attempt.refused and attempt.error in _REFUSALS, attempt.row()


def test_no_unsigned_path_is_open(attempts: list[storage_backdoor.Attempt]) -> None:
    # Includes the volume read with a token from the master, should one ever be handed out again.
    assert all(a.refused for a in attempts), storage_backdoor.summary(attempts)


def test_status_pages_answer_on_loopback_only_the_ones_no_flag_closes(s3_server: SeaweedServer) -> None:
    # #25: what cannot be closed, exactly. weed 4.48 serves the master's UI (/, /ui/index.html) and
    # /cluster/status and the volume server's /status (disk use, per-bucket file and delete counts) to anyone
    # who reaches their port, whatever start.sh's flags (-disableHttp, the JWT keys; -whiteList guards writes
    # only). So compose keeps those ports on the container's loopback and the dev overlay's NetworkPolicy on
    # the pod (tests/deploy); the local run and this server keep them on 127.0.0.1 (PRIVACY.md says why that
    # is acceptable): they answer here, and nothing else does. None grants a page of another origin CORS, so
    # no web page in the developer's browser reads them.
    pages = status_pages.probe(s3_server.ports)
    assert status_pages.answered(pages) == status_pages.OPEN_WHERE_REACHABLE, [p.row() for p in pages]
    assert not [p.row() for p in pages if p.answered and p.allow_origin], "a status page grants CORS"
    # The rest is closed by weed itself: the master's HTTP API, the filer's, metrics (no -metricsPort).
    for part, path in (("master", "/dir/status"), ("master", "/vol/status"), ("filer", "/"), ("volume", "/metrics")):
        [page] = [p for p in pages if (p.part, p.path) == (part, path)]
        assert page.status in (401, 403, 404), page.row()


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
    rule = devstack.configure_prefix_ttl(
        s3_server.master_address, f"{BUCKET}/sources", "5m", security_dir=s3_server.data_dir
    )
    assert rule["ttl"] == "5m"


def _weed(
    args: list[str], cwd: Path, *, stdin: str = "", certificate_of: Path | None = None, timeout: float = 10
) -> tuple[int | None, str]:
    """A weed client run by someone outside the server's directory: no security.toml, and our gRPC client
    certificate only if `certificate_of` (a server's security directory) is given. (None, output) when it
    got nowhere before `timeout` (weed shell retries a refused connection forever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
    env.update(devstack.weed_client_env(certificate_of) if certificate_of else {})
    try:
        result = subprocess.run(
            [str(devstack.weed_path()), "-logtostderr", *args],
            input=stdin,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return None, f"{exc.stdout or ''}{exc.stderr or ''}"
    return result.returncode, result.stdout + result.stderr


def test_weed_shell_without_our_client_certificate_reads_nothing(
    s3_server: SeaweedServer, stored: str, tmp_path: Path
) -> None:
    command = f"fs.meta.cat /buckets/{BUCKET}/{stored}\n"
    code, out = _weed(["shell", f"-master={s3_server.master_address}"], tmp_path, stdin=command, timeout=8)
    assert code != 0 and "fileId" not in out, out
    # The same command with the certificate gets the metadata: the refusal above is the certificate's doing.
    code, out = _weed(
        ["shell", f"-master={s3_server.master_address}"], tmp_path, stdin=command, certificate_of=s3_server.data_dir
    )
    assert code == 0 and '"fileId"' in out, out


def test_weed_backup_without_our_client_certificate_copies_nothing(
    s3_server: SeaweedServer, stored: str, tmp_path: Path
) -> None:
    fid = storage_backdoor.file_id(s3_server.ports, BUCKET, stored, security_dir=s3_server.data_dir)
    assert fid
    backup = [
        "backup",
        f"-volumeId={fid.split(',')[0]}",
        f"-master={s3_server.master_address}",
        f"-collection={BUCKET}",
    ]
    stranger, ours = tmp_path / "stranger", tmp_path / "ours"
    for folder in (stranger, ours):
        folder.mkdir()
    _weed([*backup, f"-dir={stranger}"], stranger)
    assert not any(BODY in path.read_bytes() for path in stranger.iterdir())
    # With the certificate `weed backup` copies the volume, object and all: what the mutual TLS keeps out.
    code, out = _weed([*backup, f"-dir={ours}"], ours, certificate_of=s3_server.data_dir)
    assert code == 0 and any(BODY in path.read_bytes() for path in ours.iterdir()), out


def test_weed_shell_cannot_read_object_content(s3_server: SeaweedServer, stored: str) -> None:
    # Our `weed shell` gets the gRPC client certificate but not the JWT keys: it sees metadata (gRPC) but
    # the volume server refuses it the bytes.
    with pytest.raises(RuntimeError, match="401"):
        devstack.run_weed_shell(
            s3_server.master_address, [f"fs.cat /buckets/{BUCKET}/{stored}"], security_dir=s3_server.data_dir
        )


def test_security_files_are_owner_only(s3_server: SeaweedServer) -> None:
    path = s3_server.data_dir / devstack.WEED_SECURITY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.count("key = ") == 4 + 5  # JWT keys; the gRPC key of each server and of their client side
    for section in ("[grpc]", "[grpc.master]", "[grpc.volume]", "[grpc.filer]", "[grpc.s3]", "[grpc.client]"):
        assert section in text
    grpc = s3_server.data_dir / devstack.WEED_GRPC_DIR
    for folder in (grpc, grpc / "server", grpc / "client"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    files = sorted(p.relative_to(grpc).as_posix() for p in grpc.rglob("*") if p.is_file())
    assert files == [
        "client/ca.crt",
        "client/client.crt",
        "client/client.key",
        "server/ca.crt",
        "server/server.crt",
        "server/server.key",
    ]
    assert all((grpc / f).stat().st_mode & 0o777 == 0o600 for f in files)

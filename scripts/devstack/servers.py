"""Running Redis and SeaweedFS servers: start, wait until ready, kill, restart."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.devstack.commands import redis_command, weed_command
from scripts.devstack.credentials import S3Credentials, generate_credentials, write_s3_identities
from scripts.devstack.ports import LOOPBACK, WeedPorts, free_port
from scripts.devstack.processes import ManagedProcess
from scripts.devstack.readiness import redis_ready, weed_volume_server_ready
from scripts.devstack.s3 import s3_client, s3_ready
from scripts.devstack.security import write_weed_security
from scripts.devstack.volumes import NO_REPLICATION, VolumeServer, check_replication, volume_server
from scripts.devstack.weed_shell import limit_volume_growth, remember_security_dir


@dataclass
class RedisServer:
    """A running redis-server (from `start_redis`)."""

    port: int
    data_dir: Path
    process: ManagedProcess
    persist: bool = False

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop(grace=10.0)

    def restart(self, timeout: float = 10.0) -> float:
        """Kill and start again on the same port (data is gone unless persist=True). Returns the startup
        time."""
        self.process.kill()
        self.process.start()
        return self.process.wait_ready(lambda: redis_ready(self.url), timeout)


def start_redis(
    data_dir: Path, *, port: int | None = None, persist: bool = False, timeout: float = 10.0
) -> RedisServer:
    """Start redis-server (log and, with persist=True, its AOF under data_dir) and wait for PING."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = ManagedProcess("redis-server", redis_command(port, data_dir, persist=persist), data_dir / "redis.log")
    server = RedisServer(port=port, data_dir=data_dir, process=process, persist=persist)
    process.start()
    try:
        process.wait_ready(lambda: redis_ready(server.url), timeout)
    except BaseException:
        process.kill()
        raise
    return server


@dataclass
class SeaweedServer:
    """A running `weed server` with the S3 gateway (from `start_seaweedfs`), and the volume servers it was
    started with besides its own (#24): `extra_volume_servers`, each of which can be killed and restarted."""

    ports: WeedPorts
    data_dir: Path
    credentials: S3Credentials
    process: ManagedProcess
    extra_volume_servers: tuple[VolumeServer, ...] = ()
    replication: str = NO_REPLICATION  # the master's default (SeaweedFS's xyz): "001" keeps two copies

    @property
    def endpoint(self) -> str:
        return self.ports.s3_endpoint

    @property
    def master_address(self) -> str:
        return self.ports.master_address

    @property
    def master_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.master}"

    @property
    def filer_url(self) -> str:
        return self.ports.filer_url

    @property
    def volume_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.volume}"

    @property
    def volume_urls(self) -> list[str]:
        """Every volume server's URL: the one inside `weed server` first, then the extra ones."""
        return [self.volume_url, *(volume.url for volume in self.extra_volume_servers)]

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client signed with the admin credentials (kwargs go to `s3_client`)."""
        return s3_client(self.endpoint, self.credentials, **kwargs)

    def ready(self) -> bool:
        """S3 answers and every running volume server heartbeats: with replication, a PUT before the second
        one has joined fails (the master cannot place a volume's copies)."""
        running = [volume for volume in self.extra_volume_servers if volume.running]
        return (
            weed_volume_server_ready(self.volume_url)
            and all(volume.ready() for volume in running)
            and s3_ready(self.endpoint, self.credentials)
        )

    def kill(self) -> None:
        """SIGKILL (the only way it stops: see -master.peers in `weed_command`) and remove the /tmp gRPC
        sockets that SIGKILL leaves behind."""
        self.process.kill()
        for path in self.ports.grpc_unix_sockets:
            with contextlib.suppress(FileNotFoundError):
                if path.is_socket():
                    path.unlink()

    def kill_all(self) -> None:
        """Kill the extra volume servers and `weed server` itself."""
        for volume in self.extra_volume_servers:
            volume.kill()
        self.kill()

    def restart(self, timeout: float = 30.0) -> float:
        """Kill and start again on the same ports and data (buckets, objects, TTL rules survive). The extra
        volume servers keep running and heartbeat to the new master by themselves (`ready` waits for it)."""
        self.kill()
        self.process.start()
        return self.process.wait_ready(self.ready, timeout)


def start_seaweedfs(
    data_dir: Path,
    *,
    credentials: S3Credentials | None = None,
    ports: WeedPorts | None = None,
    timeout: float = 30.0,
    attempts: int = 2,
    volume_servers: int = 1,
    replication: str = NO_REPLICATION,
    sync_deletions_seconds: int = 60,
) -> SeaweedServer:
    """Start `weed server` (master, volume, filer, S3) under data_dir, with a fresh security.toml and gRPC
    certificates there (issue 9; `run_weed_shell` finds them by the master address), wait until S3 accepts a
    signed request and the volume server heartbeats, then `limit_volume_growth`.
    With ports=None, a start that fails (typically a port taken between picking it and binding it) is
    retried with fresh ports.
    #24: `volume_servers` > 1 starts that many volume servers in all (`weed volume` processes besides the
    one inside `weed server`, with the same security.toml: `extra_volume_servers`), and `replication` is the
    master's default, e.g. "001": every object on two of them (`check_replication` refuses what cannot be
    met on one machine). `sync_deletions_seconds`: how often each extra volume server applies the deletions it
    missed while away (start.sh; 0: never, for a test that watches what weed does without it)."""
    check_replication(replication, volume_servers)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = credentials or generate_credentials()
    s3_config = write_s3_identities(data_dir / "s3-identities.json", credentials)
    write_weed_security(data_dir)  # read from weed's cwd, below (issue 9)
    for attempt in range(1, attempts + 1):
        chosen = ports or WeedPorts.allocate()
        process = ManagedProcess(
            "weed server",
            weed_command(chosen, data_dir / "data", s3_config, replication=replication),
            data_dir / "weed.log",
            cwd=data_dir,  # weed reads security.toml (and would read master.toml, ...) from its cwd
        )
        (data_dir / "data").mkdir(exist_ok=True)
        extras = tuple(
            volume_server(index, data_dir, chosen.master_address, sync_deletions_seconds=sync_deletions_seconds)
            for index in range(2, volume_servers + 1)
        )
        server = SeaweedServer(
            ports=chosen,
            data_dir=data_dir,
            credentials=credentials,
            process=process,
            extra_volume_servers=extras,
            replication=replication,
        )
        process.start()
        try:
            for volume in extras:  # they retry until the master answers
                volume.data_dir.mkdir(parents=True, exist_ok=True)
                volume.process.start()
            remember_security_dir(server.master_address, data_dir)
            process.wait_ready(server.ready, timeout)
            limit_volume_growth(server.master_address)
            return server
        except BaseException:
            exited = not process.running or not all(v.running for v in extras)  # e.g. port taken, not slow
            server.kill_all()
            if not exited or ports is not None or attempt == attempts:
                raise
    raise AssertionError("unreachable")

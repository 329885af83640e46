"""A Redis primary with replicas and Sentinels, as production runs it (#24): real redis-server processes on
loopback, for the failover tests and the chaos run's multi-host rows.

    rs = start_redis_set(tmp / "redis", replicas=1, sentinels=3)
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_sentinels=rs.sentinel_list)
    rs.primary.kill(); rs.wait_for_failover(old_port)  # a replica is promoted

Sentinel's timings are the production defaults scaled down so a test sees a failover in seconds: the primary
counts as down after `down_after_ms` without a reply (deployments use 5000), and a quorum of two of the three
Sentinels must agree. A killed primary that is started again comes back empty, as a primary, until the
Sentinels turn it into a replica of the new one (`+convert-to-slave`), which they do within a second or two.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

from scripts.devstack.commands import redis_command
from scripts.devstack.ports import LOOPBACK, free_port
from scripts.devstack.processes import ManagedProcess
from scripts.devstack.readiness import redis_ready
from scripts.devstack.servers import RedisServer

MASTER_NAME = "portraits"


@dataclass
class SentinelServer:
    port: int
    process: ManagedProcess

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(LOOPBACK, self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass
class RedisSet:
    """The servers of a Sentinel-managed set. `servers` holds the data nodes (the first one started as the
    primary); which is primary now is the Sentinels' answer, `primary_port()`."""

    servers: list[RedisServer]
    sentinels: list[SentinelServer]
    master_name: str = MASTER_NAME
    _by_port: dict[int, RedisServer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_port = {server.port: server for server in self.servers}

    @property
    def sentinel_list(self) -> str:
        """`PORTRAITS_REDIS_SENTINELS`'s value."""
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def primary_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                reply: Any = sentinel.client().sentinel_get_master_addr_by_name(self.master_name)
                if reply:
                    return int(reply[1])
        return None

    @property
    def primary(self) -> RedisServer:
        port = self.primary_port()
        if port is None:
            raise RuntimeError("no Sentinel names a primary")
        return self._by_port[port]

    def replicas(self) -> list[RedisServer]:
        port = self.primary_port()
        return [server for server in self.servers if server.port != port]

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until the Sentinels name a primary other than `old_port` and it takes writes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            port = self.primary_port()
            if port is not None and port != old_port and _takes_writes(port):
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"no failover from port {old_port} within {timeout} s")

    def wait_for_replicas(self, count: int, timeout: float = 30.0) -> float:
        """Seconds until the primary has `count` replicas online and caught up (a WAIT for them answers)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(redis.RedisError, RuntimeError):
                client = redis.Redis(LOOPBACK, self.primary.port, socket_timeout=2)
                client.set("portraits:devstack:replication-probe", "1")
                if int(client.wait(count, 200)) >= count:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"fewer than {count} replicas after {timeout} s")

    def rejoin_as_replica(self, server: RedisServer) -> None:
        """Make `server`'s next start a replica of the primary the Sentinels name now (unless that is itself): a
        primary that died and comes back must not come back as a second primary, even for the seconds until the
        Sentinels would turn it (the dev overlay's redis.sh asks them the same way)."""
        port = self.primary_port()
        command = [part for part in server.process.command]
        if "--replicaof" in command:
            at = command.index("--replicaof")
            del command[at : at + 3]
        if port is not None and port != server.port:
            command += ["--replicaof", LOOPBACK, str(port)]
        server.process.command = command

    def kill_all(self) -> None:
        for sentinel in self.sentinels:
            sentinel.process.kill()
        for server in self.servers:
            server.kill()


def _takes_writes(port: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis(LOOPBACK, port, socket_timeout=0.5, socket_connect_timeout=0.5)
        return bool(client.info("replication").get("role") == "master")
    return False


def data_node_command(port: int, data_dir: Path, *, persist: bool = False) -> list[str]:
    """A primary or replica of the set: the usual command line (`redis_command`), and a full sync that starts at
    once. Redis 7.0 waits 5 s (`repl-diskless-sync-delay`) for more replicas to share a sync; with one replica that
    is 5 s more before a rejoining server holds anything, and with `redis_wait_replicas` 5 s more of refused
    uploads (measured in the chaos run's failover row, #24)."""
    return [*redis_command(port, data_dir, persist=persist), "--repl-diskless-sync-delay", "0"]


def replica_command(port: int, data_dir: Path, primary_port: int, *, persist: bool = False) -> list[str]:
    """A replica of the primary on `primary_port`: `data_node_command` plus `replicaof`."""
    return [*data_node_command(port, data_dir, persist=persist), "--replicaof", LOOPBACK, str(primary_port)]


def sentinel_config(port: int, primary_port: int, *, quorum: int, down_after_ms: int, failover_ms: int) -> str:
    """A Sentinel's configuration file (Sentinel rewrites it as it learns the set, so each has its own)."""
    return "\n".join(
        [
            f"port {port}",
            f"bind {LOOPBACK}",
            "daemonize no",
            'logfile ""',
            f"sentinel monitor {MASTER_NAME} {LOOPBACK} {primary_port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
            "",
        ]
    )


def start_redis_set(
    data_dir: Path,
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    failover_ms: int = 10_000,
    persist: bool = False,
    timeout: float = 20.0,
) -> RedisSet:
    """Start a primary, `replicas` replicas of it and `sentinels` Sentinels (quorum: a majority), and wait until
    the replicas are in sync and every Sentinel sees them all.

    persist=True gives the data nodes their append-only file. A set whose servers are restarted automatically
    needs it: a primary without one that restarts before the Sentinels notice comes back empty, still primary,
    and its replicas copy the emptiness (Redis's replication docs, "Safety of replication when master has
    persistence turned off")."""
    data_dir = Path(data_dir)
    started: list[ManagedProcess] = []
    try:
        servers = []
        primary_port = free_port()
        for index in range(replicas + 1):
            port = primary_port if index == 0 else free_port()
            folder = data_dir / f"redis-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            command = (
                data_node_command(port, folder, persist=persist)
                if index == 0
                else replica_command(port, folder, primary_port, persist=persist)
            )
            process = ManagedProcess(f"redis-{index}", command, folder / "redis.log")
            started.append(process.start())
            server = RedisServer(port=port, data_dir=folder, process=process, persist=persist)
            process.wait_ready(partial(redis_ready, server.url), timeout)
            servers.append(server)
        quorum = sentinels // 2 + 1
        watchers = []
        for index in range(sentinels):
            port = free_port()
            folder = data_dir / f"sentinel-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"
            config.write_text(
                sentinel_config(port, primary_port, quorum=quorum, down_after_ms=down_after_ms, failover_ms=failover_ms)
            )
            command = [*redis_command(port, folder)[:1], str(config), "--sentinel"]
            process = ManagedProcess(f"sentinel-{index}", command, folder / "sentinel.log")
            started.append(process.start())
            watchers.append(SentinelServer(port, process))
        redis_set = RedisSet(servers, watchers)
        redis_set.wait_for_replicas(replicas, timeout)
        _wait_until_sentinels_see(redis_set, replicas, sentinels, timeout)
        return redis_set
    except BaseException:
        for process in started:
            process.kill()
        raise


def _wait_until_sentinels_see(redis_set: RedisSet, replicas: int, sentinels: int, timeout: float) -> None:
    # A failover needs every Sentinel to know the replicas (learnt from the primary's INFO every 10 s at first)
    # and the other Sentinels (hello messages every 2 s): a fault injected before that would wait for them.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for sentinel in redis_set.sentinels:
            with contextlib.suppress(redis.RedisError):
                seen: Any = sentinel.client().sentinel_master(MASTER_NAME)
                if int(seen["num-slaves"]) >= replicas and int(seen["num-other-sentinels"]) >= sentinels - 1:
                    ready += 1
        if ready == sentinels:
            return
        time.sleep(0.1)
    raise TimeoutError("the Sentinels did not learn the set in time")

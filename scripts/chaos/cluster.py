"""The multi-host stack a chaos run breaks (#24): two "hosts", each a gateway, a worker and a janitor, sharing a
Redis set and a SeaweedFS cluster, all on loopback under one supervisor (scripts/chaos/supervisor.py).

    Redis      a primary and a replica, each with its append-only file, watched by three Sentinels (quorum two,
               down after `DOWN_AFTER_MS`); and one address in front of them, a proxy that follows the primary
               the Sentinels name, as a managed service's endpoint does (`Endpoint`)
    SeaweedFS  `weed server` plus two more volume servers, the master's replication "001": every object on two
               of the three, so one can be lost and new volumes still find two (with two servers, every PUT
               fails while one is down: docs/storage.md)
    host a     reaches Redis through the Sentinels (PORTRAITS_REDIS_SENTINELS)
    host b     reaches Redis through the one address (PORTRAITS_REDIS_URL only)

Both hosts' gateways WAIT for one replica before their 202 (`redis_wait_replicas=1`). A host is a failure unit:
`kill_host` SIGKILLs its three processes at once.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis

from scripts.chaos.stack import service_env
from scripts.chaos.supervisor import Program, Supervisor
from scripts.devstack import ManagedProcess, SeaweedServer, ensure_buckets, free_port, start_seaweedfs
from scripts.devstack.redis_set import RedisSet, start_redis_set
from scripts.devstack.tcp_proxy import TcpProxy
from scripts.worker_process import WorkerProcess
from shared.backends import redis_client
from shared.settings import PROJECT_ROOT, Settings

GUNICORN_CONF = PROJECT_ROOT / "services" / "gateway" / "gunicorn_conf.py"
DOWN_AFTER_MS = 2000  # Sentinel's "primary is down" delay; the dev overlay uses 5000
HOSTS = ("a", "b")
# How often each extra volume server applies the deletions it missed while down (deploy/seaweedfs/start.sh; 60 s
# in deployments): shorter here so the volume row sees a returned server's copies go within its run.
SYNC_DELETIONS = 10


class Endpoint:
    """One address for the Redis set that follows the primary the Sentinels name, within `interval`: a managed
    service's primary endpoint. On a switch it cuts every open connection (`drop`), as a provider's moved DNS
    name and a restarted node do; with drop=False they stay on the old server, demoted, which answers READONLY."""

    def __init__(self, redis_set: RedisSet, interval: float = 0.2) -> None:
        port = redis_set.primary_port()
        assert port is not None
        self.proxy = TcpProxy(port)
        self.drop = True
        self.switches: list[float] = []  # when the endpoint moved (time.time())
        self._set = redis_set
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="redis-endpoint", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self.proxy.url

    def close(self) -> None:
        self._stop.set()
        self.proxy.close()

    def _follow(self) -> None:
        while not self._stop.wait(self._interval):
            port = self._set.primary_port()
            if port is not None and port != self.proxy.target_port:
                self.proxy.retarget(port, drop=self.drop)
                self.switches.append(time.time())


@dataclass
class Host:
    name: str
    settings: Settings
    gateway_url: str
    worker: WorkerProcess

    @property
    def programs(self) -> tuple[str, ...]:
        return (f"{self.name}/gateway", f"{self.name}/worker", f"{self.name}/janitor")


class ClusterStack:
    def __init__(self, workdir: Path, **overrides: Any) -> None:
        self.workdir = Path(workdir)
        self.overrides = overrides
        self._supervisor = Supervisor()
        self.programs = self._supervisor.programs
        self.held_down = self._supervisor.held_down
        self.redis: RedisSet
        self.endpoint: Endpoint
        self.s3: SeaweedServer
        self.hosts: dict[str, Host] = {}

    # --- start and stop ---

    def start(self) -> ClusterStack:
        self.redis = start_redis_set(
            self.workdir / "redis", replicas=1, sentinels=3, down_after_ms=DOWN_AFTER_MS, persist=True
        )
        for index, server in enumerate(self.redis.servers):
            rejoin = partial(self.redis.rejoin_as_replica, server)
            self._supervisor.add(Program(f"redis-{index}", server.process, before_start=rejoin))
        for index, sentinel in enumerate(self.redis.sentinels):
            self._supervisor.add(Program(f"sentinel-{index}", sentinel.process))
        self.endpoint = Endpoint(self.redis)
        self.s3 = start_seaweedfs(
            self.workdir / "seaweedfs", volume_servers=3, replication="001", sync_deletions_seconds=SYNC_DELETIONS
        )
        self._supervisor.add(Program("s3", self.s3.process, cleanup=self.s3.kill))
        for volume in self.s3.extra_volume_servers:
            self._supervisor.add(Program(volume.process.name, volume.process, cleanup=volume.kill))
        common: dict[str, Any] = {
            "s3_endpoint_url": self.s3.endpoint,
            "s3_access_key_id": self.s3.credentials.access_key,
            "s3_secret_access_key": self.s3.credentials.secret_key,
            "log_json": False,
            "worker_processes": 1,
            "redis_wait_replicas": 1,
            # A pass every 15 s rather than 60: the volume row waits for it to adopt what a failover orphaned.
            "janitor_reconcile_seconds": 15.0,
            **self.overrides,
        }
        by_host: dict[str, dict[str, Any]] = {"a": {"redis_sentinels": self.redis.sentinel_list}, "b": {}}
        for name in HOSTS:
            gateway_port = free_port()
            values: dict[str, Any] = {
                "redis_url": self.endpoint.url,  # host a: only its database number counts, beside the Sentinels
                "gateway_bind": f"127.0.0.1:{gateway_port}",
                "janitor_metrics_port": free_port(),
                **by_host[name],
                **common,
            }
            settings = Settings(**values)
            self.hosts[name] = self._start_host(name, settings, f"http://127.0.0.1:{gateway_port}")
        ensure_buckets(
            self.s3.endpoint, self.s3.credentials, [self.settings.sources_bucket, self.settings.results_bucket]
        )
        for host in self.hosts.values():
            self.programs[f"{host.name}/gateway"].process.wait_ready(partial(self._ready, host), timeout=60)
            host.worker.process.wait_ready(partial(_serving, host.worker), 180, interval=0.25)
        self._supervisor.start()
        return self

    def _start_host(self, name: str, settings: Settings, gateway_url: str) -> Host:
        folder = self.workdir / f"host-{name}"
        metrics = folder / "metrics-gateway"
        metrics.mkdir(parents=True, exist_ok=True)
        env = service_env(settings)
        gateway = ManagedProcess(
            f"{name}/gateway",
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "services.gateway.wsgi:app"],
            folder / "gateway.log",
            cwd=PROJECT_ROOT,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        )
        janitor = ManagedProcess(
            f"{name}/janitor",
            [sys.executable, "-m", "services.janitor"],
            folder / "janitor.log",
            cwd=PROJECT_ROOT,
            env=env,
        )
        worker = WorkerProcess(settings, folder / "worker")
        for program_name, process in (("gateway", gateway), ("janitor", janitor), ("worker", worker.process)):
            self._supervisor.add(Program(f"{name}/{program_name}", process.start()))
        return Host(name, settings, gateway_url, worker)

    def stop(self) -> None:
        self._supervisor.stop()
        with contextlib.suppress(Exception):
            self.endpoint.close()

    def __enter__(self) -> ClusterStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- for faults and reports ---

    @property
    def settings(self) -> Settings:
        """Host a's settings (Sentinel clients): what a fault's own Redis and S3 clients use."""
        return self.hosts["a"].settings

    def redis_client(self, timeout: float = 1.0) -> redis.Redis:
        """A client that follows the primary through a failover (the Sentinels)."""
        return redis_client(self.settings.model_copy(update={"redis_timeout": timeout}))

    def kill_host(self, name: str) -> None:
        """Every process of host `name` at once (SIGKILL): a machine lost. Hold it down with `held_down`."""
        for program in self.hosts[name].programs:
            self.programs[program].kill()

    def _ready(self, host: Host) -> bool:
        with urllib.request.urlopen(host.gateway_url + "/readyz", timeout=2) as response:
            return int(response.status) == 200


def _serving(worker: WorkerProcess) -> bool:
    return worker.processes_in("ready") >= 1


def wait_for(check: Any, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `check()` is true (exceptions count as false), or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - started
        time.sleep(interval)
    return None

"""The real stack a chaos run breaks (issue 9): Redis with its append-only file (as `make run` keeps it),
SeaweedFS with SigV4, the gateway under gunicorn with its deployed configuration, prefork Celery workers and
the janitor — each a separate process on free loopback ports, under a directory of its own.

A supervisor (scripts/chaos/supervisor.py) restarts whatever exits, within a second; a fault that must hold a
server down says so with `held_down`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import redis

from scripts.chaos.supervisor import Program, Supervisor
from scripts.devstack import (
    ManagedProcess,
    RedisServer,
    SeaweedServer,
    ensure_buckets,
    free_port,
    start_redis,
    start_seaweedfs,
)
from scripts.worker_process import WorkerProcess, settings_env
from shared.settings import PROJECT_ROOT, Settings

GUNICORN_CONF = PROJECT_ROOT / "services" / "gateway" / "gunicorn_conf.py"


def _serving(worker: WorkerProcess) -> bool:
    """At least one of the worker's render processes says it is ready (its metrics, shared across processes)."""
    return worker.processes_in("ready") >= 1


class ChaosStack:
    def __init__(self, workdir: Path, *, workers: int = 1, **overrides: Any) -> None:
        self.workdir = Path(workdir)
        self.worker_count = workers
        self.overrides = overrides
        self._supervisor = Supervisor()
        self.programs = self._supervisor.programs
        self.held_down = self._supervisor.held_down
        self.redis: RedisServer
        self.s3: SeaweedServer
        self.settings: Settings
        self.gateway_url = ""
        self.workers: list[WorkerProcess] = []

    # --- start and stop ---

    def start(self) -> ChaosStack:
        self.redis = start_redis(self.workdir / "redis", persist=True)
        self.s3 = start_seaweedfs(self.workdir / "seaweedfs")
        gateway_port = free_port()
        values: dict[str, Any] = {
            "redis_url": self.redis.url,
            "s3_endpoint_url": self.s3.endpoint,
            "s3_access_key_id": self.s3.credentials.access_key,
            "s3_secret_access_key": self.s3.credentials.secret_key,
            "gateway_bind": f"127.0.0.1:{gateway_port}",
            "janitor_metrics_port": free_port(),
            "log_json": False,
            # One render process per worker, as the fault table was measured (the faults kill "the" render
            # process); `make bench-system` asks for the deployed plan instead (#11).
            "worker_processes": 1,
            **self.overrides,
        }
        self.settings = Settings(**values)
        ensure_buckets(
            self.s3.endpoint, self.s3.credentials, [self.settings.sources_bucket, self.settings.results_bucket]
        )
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self._supervisor.add(Program("redis", self.redis.process))
        self._supervisor.add(Program("s3", self.s3.process, cleanup=self.s3.kill))  # the gRPC sockets SIGKILL leaves
        env = service_env(self.settings)
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "services.gateway.wsgi:app"],
            self.workdir / "gateway.log",
            cwd=PROJECT_ROOT,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(self._mkdir("metrics-gateway"))},
        )
        self._supervisor.add(Program("gateway", gateway.start()))
        janitor = ManagedProcess(
            "janitor",
            [sys.executable, "-m", "services.janitor"],
            self.workdir / "janitor.log",
            cwd=PROJECT_ROOT,
            env=env,
        )
        self._supervisor.add(Program("janitor", janitor.start()))
        for index in range(self.worker_count):
            worker = WorkerProcess(self.settings, self.workdir / f"worker-{index}")
            self.workers.append(worker)
            self._supervisor.add(Program(f"worker-{index}", worker.process))
            worker.process.start()
        gateway.wait_ready(lambda: self._get("/readyz") == 200, timeout=60)
        for worker in self.workers:
            worker.process.wait_ready(partial(_serving, worker), 120, interval=0.25)
        self._supervisor.start()
        return self

    def stop(self) -> None:
        self._supervisor.stop()

    def __enter__(self) -> ChaosStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- helpers for faults and reports ---

    def redis_client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def worker_pids(self, index: int = 0) -> tuple[int | None, list[int]]:
        """The Celery parent's pid and its render processes' pids."""
        worker = self.workers[index]
        try:
            return worker.process.pid, worker.child_pids()
        except OSError:
            return worker.process.pid, []

    def _mkdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _get(self, path: str) -> int:
        with urllib.request.urlopen(self.gateway_url + path, timeout=2) as response:
            return int(response.status)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment of a service process started from `settings` (none of this shell's PORTRAITS_ values)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PORTRAITS_")}
    return {**env, **settings_env(settings), "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(interval)
    return False

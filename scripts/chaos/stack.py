"""The real stack a chaos run breaks (issue 9): Redis with its append-only file (as `make run` keeps it),
SeaweedFS with SigV4, the gateway under gunicorn with its deployed configuration, prefork Celery workers and
the janitor — each a separate process on free loopback ports, under a directory of its own.

A small supervisor thread restarts whatever exits, within a second, as supervisord does for `make run` and the
kubelet does for pods; a fault that must hold a server down says so with `held_down`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

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


@dataclass
class Program:
    """One supervised process: restarted when it exits unless a fault holds it down."""

    name: str
    process: ManagedProcess
    restarts: int = 0
    held: bool = False
    on_restart: list[Any] = field(default_factory=list)


class ChaosStack:
    def __init__(self, workdir: Path, *, workers: int = 1, **overrides: Any) -> None:
        self.workdir = Path(workdir)
        self.worker_count = workers
        self.overrides = overrides
        self.programs: dict[str, Program] = {}
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
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
        self.programs["redis"] = Program("redis", self.redis.process)
        self.programs["s3"] = Program("s3", self.s3.process)
        env = self._env()
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "services.gateway.wsgi:app"],
            self.workdir / "gateway.log",
            cwd=PROJECT_ROOT,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(self._mkdir("metrics-gateway"))},
        )
        self.programs["gateway"] = Program("gateway", gateway.start())
        janitor = ManagedProcess(
            "janitor",
            [sys.executable, "-m", "services.janitor"],
            self.workdir / "janitor.log",
            cwd=PROJECT_ROOT,
            env=env,
        )
        self.programs["janitor"] = Program("janitor", janitor.start())
        for index in range(self.worker_count):
            worker = WorkerProcess(self.settings, self.workdir / f"worker-{index}")
            self.workers.append(worker)
            self.programs[f"worker-{index}"] = Program(f"worker-{index}", worker.process)
            worker.process.start()
        gateway.wait_ready(lambda: self._get("/readyz") == 200, timeout=60)
        for worker in self.workers:
            worker.process.wait_ready(partial(_serving, worker), 120, interval=0.25)
        self._supervisor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        for program in reversed(list(self.programs.values())):
            if program.name == "s3":
                self.s3.kill()
            else:
                with contextlib.suppress(Exception):
                    program.process.kill()

    def __enter__(self) -> ChaosStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- supervision ---

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for program in self.programs.values():
                if program.held or program.process.running:
                    continue
                program.process.kill()  # reap it and close its log before starting again
                if program.name == "s3":
                    self.s3.kill()  # also removes the gRPC sockets SIGKILL leaves behind
                program.process.start()
                program.restarts += 1

    @contextlib.contextmanager
    def held_down(self, name: str) -> Iterator[None]:
        """Keep `name` from being restarted while the body runs (a fault holding a server down)."""
        program = self.programs[name]
        program.held = True
        try:
            yield
        finally:
            program.held = False

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

    def _env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PORTRAITS_")}
        return {**env, **settings_env(self.settings), "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}

    def _mkdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _get(self, path: str) -> int:
        with urllib.request.urlopen(self.gateway_url + path, timeout=2) as response:
            return int(response.status)


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(interval)
    return False

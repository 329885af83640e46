"""A real Celery worker process (prefork, as in production) configured from a Settings object: used by the
end-to-end tests and the privacy drill."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path

from scripts.devstack import ManagedProcess, free_port
from shared.settings import PROJECT_ROOT, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "s3_secret_access_key":
            value = settings.s3_secret_access_key.get_secret_value()
        env[f"PORTRAITS_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, workdir: Path, app: str = "services.worker.app") -> None:
        """`app` is the Celery app module (`celery -A`): which renderer a worker loads is its app module, never a
        setting (services/worker/process.py); the failure fixtures pass theirs."""
        self.metrics_port = free_port()
        self.settings = settings.model_copy(update={"worker_metrics_port": self.metrics_port})
        metrics_dir = workdir / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **settings_env(self.settings),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            self.settings.queue_name,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.process = ManagedProcess("celery-worker", command, workdir / "worker.log", cwd=PROJECT_ROOT, env=env)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            body: bytes = response.read()  # typeshed types urlopen's answer as Any
        return body.decode()

    def processes_in(self, state: str) -> int:
        """How many of its processes report this lifecycle state (0 if the metrics are unreachable)."""
        try:
            text = self.metrics()
        except OSError:
            return 0
        match = re.search(rf'portraits_worker_processes\{{state="{state}"\}} ([0-9.]+)', text)
        return int(float(match.group(1))) if match else 0

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self.process.start()
        self.process.wait_ready(lambda: self.processes_in("ready") >= 1, timeout, interval=0.25)
        return self

    def child_pids(self) -> list[int]:
        """The prefork pool's render processes (children of the Celery parent)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    def stop(self) -> None:
        self.process.stop(grace=15)

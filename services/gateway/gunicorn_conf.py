"""Gunicorn settings for the gateway (process management only; the app reads its config from Settings).

    gunicorn -c services/gateway/gunicorn_conf.py services.gateway.wsgi:app

Bind address, worker and thread counts and timeout come from Settings (PORTRAITS_GATEWAY_BIND, _WORKERS,
_THREADS, _TIMEOUT).
PROMETHEUS_MULTIPROC_DIR, when set, turns on multi-process metrics: it is
emptied at start and each dead worker's files are marked (prometheus_client's documented gunicorn setup).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.settings import get_settings

_settings = get_settings()
bind = _settings.gateway_bind
workers = _settings.gateway_workers
timeout = _settings.gateway_timeout
graceful_timeout = timeout
# Threads (issue 9): with `sync` workers, three clients sending a photo at 2 KB/s held both workers 32 s and
# /healthz with them. gthread serves each request on a thread and parks idle keep-alive connections in a poller,
# so slow clients take a thread each, not a process; bodies that are too slow are cut off (bodies.py).
# Our subclass also answers gunicorn's own errors (431, 400…) in the JSON envelope (worker.py).
# Note: a gthread worker's heartbeat comes from its main loop, so `timeout` no longer kills a worker over one
# slow request; the gateway's own time budget (app.py) is what bounds requests.
worker_class = "services.gateway.gunicorn_worker.GatewayWorker"
threads = _settings.gateway_threads
preload_app = False  # each worker opens its own Redis/S3/broker connections after the fork
accesslog = None  # gunicorn's access log records client addresses; the app logs no addresses
errorlog = "-"
# Gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: unused here, and two gateways on
# one host (or parallel test runs) would fight over the path.
control_socket_disable = True


def _metrics_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server: Any) -> None:
    """Start from empty metric files: values left by a previous run would be added to this one's."""
    directory = _metrics_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if _metrics_dir() is not None:
        from prometheus_client import multiprocess

        # prometheus_client's multiprocess module has no annotations (#12).
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

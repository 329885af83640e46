"""The health checks the images and manifests declare, run here against a metrics endpoint serving a
healthy and an unhealthy state: each command exists, takes its flags, and tells the two apart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.helpers import ROOT, SERVICES, rendered
from tests.deploy.test_images import final_stage

WORKER_READY = 'portraits_worker_processes{state="ready"} 1.0\nportraits_worker_processes{state="failed"} 0.0\n'
WORKER_LOADING = 'portraits_worker_processes{state="loading"} 1.0\nportraits_worker_processes{state="failed"} 0.0\n'
WORKER_FAILED = 'portraits_worker_processes{state="ready"} 1.0\nportraits_worker_processes{state="failed"} 1.0\n'


def janitor_swept(seconds_ago: float) -> str:
    return f"portraits_janitor_last_successful_sweep_timestamp_seconds {time.time() - seconds_ago}\n"


class MetricsServer:
    """Serves whatever text `body` holds at /metrics, on a free loopback port."""

    def __init__(self) -> None:
        self.body = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                data = server.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def metrics() -> Iterator[MetricsServer]:
    server = MetricsServer()
    yield server
    server.httpd.shutdown()


def probe(command: list[str], metrics: MetricsServer, body: str) -> int:
    metrics.body = body
    port = str(metrics.port)
    env = {
        **os.environ,
        "PORTRAITS_WORKER_METRICS_PORT": port,
        "PORTRAITS_JANITOR_METRICS_PORT": port,
        "PORTRAITS_JANITOR_INTERVAL_SECONDS": "5",
    }
    command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False).returncode


def manifest_probes() -> dict[tuple[str, ...], str]:
    """Every distinct exec probe of the production manifests, with its container's name."""
    found: dict[tuple[str, ...], str] = {}
    for doc in rendered("overlays/prod"):
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "exec" in container.get(kind, {}):
                    found[tuple(container[kind]["exec"]["command"])] = container["name"]
    return found


def healthchecks() -> dict[str, list[str]]:
    checks = {}
    for service in SERVICES:
        for cmd, _, values in final_stage(service):  # the stages its image is built from (#12)
            if cmd == "HEALTHCHECK":
                assert values[0] == "CMD"
                checks[service] = list(values[1:])
    return checks


def test_worker_probes(metrics):
    commands = [c for c, name in manifest_probes().items() if name == "worker"]
    commands.append(tuple(healthchecks()["worker"]))
    assert len(commands) >= 3
    for command in map(list, commands):
        ready = "--ready" in command
        assert probe(command, metrics, WORKER_READY) == 0, command
        assert probe(command, metrics, WORKER_FAILED) == 1, command
        # Loading models: not ready yet, but alive (not restarted).
        assert probe(command, metrics, WORKER_LOADING) == (1 if ready else 0), command


def test_janitor_probes(metrics):
    commands = [c for c, name in manifest_probes().items() if name == "janitor"]
    commands.append(tuple(healthchecks()["janitor"]))
    for command in map(list, commands):
        assert probe(command, metrics, janitor_swept(seconds_ago=2)) == 0, command
        assert probe(command, metrics, janitor_swept(seconds_ago=600)) == 1, command


def test_gateway_healthcheck_is_valid_python():
    # It asks the gateway's own /healthz on the port gunicorn binds, which is not running here: compile it at
    # least (tests/containers runs it in the image).
    command = healthchecks()["gateway"]
    assert command[:2] == ["python", "-c"] and "PORTRAITS_GATEWAY_BIND" in command[2] and "/healthz" in command[2]
    compile(command[2], "<healthcheck>", "exec")

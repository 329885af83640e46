"""The gateway as it is deployed: gunicorn with its config file, several workers, multi-process metrics."""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3

from scripts.devstack import ManagedProcess, SeaweedServer, free_port
from shared.settings import PROJECT_ROOT, Settings
from tests.support import samples

pytestmark = pytest.mark.integration

GUNICORN_CONF = PROJECT_ROOT / "services" / "gateway" / "gunicorn_conf.py"
MAX_UPLOAD_BYTES = 1_000_000  # above the astronaut (~790 KB)


@dataclass(frozen=True)
class Served:
    port: int
    process: ManagedProcess

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


@pytest.fixture
def served(gateway_settings: Settings, s3_server: SeaweedServer, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PORTRAITS_")}
    env.update({
        "PORTRAITS_REDIS_URL": gateway_settings.redis_url,
        "PORTRAITS_S3_ENDPOINT_URL": s3_server.endpoint,
        "PORTRAITS_S3_ACCESS_KEY_ID": s3_server.credentials.access_key,
        "PORTRAITS_S3_SECRET_ACCESS_KEY": s3_server.credentials.secret_key,
        "PORTRAITS_SOURCES_BUCKET": gateway_settings.sources_bucket,
        "PORTRAITS_RESULTS_BUCKET": gateway_settings.results_bucket,
        "PORTRAITS_QUEUE_NAME": gateway_settings.queue_name,
        "PORTRAITS_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "PORTRAITS_UPLOAD_RATE_LIMIT": "100/minute",
        "PORTRAITS_GATEWAY_BIND": f"127.0.0.1:{port}",
        "PORTRAITS_GATEWAY_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    })
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "services.gateway.wsgi:app"]
    process = ManagedProcess("gunicorn", command, tmp_path / "gunicorn.log", cwd=PROJECT_ROOT, env=env)
    process.start()
    server = Served(port, process)
    try:
        process.wait_ready(lambda: server.request("GET", "/healthz")[0] == 200, timeout=30)
        yield server
    finally:
        process.stop(grace=10)


def multipart(filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    body, content_type = urllib3.encode_multipart_formdata({"image": (filename, data, "image/png")})
    return body, {"Content-Type": content_type}


def test_upload_through_gunicorn(served: Served) -> None:
    body, headers = multipart("astronaut.png", samples.astronaut_path().read_bytes())

    status, response_headers, raw = served.request("POST", "/v1/portraits", body, headers)

    assert status == 202, raw
    accepted = json.loads(raw)
    assert response_headers["Location"] == accepted["status_url"]
    status, _, raw = served.request("GET", accepted["status_url"])
    assert status == 200 and json.loads(raw)["status"] == "queued"


@pytest.mark.parametrize("size", [MAX_UPLOAD_BYTES * 3, 40 * 1024 * 1024], ids=["3x", "40MiB"])
def test_oversize_body_gets_a_413_envelope_not_a_reset(served: Served, size: int) -> None:
    body, headers = multipart("huge.png", os.urandom(size))

    status, response_headers, raw = served.request("POST", "/v1/portraits", body, headers)

    assert status == 413
    assert response_headers["Content-Type"] == "application/json"
    assert json.loads(raw)["error"]["code"] == "too_large"


def test_metrics_add_up_across_workers(served: Served) -> None:
    requests = 12  # with 2 workers, both answer some of them
    for _ in range(requests):
        assert served.request("GET", "/v1/styles")[0] == 200

    status, headers, raw = served.request("GET", "/metrics")

    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = raw.decode()
    counted = re.search(r'^portraits_gateway_requests_total\{method="GET",route="/v1/styles",status="200"\} '
                        r"(\d+\.\d+)$", text, re.MULTILINE)
    assert counted and float(counted.group(1)) == requests
    assert re.search(r"^portraits_gateway_queue_depth 0\.0$", text, re.MULTILINE)

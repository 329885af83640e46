"""End to end with real parts: gateway → Redis/Celery → a real prefork worker → SeaweedFS → presigned URL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from scripts.support import samples
from scripts.support.service_settings import service_settings
from scripts.worker_process import WorkerProcess
from services.gateway.app import create_app
from shared.storage import source_key
from tests.support.service import Backends


@pytest.fixture(scope="module")
def settings(redis_server, s3_server):
    return service_settings(
        redis_server.url, s3_server, queue_name="e2e", sources_bucket="e2e-sources", results_bucket="e2e-results"
    )


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    process = WorkerProcess(settings, tmp_path_factory.mktemp("worker")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(settings, worker):
    return create_app(settings).test_client()


def wait_for(client, status_url: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(status_url).get_json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job still {job['status']} after {timeout}s")


def submit(client, path, **form) -> dict:
    with open(path, "rb") as photo:
        response = client.post("/v1/portraits", data={"image": (photo, "selfie.png"), **form})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_astronaut_becomes_a_downloadable_portrait(client, settings, astronaut_path):
    accepted = submit(client, astronaut_path)
    job = wait_for(client, accepted["status_url"])
    assert job["status"] == "done", job
    assert job["style"] and job["family"] in ("oil", "watercolor", "ink") and job["reason"]
    assert set(job["timings"]) >= {"decode", "detect", "generate", "finish"}
    with urllib.request.urlopen(job["result_url"], timeout=10) as response:
        data = response.read()
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and not image.getexif() and image.height == 512
    backends = Backends.connect(settings)
    assert not backends.storage.exists(settings.sources_bucket, source_key(accepted["id"]))
    # A presigned URL is a capability for exactly one object: point it elsewhere and it is refused.
    tampered = job["result_url"].replace(accepted["id"], accepted["id"][::-1])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    assert refused.value.code == 403


def test_auto_paints_the_astronaut_with_the_face_gan(client, astronaut_path):
    """The default generator and auto selection give a GAN-painted portrait through the whole service (#8)."""
    job = wait_for(client, submit(client, astronaut_path)["status_url"])
    families = client.get("/v1/styles").get_json()["families"]
    gan_styles = {style["name"] for family in families for style in family["styles"] if style["painter"] == "face-gan"}
    assert job["status"] == "done" and job["style"] in gan_styles, job


@pytest.mark.parametrize("style", ["oil-portrait", "watercolor-portrait", "pencil-portrait"])
def test_each_gan_style_is_painted_on_request(client, grace_hopper_path, style):
    job = wait_for(client, submit(client, grace_hopper_path, style=style)["status_url"])
    assert job["status"] == "done" and job["style"] == style and "You asked for" in job["reason"], job
    with urllib.request.urlopen(job["result_url"], timeout=10) as response:
        image = Image.open(io.BytesIO(response.read()))
    assert image.size == (408, 512)  # the whole 4:5 portrait, not the GAN's 256² face crop


def test_photo_without_a_face_fails_with_its_code(client, settings):
    accepted = submit(client, samples.coffee_path())
    job = wait_for(client, accepted["status_url"])
    assert job["status"] == "failed" and job["error"]["code"] == "no_face" and job["error"]["message"]
    backends = Backends.connect(settings)
    assert not backends.storage.exists(settings.sources_bucket, source_key(accepted["id"]))


def test_delete_erases_everything(client, settings, grace_hopper_path):
    accepted = submit(client, grace_hopper_path, style="ink")
    job = wait_for(client, accepted["status_url"])
    assert job["status"] == "done" and job["family"] == "ink"
    assert client.delete(accepted["status_url"]).status_code == 204
    assert client.get(accepted["status_url"]).status_code == 404
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(job["result_url"], timeout=10)


def test_worker_serves_its_metrics(worker):
    text = worker.metrics()
    assert 'portraits_worker_jobs_total{outcome="done"}' in text
    assert "portraits_worker_stage_seconds_bucket" in text and "portraits_worker_queue_wait_seconds" in text
    # The astronaut, auto: painted by the face GAN after a likeness check (#8).
    assert 'portraits_worker_portraits_total{family="oil",painter="face-gan"}' in text
    assert 'portraits_worker_identity_distance_count{family="oil",painter="face-gan"}' in text


def test_worker_probe_reads_the_live_worker(worker):
    env = {**os.environ, "PORTRAITS_WORKER_METRICS_PORT": str(worker.metrics_port)}
    probe = subprocess.run(
        [sys.executable, "-m", "services.worker.probe", "--ready"], env=env, timeout=30, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr


def test_worker_logs_each_job_with_its_id(client, worker, astronaut_path):
    """Celery used to swallow the render processes' log lines (issue 9: 348 jobs, not one "job done")."""
    accepted = submit(client, astronaut_path)
    assert wait_for(client, accepted["status_url"])["status"] == "done"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in worker.process.log_path.read_text().splitlines() if accepted["id"] in line]
        if any("job done" in line for line in lines):
            break
        time.sleep(0.2)
    done = [line for line in lines if "job done" in line]
    assert done, lines
    # The render's stage timings ride on that line (#11: six "stage timed" INFO lines per job, now DEBUG).
    assert "stage_ms" in done[0] and "generate" in done[0], done[0]
    assert not any("stage timed" in line for line in lines), lines

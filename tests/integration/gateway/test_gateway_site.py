"""The page at `/` and its files (#10): served by the gateway with a strict CSP and the other security headers,
its deployment figures filled in, and a download link that makes S3 answer with an attachment. The JSON API
keeps its own responses (no page headers on them)."""

from __future__ import annotations

import re
import urllib.request

import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image

from scripts.devstack import SeaweedServer
from shared.ids import new_job_id
from shared.jobs import Job, JobState, JobStore, now
from shared.settings import Settings
from shared.storage import result_key
from tests.support import images

pytestmark = pytest.mark.integration

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_page_is_served_with_its_security_headers(client: FlaskClient, gateway_settings: Settings) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<script type="module" src="/static/app.js">' in html
    assert "__" not in re.sub(r"<!--.*?-->", "", html, flags=re.S)  # every placeholder filled in
    assert f'content="{gateway_settings.result_ttl_seconds}"' in html
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    s3_origin = gateway_settings.s3_endpoint_url.rstrip("/")
    assert policy == {
        "default-src": "'self'",
        "img-src": f"'self' {s3_origin} data: blob:",
        "connect-src": "'self'",
        "style-src": "'self'",
        "script-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
    }
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Permissions-Policy"] == "camera=(self)"
    assert response.headers["Cache-Control"] == "no-cache"


def test_csp_names_the_public_s3_origin_when_there_is_one(make_app) -> None:
    app = make_app(s3_public_endpoint_url="https://media.example.org/s3")
    policy = app.test_client().get("/").headers["Content-Security-Policy"]
    assert "img-src 'self' https://media.example.org data: blob:;" in policy


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [("/static/app.js", "text/javascript"), ("/static/app.css", "text/css"), ("/static/favicon.svg", "image/svg+xml")],
)
def test_static_files_are_served_revalidated(client: FlaskClient, path: str, mimetype: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]
    assert client.get(path, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


def test_unknown_static_file_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/static/../app.py")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.get("/static/nope.js").json["error"]["code"] == "not_found"
    assert client.get("/static/index.html").headers["Location"].endswith("/")


def test_api_responses_carry_no_page_headers(client: FlaskClient) -> None:
    response = client.get("/v1/styles")
    assert response.status_code == 200 and response.is_json
    assert "Content-Security-Policy" not in response.headers


def test_download_redirects_to_an_attachment(
    client: FlaskClient,
    gateway_settings: Settings,
    s3_server: SeaweedServer,
    rdb: redis.Redis,
) -> None:
    jobs = JobStore(rdb, gateway_settings.job_ttl_seconds)
    portrait = images.encode(Image.new("RGB", (64, 80), "sienna"), "JPEG")
    job_id = new_job_id()
    key = result_key(job_id, "jpg")
    s3_server.client().put_object(
        Bucket=gateway_settings.results_bucket, Key=key, Body=portrait, ContentType="image/jpeg"
    )
    jobs.create(Job(id=job_id, state=JobState.QUEUED, created_at=now()))
    jobs.transition(job_id, JobState.PROCESSING, stage="generate", started_at=now())
    jobs.transition(
        job_id,
        JobState.DONE,
        stage=None,
        finished_at=now(),
        result_key=key,
        result_expires_at=now() + 120,
        style="fauve",
        family="oil",
        reason="warm",
    )

    response = client.get(f"/portraits/{job_id}/download")

    assert response.status_code == 303 and response.headers["Cache-Control"] == "no-store"
    with _no_proxy.open(response.headers["Location"], timeout=5) as stored:
        assert stored.headers["Content-Disposition"] == 'attachment; filename="portrait-fauve.jpg"'
        assert stored.read() == portrait


def test_download_of_a_missing_portrait_is_a_404(client: FlaskClient) -> None:
    for path in ("/portraits/nope/download", f"/portraits/{'B' * 32}/download"):
        response = client.get(path)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"

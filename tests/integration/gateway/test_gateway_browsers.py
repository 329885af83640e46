"""What the gateway does because its clients may be browsers (#25), against real Redis and SeaweedFS:
`Cache-Control: no-store` and `nosniff` on every API answer, errors of every origin included, and state-changing
requests from another site's page refused before anything is read or stored. (Gunicorn's own answers and its
`Server` header: test_gateway_gunicorn.py.)"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scripts.support import samples
from shared.jobs import JobState, JobStore
from shared.settings import Settings

pytestmark = pytest.mark.integration

UNKNOWN_ID = "A" * 32


@pytest.fixture(scope="module")
def photo() -> bytes:
    return samples.grace_hopper_path().read_bytes()


def upload(client: FlaskClient, photo: bytes, headers: dict[str, str] | None = None, **fields: Any) -> TestResponse:
    form = {"image": (io.BytesIO(photo), "photo.jpg", "image/jpeg"), **fields}
    return client.post("/v1/portraits", data=form, content_type="multipart/form-data", headers=headers or {})


def assert_api_headers(response: TestResponse, what: str) -> None:
    assert response.headers.get("Cache-Control") == "no-store", (what, response.status_code)
    assert response.headers.get("X-Content-Type-Options") == "nosniff", (what, response.status_code)


# ------------------------------------------------------------------------------------ caching and sniffing


def test_every_api_answer_is_no_store_and_nosniff(
    client: FlaskClient, rdb: redis.Redis, gateway_settings: Settings, photo: bytes
) -> None:
    accepted = upload(client, photo, share="true")
    job_id, grant = accepted.json["id"], accepted.json["gallery"]
    failed_id = upload(client, photo).json["id"]
    JobStore(rdb, gateway_settings.job_ttl_seconds).transition(failed_id, JobState.FAILED, error_code="no_face")
    answers: dict[str, tuple[TestResponse, int]] = {
        "upload (withdraw token)": (accepted, 202),
        "status": (client.get(f"/v1/portraits/{job_id}"), 200),
        "events": (client.get(f"/v1/portraits/{failed_id}/events"), 200),
        "gallery": (client.get("/v1/gallery"), 200),
        "styles": (client.get("/v1/styles"), 200),
        "openapi": (client.get("/v1/openapi.json"), 200),
        "healthz": (client.get("/healthz"), 200),
        "readyz": (client.get("/readyz"), 200),
        "metrics": (client.get("/metrics"), 200),
        "withdraw, wrong token": (
            client.delete(f"/v1/gallery/{grant['id']}", headers={"Authorization": "Bearer x"}),
            403,
        ),
        "withdraw": (
            client.delete(f"/v1/gallery/{grant['id']}", headers={"Authorization": f"Bearer {grant['withdraw_token']}"}),
            204,
        ),
        "delete": (client.delete(f"/v1/portraits/{job_id}"), 204),
        "unknown id": (client.get(f"/v1/portraits/{UNKNOWN_ID}"), 404),
        "Flask's own 404": (client.get("/v1/nowhere"), 404),
        "Werkzeug's 405": (client.put("/v1/styles"), 405),
        "bad query": (client.get("/v1/gallery?limit=0"), 400),
        "bad image": (upload(client, b"not a photo"), 415),
        "body limit 413": (upload(client, b"\0" * (gateway_settings.max_upload_bytes + 128 * 1024)), 413),
        "cross-site 403": (upload(client, photo, {"Sec-Fetch-Site": "cross-site"}), 403),
        "HEAD": (client.head("/v1/styles"), 200),
    }
    for what, (response, status) in answers.items():
        assert response.status_code == status, (what, response.get_data(as_text=True)[:200])
        assert_api_headers(response, what)


def test_rate_limited_unavailable_and_unexpected_answers_are_no_store_too(
    make_app: Callable[..., Flask], closed_url: Callable[[str], str], photo: bytes
) -> None:
    limited = make_app(upload_rate_limit="1/minute").test_client()
    upload(limited, photo)
    answers = {"Flask-Limiter's 429": (upload(limited, photo), 429)}
    down = make_app(redis_url=closed_url("redis")).test_client()
    answers["Redis down 503"] = (down.get(f"/v1/portraits/{UNKNOWN_ID}"), 503)
    answers["not ready 503"] = (make_app(s3_endpoint_url=closed_url("http")).test_client().get("/readyz"), 503)
    broken = make_app()

    @broken.get("/boom")
    def boom() -> str:
        raise RuntimeError("unexpected")

    answers["unexpected 500"] = (broken.test_client().get("/boom"), 500)
    for what, (response, status) in answers.items():
        assert response.status_code == status, what
        assert_api_headers(response, what)


def test_the_page_keeps_its_own_caching_and_is_nosniff(client: FlaskClient) -> None:
    for path in ("/", "/static/app.js", "/static/app.css", "/static/favicon.svg"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-cache", path  # revalidated, not stored blind (site.py)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
    missing = client.get("/static/missing.js")
    assert missing.status_code == 404 and missing.headers["X-Content-Type-Options"] == "nosniff"
    favicon = client.get("/favicon.ico")  # browsers ask for it by themselves; no blueprint answers it
    assert favicon.status_code == 404 and favicon.headers["X-Content-Type-Options"] == "nosniff"
    download = client.get(f"/portraits/{UNKNOWN_ID}/download")
    assert download.status_code == 404 and download.headers["X-Content-Type-Options"] == "nosniff"


# ------------------------------------------------------------------------------------------ cross-site requests


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.localhost"},
        {"Origin": "https://evil.example"},  # a browser too old for Sec-Fetch-Site
        {"Origin": "null"},
    ],
    ids=["cross-site", "same-site", "origin-only", "null-origin"],
)
def test_an_upload_from_another_sites_page_is_refused_and_nothing_is_stored(
    client: FlaskClient,
    rdb: redis.Redis,
    queued_tasks: Callable[[], list[str]],
    stored_sources: Callable[[], set[str]],
    photo: bytes,
    headers: dict[str, str],
) -> None:
    before = stored_sources()

    response = upload(client, photo, headers, share="true")

    assert response.status_code == 403 and response.json["error"]["code"] == "cross_site_request"
    assert "another site" in response.json["error"]["message"]
    assert rdb.keys("portraits:*") == [] and queued_tasks() == [] and stored_sources() == before


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, a server: no browser headers at all
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},  # the page itself
        {"Sec-Fetch-Site": "none"},  # typed or bookmarked by the person
        {"Origin": "http://localhost"},  # the page, in an older browser
    ],
    ids=["no-browser", "same-origin", "none", "own-origin"],
)
def test_our_own_page_and_clients_that_are_not_browsers_still_upload(
    client: FlaskClient, photo: bytes, headers: dict[str, str]
) -> None:
    assert upload(client, photo, headers).status_code == 202


def test_deletions_from_another_sites_page_are_refused_and_change_nothing(client: FlaskClient, photo: bytes) -> None:
    accepted = upload(client, photo, share="true").json
    job_id, grant = accepted["id"], accepted["gallery"]
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}

    erase = client.delete(f"/v1/portraits/{job_id}", headers=cross)
    withdraw = client.delete(
        f"/v1/gallery/{grant['id']}", headers={**cross, "Authorization": f"Bearer {grant['withdraw_token']}"}
    )
    read = client.get(f"/v1/portraits/{job_id}", headers=cross)  # reads are not state-changing

    for refused in (erase, withdraw):
        assert refused.status_code == 403 and refused.json["error"]["code"] == "cross_site_request"
    assert read.status_code == 200 and read.json["status"] == "queued"
    assert client.delete(f"/v1/portraits/{job_id}").status_code == 204


def test_a_trusted_origin_may_upload_from_its_own_page(make_app: Callable[..., Flask], photo: bytes) -> None:
    client = make_app(trusted_origins="https://studio.example").test_client()
    studio = {"Sec-Fetch-Site": "cross-site", "Origin": "https://studio.example"}
    assert upload(client, photo, studio).status_code == 202
    other = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    assert upload(client, photo, other).status_code == 403


def test_refused_cross_site_uploads_do_not_use_up_the_visitors_rate_limit(
    make_app: Callable[..., Flask], photo: bytes
) -> None:
    client = make_app(upload_rate_limit="1/minute").test_client()
    for _ in range(3):
        assert upload(client, photo, {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert upload(client, photo, {"Sec-Fetch-Site": "same-origin"}).status_code == 202

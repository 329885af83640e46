"""Health, readiness, metrics, the error envelope for Werkzeug's own errors, and the upload rate limit."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scripts.support import samples
from services.worker.engine.catalog import CATALOG

pytestmark = pytest.mark.integration


def assert_envelope(response: TestResponse, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert set(response.json) == {"error"} and set(response.json["error"]) == {"code", "message"}
    assert response.json["error"]["code"] == code
    return response.json["error"]["message"]


def test_healthz_needs_no_dependency(make_app: Callable[..., Flask], closed_url: Callable[[str], str]) -> None:
    client = make_app(redis_url=closed_url("redis"), s3_endpoint_url=closed_url("http")).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_when_everything_answers(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}


def test_readyz_names_unreachable_storage(make_app: Callable[..., Flask], closed_url: Callable[[str], str]) -> None:
    response = make_app(s3_endpoint_url=closed_url("http")).test_client().get("/readyz")
    message = assert_envelope(response, 503, "unavailable")
    assert "storage" in message and "redis" not in message
    assert response.headers["Retry-After"] == "5"  # every 503 says when to retry (issue 9)


def test_readyz_names_unreachable_redis(make_app: Callable[..., Flask], closed_url: Callable[[str], str]) -> None:
    message = assert_envelope(make_app(redis_url=closed_url("redis")).test_client().get("/readyz"), 503, "unavailable")
    assert "redis" in message and "storage" not in message


def test_readyz_names_a_missing_bucket(make_app: Callable[..., Flask]) -> None:
    client = make_app(results_bucket="gateway-test-never-created").test_client()
    assert "storage" in assert_envelope(client.get("/readyz"), 503, "unavailable")


def test_styles_lists_the_catalog_and_auto(client: FlaskClient) -> None:
    body = client.get("/v1/styles").json
    assert body["default"] == "auto" and body["choices"][:4] == ["auto", "oil", "watercolor", "ink"]
    assert [family["name"] for family in body["families"]] == ["oil", "watercolor", "ink"]
    listed = [style for family in body["families"] for style in family["styles"]]
    assert listed == [style.as_dict() for style in CATALOG]


def test_unknown_route_and_wrong_method_use_the_envelope(client: FlaskClient) -> None:
    assert_envelope(client.get("/v2/nothing-here"), 404, "not_found")
    response = client.put("/v1/portraits")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_envelope(client.post("/healthz"), 405, "method_not_allowed")


def test_unexpected_exception_is_a_bare_500_with_a_logged_traceback(
    app: Flask,
    json_logs: Callable[[], list[dict]],
) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals: s3://bucket/key")

    response = app.test_client().get("/boom")

    message = assert_envelope(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True) and "secret" not in message
    (logged,) = [line for line in json_logs() if line["message"] == "unhandled error"]
    assert logged["level"] == "error" and logged["service"] == "gateway"
    assert "Traceback" in logged["traceback"] and "secret internals" in logged["traceback"]


def test_metrics_count_requests_by_route_not_by_path(client: FlaskClient) -> None:
    job_id = "B" * 32
    client.get(f"/v1/portraits/{job_id}")
    client.get("/v1/styles")

    response = client.get("/metrics")

    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    counted = re.search(
        r'^portraits_gateway_requests_total\{method="GET",route="/v1/portraits/<id>",status="404"\} '
        r"(\d+\.\d+)$",
        text,
        re.MULTILINE,
    )
    assert counted and float(counted.group(1)) >= 1
    assert 'route="/v1/styles"' in text
    assert job_id not in text
    assert "portraits_gateway_request_duration_seconds_bucket" in text
    assert 'portraits_gateway_rejections_total{code="not_found"}' in text
    assert re.search(r"^portraits_gateway_queue_depth 0\.0$", text, re.MULTILINE)


def test_metrics_count_uploads_and_the_queue(client: FlaskClient) -> None:
    photo = samples.grace_hopper_path().read_bytes()
    for _ in range(2):
        response = client.post("/v1/portraits", data={"image": (io.BytesIO(photo), "g.jpg")})
        assert response.status_code == 202, response.json
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^portraits_gateway_queue_depth 2\.0$", text, re.MULTILINE)
    # What autoscaling counts (#24): the jobs not yet started, from the job store's own index.
    assert re.search(r"^portraits_gateway_jobs_queued 2\.0$", text, re.MULTILINE)
    assert re.search(r"^portraits_gateway_jobs_enqueued_total \d+\.0$", text, re.MULTILINE)
    assert re.search(r"^portraits_gateway_upload_bytes_count \d+\.0$", text, re.MULTILINE)


def _empty_upload() -> dict[str, tuple[io.BytesIO, str]]:
    return {"image": (io.BytesIO(b""), "empty.jpg")}


def test_uploads_are_rate_limited_per_client(make_app: Callable[..., Flask]) -> None:
    client = make_app(upload_rate_limit="2/minute").test_client()
    for _ in range(2):  # refused uploads count too: the limit guards the work of reading them
        assert_envelope(client.post("/v1/portraits", data=_empty_upload()), 400, "empty_upload")

    response = client.post("/v1/portraits", data=_empty_upload())

    assert_envelope(response, 429, "rate_limited")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    other_client = client.post("/v1/portraits", data=_empty_upload(), environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert_envelope(other_client, 400, "empty_upload")
    assert client.get("/v1/styles").status_code == 200  # only uploads are limited
    assert client.get(f"/v1/portraits/{'C' * 32}").status_code == 404


def test_logs_never_carry_client_addresses(
    make_app: Callable[..., Flask],
    json_logs: Callable[[], list[dict]],
) -> None:
    client = make_app(upload_rate_limit="1/minute").test_client()
    address = {"REMOTE_ADDR": "198.51.100.23"}
    photo = samples.grace_hopper_path().read_bytes()
    accepted = client.post(
        "/v1/portraits", data={"image": (io.BytesIO(photo), "my-home-address.jpg")}, environ_base=address
    )
    for _ in range(2):  # breaches: Flask-Limiter logs those with the client's key
        client.post("/v1/portraits", data={"image": (io.BytesIO(photo), "g.jpg")}, environ_base=address)

    lines = json_logs()
    assert accepted.status_code == 202
    queued = [line for line in lines if line["message"] == "portrait queued"]
    assert queued and queued[0]["job_id"] == accepted.json["id"]  # bound to the job
    raw = json.dumps(lines)
    assert "198.51.100.23" not in raw and "my-home-address" not in raw

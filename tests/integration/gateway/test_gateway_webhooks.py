"""`callback_url` on upload (#10): refused with a clear code before anything is stored, recorded on the job when
accepted, and never shown in the job's status."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from PIL import Image

from scripts.support import samples
from shared.jobs import JobStore
from tests.support.webhooks import new_secret

pytestmark = pytest.mark.integration

SECRET = new_secret()


def _photo() -> bytes:
    buffer = io.BytesIO()
    Image.open(samples.astronaut_path()).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


PHOTO = _photo()


def post(app: Flask, **fields: Any):
    form: dict[str, Any] = {"image": (io.BytesIO(PHOTO), "photo.jpg", "image/jpeg"), **fields}
    return app.test_client().post("/v1/portraits", data=form, content_type="multipart/form-data")


@pytest.fixture
def hooked(make_app: Callable[..., Flask]) -> Flask:
    return make_app(webhook_secret=SECRET)


@pytest.mark.parametrize(
    "url, code",
    [
        ("ftp://example.com/hook", "invalid_callback_url"),
        ("not a url", "invalid_callback_url"),
        ("https://user:secret@example.com/hook", "invalid_callback_url"),
        ("https://example.com/" + "a" * 2100, "invalid_callback_url"),
        ("http://127.0.0.1:9000/hook", "callback_url_refused"),
        ("http://10.1.2.3/hook", "callback_url_refused"),
        ("http://169.254.169.254/latest/meta-data/", "callback_url_refused"),
        ("http://[::1]/hook", "callback_url_refused"),
        ("http://localhost:9000/hook", "callback_url_refused"),
    ],
)
def test_bad_callback_urls_are_refused_before_anything_is_stored(hooked, rdb, stored_sources, url, code):
    before = stored_sources()
    response = post(hooked, callback_url=url)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code
    assert stored_sources() == before
    assert not list(rdb.scan_iter(JobStore.KEY_PREFIX + "*"))


def test_without_a_secret_a_callback_url_is_refused_not_ignored(make_app, rdb):
    response = post(make_app(), callback_url="https://example.com/hook")
    assert response.status_code == 400 and response.json["error"]["code"] == "webhooks_disabled"
    assert post(make_app(), callback_url="  ").status_code == 202  # blank: no webhook asked for


def test_an_allow_listed_callback_is_recorded_but_never_shown(make_app, rdb: redis.Redis, json_logs):
    app = make_app(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1")
    url = "http://127.0.0.1:9000/hooks/portraits?token=client-secret"
    response = post(app, callback_url=url)
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.json["id"]
    assert "callback" not in response.get_data(as_text=True)
    assert JobStore(rdb, 60).get(job_id).callback_url == url
    status = app.test_client().get(f"/v1/portraits/{job_id}")
    assert status.status_code == 200 and "callback" not in status.get_data(as_text=True)
    assert "9000" not in status.get_data(as_text=True)
    logged = [line for line in json_logs() if line.get("message") == "portrait queued"]
    assert logged and logged[0]["callback_host"] == "127.0.0.1"
    assert not any("client-secret" in str(line) for line in json_logs())  # the URL's path and query never logged


def test_no_callback_url_means_no_webhook(hooked, rdb):
    response = post(hooked)
    assert response.status_code == 202
    assert JobStore(rdb, 60).get(response.json["id"]).callback_url is None


STUB_HOST = "hooks.example.test"  # .test never resolves for real (RFC 2606): nothing here can reach the internet


@pytest.fixture
def stub_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`STUB_HOST` resolves to the address a test sets; every other name goes to the real resolver (Redis)."""
    answer: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != STUB_HOST:
            return real(host, port, *args, **kwargs)
        family, sockaddr = (
            (socket.AF_INET6, (answer["address"], port, 0, 0))
            if ":" in answer["address"]
            else (
                socket.AF_INET,
                (answer["address"], port),
            )
        )
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answer


@pytest.mark.parametrize(
    "url, address",
    [
        (f"http://{STUB_HOST}/hook", "2002:7f00:1::"),  # 6to4 of 127.0.0.1 (#25)
        (f"http://{STUB_HOST}/hook", "2002:a9fe:a9fe::"),  # 6to4 of the metadata service
        (f"https://{STUB_HOST}:22/hook", "93.184.216.34"),  # a public host's SSH port
        (f"https://{STUB_HOST}:6379/hook", "93.184.216.34"),
        (f"http://{STUB_HOST}:0/hook", "93.184.216.34"),
    ],
)
def test_wrapped_addresses_and_other_ports_are_refused(hooked, rdb, stub_dns, url, address):
    stub_dns["address"] = address
    response = post(hooked, callback_url=url)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"]["code"] in {"callback_url_refused", "invalid_callback_url"}
    assert address not in response.get_data(as_text=True)
    assert not list(rdb.scan_iter(JobStore.KEY_PREFIX + "*"))


def test_the_port_setting_reaches_the_gateway(make_app, rdb, stub_dns):
    stub_dns["address"] = "93.184.216.34"  # accepted, not called: no janitor runs here, and .test never resolves
    app = make_app(webhook_secret=SECRET, webhook_allowed_ports="443,8443")
    assert post(app, callback_url=f"https://{STUB_HOST}:8443/hook").status_code == 202
    assert post(app, callback_url=f"http://{STUB_HOST}/hook").json["error"]["code"] == "callback_url_refused"


def test_a_refusal_never_says_what_a_name_resolved_to(hooked):
    """Else the gateway would resolve our internal names for anyone (#25); the name the client gave is echoed."""
    response = post(hooked, callback_url="http://localhost/hook")  # the real resolver: loopback, never sent
    assert response.status_code == 400 and response.json["error"]["code"] == "callback_url_refused"
    body = response.get_data(as_text=True)
    assert "localhost" in body and "127.0.0.1" not in body and "::1" not in body

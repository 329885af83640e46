"""The public gallery through the gateway (#10), against real Redis, SeaweedFS and the real engine: consent at
upload, the one-time withdraw token, newest-first paging with working image URLs, and withdrawal that erases,
verifies and audits at once — answering only the token holder."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from scripts.support import samples
from services.worker.outcomes import DONE
from shared.audit import Deleter, ObjectKind
from shared.gallery import GalleryEntry, GalleryGrant, GalleryIndex, Gone, Pending, day_of, object_key, token_hash
from shared.jobs import JobStore, now
from tests.support.service import Backends

pytestmark = pytest.mark.integration

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def astronaut_bytes() -> bytes:
    return samples.astronaut_path().read_bytes()


@pytest.fixture
def index(rdb: redis.Redis) -> GalleryIndex:
    return GalleryIndex(rdb)


def upload(client: FlaskClient, photo: bytes, **fields: Any) -> TestResponse:
    form = {"image": (io.BytesIO(photo), "photo.jpg", "image/jpeg"), "style": "ink", **fields}
    return client.post("/v1/portraits", data=form, content_type="multipart/form-data")


def withdraw(client: FlaskClient, gallery_id: str, token: str | None) -> TestResponse:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.delete(f"/v1/gallery/{gallery_id}", headers=headers)


def download(url: str) -> bytes:
    with _no_proxy.open(url, timeout=5) as response:
        return response.read()


def every_value(rdb: redis.Redis) -> bytes:
    """Every key and value in the gateway's Redis database, as one blob to search."""
    blob = b""
    for key in rdb.scan_iter("*"):
        kind = rdb.type(key)
        blob += key
        if kind == b"hash":
            blob += b"".join(k + v for k, v in rdb.hgetall(key).items())
        elif kind == b"string":
            blob += rdb.get(key) or b""
    return blob


# ------------------------------------------------------------------------------------------------- consent


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "on", " On "])
def test_consent_returns_a_gallery_id_and_a_token_kept_only_as_a_hash(
    client, rdb, gateway_settings, astronaut_bytes, value
):
    response = upload(client, astronaut_bytes, share=value)
    assert response.status_code == 202, response.json
    grant = response.json["gallery"]
    assert set(grant) == {"id", "withdraw_token"} and len(grant["withdraw_token"]) >= 43
    job_id = response.json["id"]
    assert grant["id"] != job_id
    job = JobStore(rdb, gateway_settings.job_ttl_seconds).get(job_id)
    assert job.share and job.gallery_id == grant["id"]
    assert job.gallery_token_hash == token_hash(grant["withdraw_token"])
    assert grant["withdraw_token"].encode() not in every_value(rdb)  # the token itself is stored nowhere
    assert GalleryIndex(rdb).lookup(grant["id"]) == Pending(grant["id"], job.gallery_token_hash)
    view = client.get(f"/v1/portraits/{job_id}").json
    assert not {"share", "gallery", "gallery_id", "gallery_token_hash", "callback_url"} & set(view)
    assert grant["id"].encode() not in client.get(f"/v1/portraits/{job_id}").data


@pytest.mark.parametrize("fields", [{}, {"share": ""}, {"share": "false"}, {"share": "0"}, {"share": "OFF"}])
def test_without_consent_nothing_is_reserved(client, rdb, astronaut_bytes, fields):
    response = upload(client, astronaut_bytes, **fields)
    assert response.status_code == 202 and response.json["gallery"] is None
    assert not list(rdb.scan_iter("portraits:gallery*"))


@pytest.mark.parametrize("value", ["yes", "maybe", "2", "truee"])
def test_an_unclear_answer_is_refused_before_anything_is_stored(client, rdb, astronaut_bytes, value):
    response = upload(client, astronaut_bytes, share=value)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_share"
    assert not list(rdb.scan_iter("portraits:job:*"))


# --------------------------------------------------------------------------------------- publish, list, withdraw


def test_published_listed_downloaded_then_withdrawn_with_its_token(
    client, rdb, backends, index, engine, astronaut_bytes
):
    response = upload(client, astronaut_bytes, share="true")
    job_id, grant = response.json["id"], response.json["gallery"]
    gallery_id, token = grant["id"], grant["withdraw_token"]
    assert backends.runner(engine).run(job_id) == DONE

    listed = client.get("/v1/gallery").json
    [item] = [item for item in listed["items"] if item["id"] == gallery_id]
    job = backends.jobs.get(job_id)
    assert set(item) == {"id", "image_url", "style", "family", "day"}
    assert (item["style"], item["family"], item["day"]) == (job.style, job.family, day_of(now()))
    assert job_id not in str(listed)
    copy = download(item["image_url"])
    assert Image.open(io.BytesIO(copy)).format == "JPEG" and b"Exif" not in copy

    # Anyone else learns nothing: a wrong, missing or malformed token, on this id or on one that never existed,
    # gets the same answer.
    stranger = GalleryGrant.new()
    refusals = [
        withdraw(client, gallery_id, stranger.token),
        withdraw(client, gallery_id, None),
        client.delete(f"/v1/gallery/{gallery_id}", headers={"Authorization": f"Basic {token}"}),
        withdraw(client, stranger.id, stranger.token),
        withdraw(client, stranger.id, token),
    ]
    for refused in refusals:
        assert refused.status_code == 403 and refused.json["error"]["code"] == "invalid_token"
    assert len({refused.data for refused in refusals}) == 1
    assert withdraw(client, "not-a-gallery-id", token).status_code == 404
    assert download(item["image_url"]) == copy  # still there

    assert withdraw(client, gallery_id, token).status_code == 204
    with pytest.raises(urllib.error.HTTPError) as gone:
        download(item["image_url"])
    assert gone.value.code in (403, 404)
    assert not backends.storage.exists(backends.settings.results_bucket, object_key(gallery_id))
    assert gallery_id not in {item["id"] for item in client.get("/v1/gallery").json["items"]}
    [audited] = [e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY]
    assert (audited.job_id, audited.deleted_by, audited.reason, audited.verified) == (
        gallery_id,
        Deleter.USER,
        "withdrawn",
        True,
    )
    assert not [e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY and e.job_id == job_id]

    # The token holder is told the truth afterwards; others still get the 403.
    again = withdraw(client, gallery_id, token)
    assert again.status_code == 404 and again.json["error"]["code"] == "not_found"
    assert withdraw(client, gallery_id, stranger.token).status_code == 403
    assert isinstance(index.lookup(gallery_id), Gone)
    # The portrait itself is untouched: the gallery copy was a separate object.
    assert client.get(f"/v1/portraits/{job_id}").json["status"] == "done"


def test_withdrawn_before_the_portrait_exists_it_is_never_published(client, backends, index, engine, astronaut_bytes):
    response = upload(client, astronaut_bytes, share="1")
    job_id, grant = response.json["id"], response.json["gallery"]
    assert withdraw(client, grant["id"], grant["withdraw_token"]).status_code == 204
    assert withdraw(client, grant["id"], grant["withdraw_token"]).status_code == 404
    assert backends.runner(engine).run(job_id) == DONE
    assert index.ids() == []
    assert not backends.storage.exists(backends.settings.results_bucket, object_key(grant["id"]))


def test_erasing_the_job_before_publication_cancels_it(client, index, astronaut_bytes):
    response = upload(client, astronaut_bytes, share="on")
    assert client.delete(f"/v1/portraits/{response.json['id']}").status_code == 204
    assert isinstance(index.lookup(response.json["gallery"]["id"]), Gone)


# ------------------------------------------------------------------------------------------------- paging


def seed(backends: Backends, index: GalleryIndex, at: float) -> str:
    """What the worker leaves for one shared portrait: a scheduled, stored copy and its listed entry."""
    grant = GalleryGrant.new()
    index.reserve(grant, 60)
    key = object_key(grant.id)
    backends.eraser.track(ObjectKind.GALLERY, key, grant.id, at, backends.settings.gallery_ttl_seconds)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (int(at) % 255, 0, 0)).save(buffer, format="JPEG")
    backends.storage.put(backends.settings.results_bucket, key, buffer.getvalue(), "image/jpeg")
    assert index.publish(
        GalleryEntry(grant.id, "ink-wash", "ink", day_of(at), key, grant.token_hash, at),
        backends.settings.gallery_ttl_seconds,
    )
    return grant.id


def test_pages_newest_first_with_a_working_cursor(client, backends, index):
    start = now() - 100
    ids = [seed(backends, index, start + n) for n in range(5)]
    pages, cursor = [], None
    while True:
        query = "/v1/gallery?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(query).json
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]]
    first = client.get("/v1/gallery").json
    assert [item["id"] for item in first["items"]] == ids[::-1] and first["next_cursor"] is None
    for item in first["items"]:
        assert Image.open(io.BytesIO(download(item["image_url"]))).size == (32, 32)
        assert "X-Amz-Expires=900" in item["image_url"]  # at most 15 minutes


@pytest.mark.parametrize("query", ["limit=0", "limit=51", "limit=ten", "cursor=garbage", "cursor=MTIzOng"])
def test_bad_paging_parameters_are_refused(client, query):
    response = client.get(f"/v1/gallery?{query}")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


def test_an_empty_gallery(client):
    assert client.get("/v1/gallery").json == {"items": [], "next_cursor": None}


def test_no_gallery_key_names_a_job(client, rdb, backends, index, astronaut_bytes):
    job_id = upload(client, astronaut_bytes, share="true").json["id"]
    seed(backends, index, now())
    for key in rdb.scan_iter("portraits:gallery*"):
        assert job_id.encode() not in key
        if rdb.type(key) == b"hash":
            assert not any(job_id.encode() in value for value in rdb.hgetall(key).values())

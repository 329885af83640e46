"""The public gallery through the gateway (#10), against real Redis, SeaweedFS and the real engine: consent at
upload, the one-time withdraw token, newest-day-first paging with working image URLs and a cursor carrying only a
day and an id (#25), and withdrawal — pending, staged or listed — that erases, verifies and audits at once,
answering only the token holder."""

from __future__ import annotations

import base64
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
from shared.gallery import (
    DAY_SECONDS,
    Cursor,
    GalleryGrant,
    GalleryIndex,
    Gone,
    Pending,
    Ready,
    day_of,
    day_start,
    listing_score,
    object_key,
    staging_key,
    token_hash,
)
from shared.jobs import JobStore, now
from tests.support.gallery import release, stage

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
    assert client.get("/v1/gallery").json["items"] == []  # staged: listed at the next UTC midnight (#25)
    tomorrow = day_start(now()) + DAY_SECONDS
    release(backends, tomorrow + 30)

    listed = client.get("/v1/gallery").json
    [item] = [item for item in listed["items"] if item["id"] == gallery_id]
    job = backends.jobs.get(job_id)
    assert set(item) == {"id", "image_url", "style", "family", "day"}
    assert (item["style"], item["family"], item["day"]) == (job.style, job.family, day_of(tomorrow))
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
    [audited] = [e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY and e.reason != "released"]
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
    release(backends, now() + DAY_SECONDS)
    assert index.ids() == []
    for key in (staging_key(grant["id"]), object_key(grant["id"])):
        assert not backends.storage.exists(backends.settings.results_bucket, key)


def test_withdrawn_while_staged_it_is_erased_and_never_released(client, backends, index, engine, astronaut_bytes):
    response = upload(client, astronaut_bytes, share="true")
    job_id, grant = response.json["id"], response.json["gallery"]
    assert backends.runner(engine).run(job_id) == DONE
    assert isinstance(index.lookup(grant["id"]), Ready)
    assert backends.storage.exists(backends.settings.results_bucket, staging_key(grant["id"]))
    assert withdraw(client, grant["id"], GalleryGrant.new().token).status_code == 403  # the same 403 as ever

    assert withdraw(client, grant["id"], grant["withdraw_token"]).status_code == 204
    assert not backends.storage.exists(backends.settings.results_bucket, staging_key(grant["id"]))
    assert not backends.eraser.schedule.contains(ObjectKind.GALLERY, staging_key(grant["id"]))
    [audited] = [e for e in backends.audit.entries() if e.kind is ObjectKind.GALLERY]
    assert (audited.job_id, audited.deleted_by, audited.reason, audited.verified) == (
        grant["id"],
        Deleter.USER,
        "withdrawn",
        True,
    )
    assert isinstance(index.lookup(grant["id"]), Gone)
    assert withdraw(client, grant["id"], grant["withdraw_token"]).status_code == 404
    release(backends, now() + DAY_SECONDS)  # the next midnight finds nothing to list
    assert index.ids() == [] and client.get("/v1/gallery").json["items"] == []
    assert not backends.storage.exists(backends.settings.results_bucket, object_key(grant["id"]))


def test_erasing_the_job_before_publication_cancels_it(client, index, astronaut_bytes):
    response = upload(client, astronaut_bytes, share="on")
    assert client.delete(f"/v1/portraits/{response.json['id']}").status_code == 204
    assert isinstance(index.lookup(response.json["gallery"]["id"]), Gone)


# ------------------------------------------------------------------------------------------------- paging


def in_gallery_order(gallery_ids: list[str], day: str) -> list[str]:
    return sorted(gallery_ids, key=lambda gid: listing_score(day, gid), reverse=True)


def test_pages_newest_day_first_with_a_cursor_of_a_day_and_an_id(client, backends, index):
    today = day_start(now())
    days: list[list[str]] = []
    for released, count in ((today - 2 * DAY_SECONDS, 2), (today - DAY_SECONDS, 2), (today, 1)):
        staged = [stage(backends, released - DAY_SECONDS, shade=n).id for n in range(count)]
        release(backends, released + 30)
        days.append(in_gallery_order(staged, day_of(released)))
    expected = days[2] + days[1] + days[0]
    pages, cursor = [], None
    while True:
        query = "/v1/gallery?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(query).json
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # The cursor names the page's last entry by its day and id, both shown with it: nothing more (#25).
        last = body["items"][-1]
        assert base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode() == f"{last['day']}:{last['id']}"
    assert pages == [expected[0:2], expected[2:4], expected[4:5]]
    first = client.get("/v1/gallery").json
    assert [item["id"] for item in first["items"]] == expected and first["next_cursor"] is None
    assert [item["day"] for item in first["items"]] == [day_of(today)] + [day_of(today - DAY_SECONDS)] * 2 + [
        day_of(today - 2 * DAY_SECONDS)
    ] * 2
    for item in first["items"]:
        assert Image.open(io.BytesIO(download(item["image_url"]))).size == (32, 32)
        assert "X-Amz-Expires=900" in item["image_url"]  # at most 15 minutes


_GALLERY_ID = GalleryGrant.new().id
_OLD_CURSOR = base64.urlsafe_b64encode(f"1750000000.123456:{_GALLERY_ID}".encode()).decode()  # before #25


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=51",
        "limit=ten",
        "cursor=garbage",
        "cursor=MTIzOng",
        f"cursor={_OLD_CURSOR}",
        f"cursor={Cursor('2025-02-30', _GALLERY_ID).encode()}",
        f"cursor={Cursor('2025-06-15', _GALLERY_ID + chr(10)).encode()}",
        f"cursor={Cursor('2025-06-15', _GALLERY_ID).encode()}%21",
    ],
)
def test_bad_paging_parameters_are_refused(client, query):
    response = client.get(f"/v1/gallery?{query}")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


def test_an_empty_gallery(client):
    assert client.get("/v1/gallery").json == {"items": [], "next_cursor": None}


def test_a_gallery_id_with_a_trailing_newline_is_refused(client, backends, index):
    grant = stage(backends, day_start(now()))
    refused = withdraw(client, grant.id + "%0A", grant.token)
    assert refused.status_code == 404 and refused.json["error"]["code"] == "not_found"
    assert isinstance(index.lookup(grant.id), Ready)  # nothing was withdrawn
    assert withdraw(client, grant.id, grant.token).status_code == 204


def test_no_gallery_key_names_a_job(client, rdb, backends, index, astronaut_bytes):
    job_id = upload(client, astronaut_bytes, share="true").json["id"]
    stage(backends, day_start(now()) - DAY_SECONDS)
    release(backends, now())
    for key in rdb.scan_iter("portraits:gallery*"):
        assert job_id.encode() not in key
        if rdb.type(key) == b"hash":
            assert not any(job_id.encode() in value for value in rdb.hgetall(key).values())
